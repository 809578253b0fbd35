"""Findings in words: each sentence carries the results API's difference, interval, test and n, the page's p
values are Holm-adjusted over every test it states, and one dataset gets no interval."""
import html
import math
import re

import pytest

import sweeper
from sweeper import Finding, Study
from sweeper.report.findings import findings
from sweeper.results.stats import holm
from tests.fixtures import linear

pytestmark = pytest.mark.usefixtures("ray_session")


def study(*found):
    return Study("linear_findings", linear.simulate, linear.fit, description="Does bootstrapping move the slope?",
                 findings=found)


def spec(data_mode="independent", repeats=4):
    return {"study": study(Finding("metrics.a", "fit.bootstrap", False), Finding("metrics.b", "fit.bootstrap", False,
                                                                                 where={"data.a": 2.0})),
            "seed": 11, "data": {"n": 40, "a": 1.0, "b": 0.0, "noise": 0.3}, "fit": {"bootstrap": False},
            "sweep": {"data.a": [1.0, 2.0], "fit.bootstrap": [False, True]}, "data_mode": data_mode,
            "repeats": repeats}


def test_declared_findings_state_the_compare_rows_with_holm_over_the_page(tmp_path):
    res = sweeper.run(spec(), out=tmp_path, progress=False)
    lines = findings(res, spec()["study"])
    assert len(lines) == 3  # slope at a = 1 and a = 2, intercept at a = 2 only (`where`)
    rows = res.compare("metrics.a", "fit.bootstrap", False).to_pylist()
    rows += [r for r in res.compare("metrics.b", "fit.bootstrap", False).to_pylist() if r["data.a"] == 2.0]
    adjusted = holm([r["p_value"] for r in rows])
    for line, row, q in zip(lines, rows, adjusted):
        assert f"{row['diff']:+.3g}".replace("-", "−") in line and f"over {row['n']} pairs" in line
        assert f"{row['ci_low']:.2g}".replace("-", "−") in line and row["test"] in line
        assert f"p = {row['p_value']:.2g}, Holm-adjusted over 3 tests p = {q:.2g}" in line
    assert lines[0].startswith("At data.a = 1: a, fit.bootstrap True − False = ")
    page = html.unescape((res.dir / "report.html").read_text())
    assert "<h2>Findings</h2>" in page and all(line in page for line in lines) and "Holm-adjusted" in page


def test_one_dataset_gets_the_difference_and_no_interval(tmp_path):
    res = sweeper.run(spec("shared", 3), out=tmp_path, progress=False, report=False)
    lines = findings(res, spec()["study"])
    assert lines and all("fits on one dataset; no interval and no p" in line for line in lines)
    assert not any(re.search(r"p = \d", line) for line in lines)
    one = sweeper.run(spec("shared", 1), out=tmp_path / "one", progress=False, report=False)
    assert all("(one fit each on one dataset; no interval" in line for line in findings(one, spec()["study"]))


def test_without_declared_findings_the_best_is_set_against_the_runner_up(tmp_path):
    s = {**spec(), "study": study(), "report": {"metric": "metrics.a", "maximize": True}}
    res = sweeper.run(s, out=tmp_path, progress=False)
    (line,) = findings(res, s["study"], "metrics.a", True)
    configs = sorted(res.configs("metrics.a").to_pylist(), key=lambda c: -c["a_mean"])
    best = {a: configs[0][a] for a in res.axes}
    d = res.contrast("metrics.a", best, {a: configs[1][a] for a in res.axes})
    assert line.startswith("Highest mean a: data.a = 2") and f"{d.diff:+.3g}".replace("-", "−") in line
    page = (res.dir / "report.html").read_text()
    assert math.isfinite(d.ci_low) and "Findings" in page
    assert "Holm" not in page and "Holm" not in line  # one test: nothing to adjust, and the page says nothing of it


def test_a_finding_without_an_axis_states_each_mean_with_its_interval(tmp_path):
    s = {**spec(), "study": study(Finding("metrics.a", by=("data.a",)))}
    res = sweeper.run(s, out=tmp_path, progress=False, report=False)
    lines = findings(res, s["study"])
    rows = res.configs("metrics.a", by=["data.a"]).to_pylist()
    assert len(lines) == 2
    for line, r in zip(lines, rows):
        assert line.startswith(f"At data.a = {r['data.a']:g}: a = {r['a_mean']:.4g}, 95% CI [{r['a_ci_low']:.4g}, ")
        # the two bootstrap arms share each dataset, so the pooled interval is over dataset means
        assert line.endswith(f"over {r['n_datasets']} dataset means of {r['n']} runs, averaged over fit.bootstrap.")
        assert r["n_datasets"] == 4 and r["n"] == 8


def test_a_finding_whose_baseline_is_not_swept_is_left_out_and_the_report_is_built(tmp_path):
    s = {**spec(), "sweep": {"data.a": [1.0, 2.0], "fit.bootstrap": [True]}}  # the baseline False not swept
    res = sweeper.run(s, out=tmp_path, progress=False)
    assert findings(res, s["study"]) == [] and "fit.bootstrap" in res.axes
    assert "<h2>Findings</h2>" not in (res.dir / "report.html").read_text()


def test_best_against_runner_up_with_one_run_each_says_so(tmp_path):
    s = {**spec(repeats=1), "study": study(), "report": {"metric": "metrics.a", "maximize": True},
         "sweep": {"data.a": [1.0, 2.0, 3.0]}}  # each configuration one run on its own dataset
    res = sweeper.run(s, out=tmp_path, progress=False, report=False)
    (line,) = findings(res, s["study"], "metrics.a", True)
    assert line.endswith("(one run each: no interval).") and "n=1: no interval" in line


def test_where_selects_even_where_by_would_pool_and_the_sentence_says_it(tmp_path, caplog):
    """A mean over `by=["data.a"]` with where fit.bootstrap = True: the rows are bootstrap fits only (the key is
    kept, not pooled away), and each sentence names it. A finding on a metric the results do not have is said
    in the log, not dropped in silence."""
    found = (Finding("metrics.a", by=("data.a",), where={"fit.bootstrap": True}),
             Finding("metrics.nope", "fit.bootstrap", False))  # a metric is known only once runs give it
    res = sweeper.run({**spec(), "study": study(*found)}, out=tmp_path, progress=False)
    with caplog.at_level("WARNING", logger="sweeper"):
        lines = findings(res, study(*found), ci=0.95)
    boot = {c.axes["data.a"]: c.stat("a").mean for c in res.configs("a", by=["data.a", "fit.bootstrap"])
            if c.axes["fit.bootstrap"] is True}
    assert len(lines) == 2 and all("fit.bootstrap = True" in line for line in lines)
    for line, a in zip(lines, (1.0, 2.0)):
        assert f"a = {boot[a]:.4g}" in line
    assert "metrics.nope not stated" in caplog.text


def test_nan_never_wins_and_equal_values_have_no_spread(tmp_path):
    """A configuration whose every run says NaN has no mean: best() and the ranking pass it over and say how
    many they skipped, and best() is None when no configuration has a mean. Three equal values have SD 0 (not
    the 1.7e-17 their sum of squares leaves)."""
    from sweeper.report.sweep_report import rank

    def fit(dataset, params, seed):
        return {"metrics": {"m": math.nan if params["arm"] == "none" else 0.1 * (params["arm"] == "b"),
                            "z": math.nan}}

    s = Study("nanbest", linear.simulate, fit)
    res = sweeper.run({"study": s, "seed": 1, "data": {"n": 10, "a": 1.0, "b": 0.0, "noise": 0.1},
                       "fit": {"arm": "a"}, "sweep": {"fit.arm": ["none", "a", "b"]}, "repeats": 3},
                      out=tmp_path, progress=False)
    best = res.best("m", "max")
    assert best["axes"]["fit.arm"] == "b" and best["skipped"] == 1 and res.best("m", "min")["axes"]["fit.arm"] == "a"
    assert res.best("z", "max") is None
    ranked = rank(res.configs("m"), "metrics.m", maximize=True)
    assert [(k, r.axes["fit.arm"]) for k, r in ranked] == [(1, "b"), (2, "a"), (None, "none")]
    assert ranked[0][1].stat("m").sd == 0.0 and ranked[0][1].stat("m").mean == pytest.approx(0.1)


def test_a_metric_missing_from_some_runs_is_counted(tmp_path):
    def fit(dataset, params, seed):
        return {"metrics": {"a": 1.0, **({"extra": 2.0} if params["arm"] == "b" and seed % 2 else {})}}

    res = sweeper.run({"study": Study("miss", linear.simulate, fit), "seed": 2, "fit": {"arm": "a"},
                       "data": {"n": 10, "a": 1.0, "b": 0.0, "noise": 0.1}, "sweep": {"fit.arm": ["a", "b"]},
                       "repeats": 4}, out=tmp_path, progress=False)
    rows = {r.axes["fit.arm"]: r for r in res.configs()}
    present = sum(1 for r in res.runs(sweeper.RunStatus.OK) if r.fit["arm"] == "b" and "extra" in r.metrics)
    assert rows["a"].stat("extra").n_missing == 4 and rows["b"].stat("extra").n_missing == 4 - present
    assert rows["a"].stat("a").n_missing == 0 and "extra_missing" in res.configs().table.column_names
    assert "run(s) lack it" in (res.dir / "report.html").read_text()


def test_a_finding_with_a_typo_is_refused_when_the_spec_is_loaded():
    """An axis or `where` key that is no param of the study, or a baseline the param cannot take, is a spec
    error (exit 2, naming the finding and the key) before any run; a valid one loads."""
    from typing import Literal

    class Fit(sweeper.Params):
        loss: Literal["nll", "mae"] = "nll"

    for finding, words in [(Finding("metrics.m", "fit.los", "mae"), "fit.los is not a parameter of the study"),
                           (Finding("metrics.m", "fit.loss", "MAE"), "'MAE' is not a value fit.loss can take"),
                           (Finding("metrics.m", where={"data.zz": 1}), "data.zz is not a parameter")]:
        s = Study("typo", linear.simulate, linear.fit, fit_params=Fit, findings=(finding,))
        with pytest.raises(sweeper.SpecError, match=words):
            sweeper.load_spec({"study": s, "seed": 1, "data": {"n": 5, "a": 1.0, "b": 0.0, "noise": 0.1}})
    ok = Study("typo", linear.simulate, linear.fit, fit_params=Fit, findings=(Finding("metrics.m", "fit.loss", "mae"),))
    assert sweeper.load_spec({"study": ok, "seed": 1, "data": {"n": 5, "a": 1.0, "b": 0.0, "noise": 0.1}})
