"""Precision-targeted repeats: the rule against the formula n = (t_{n-1} sd / h)^2, the spec section, and the
rounds through Ray (only configurations still too wide grow; resume runs nothing again)."""
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

import sweeper
from sweeper import SpecError
from sweeper.driver import RayOnDemand
from sweeper.spec import precision

P = {"metric": "metrics.a", "half_width": 0.1, "max_repeats": 200, "min_repeats": 3, "ci": 0.95}


def formula(sd, h=0.1, ci=0.95):
    """The smallest n with t_{n-1} sd / sqrt(n) <= h, by brute force (the reference for the rule)."""
    return next(n for n in range(2, 10_000) if stats.t.ppf(0.5 + ci / 2, n - 1) * sd / math.sqrt(n) <= h)


def rounds_at_fixed_sd(sd, p=P):
    """Counts round by round when every round's SD estimate is the true SD (the rule without sampling noise)."""
    counts, seen = np.array([p["min_repeats"]]), []
    while True:
        grown = precision.next_counts(counts, [{"n": int(counts[0]), "n_datasets": int(counts[0]),
                                                "ci_unit": "runs", "a_sd": sd}], p)
        seen.append(int(counts[0]))
        if grown[0] == counts[0]:
            return int(counts[0]), seen
        counts = grown


@pytest.mark.parametrize("sd", [0.05, 0.1, 0.2, 0.3, 0.5])
def test_the_rule_stops_at_the_formula(sd):
    used, seen = rounds_at_fixed_sd(sd)
    assert used == max(formula(sd), P["min_repeats"])
    assert all(b <= 2 * a for a, b in zip(seen, seen[1:]))  # at most doubling a round
    assert precision.half_width(sd, used, 0.95) <= 0.1 < precision.half_width(sd, used - 1, 0.95) or used == 3


def test_the_rule_respects_the_cap_and_leaves_tight_or_empty_configurations():
    rows = [{"n": 3, "n_datasets": 3, "ci_unit": "runs", "a_sd": 5.0},     # needs thousands: capped
            {"n": 10, "n_datasets": 10, "ci_unit": "runs", "a_sd": 0.01},  # tight already
            {"n": 0, "n_datasets": 0, "ci_unit": "runs", "a_sd": None},    # nothing ran ok
            {"n": 1, "n_datasets": 1, "ci_unit": "runs", "a_sd": None},    # two of three failed: no SD yet
            {"n": 12, "n_datasets": 4, "ci_unit": "datasets", "a_sd": 0.3}]  # crossed: datasets are the unit
    p = {**P, "max_repeats": 20}
    counts = np.array([3, 10, 3, 3, 4])
    out = precision.next_counts(counts, rows, p)
    assert out.tolist() == [6, 10, 3, 5, 8]
    assert precision.next_counts(np.array([20]), rows[:1], p).tolist() == [20]


def test_the_spec_section_is_checked_with_file_and_key(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("study: tests.fixtures.linear\nseed: 1\ndata: {n: 10}\nrepeats: 3\n"
                    "precision:\n  metric: metrics.a\n  half_widht: 0.1\n  max_repeats: 5\n")
    with pytest.raises(SpecError, match=r"s.yaml:7.*precision.half_widht.*did you mean precision.half_width"):
        sweeper.load_spec(spec)
    for bad, key in (("{metric: metrics.a, half_width: -1, max_repeats: 5}", "precision.half_width"),
                     ("{metric: a, half_width: 0.1, max_repeats: 5}", "precision.metric"),
                     ("{metric: metrics.a, half_width: 0.1, max_repeats: 2, min_repeats: 3}", "precision")):
        with pytest.raises(SpecError, match=key):
            sweeper.load_spec(spec, [f"precision={bad}"])
    ok = sweeper.load_spec(spec, ["precision={metric: metrics.a, half_width: 0.1, max_repeats: 9}"])
    assert ok.precision["min_repeats"] == 3 and ok.repeats() == 9  # the plan holds every repeat it may use


@pytest.mark.usefixtures("ray_session")
def test_repeats_are_added_only_where_the_interval_is_too_wide_and_resume_keeps_them(tmp_path, linear_spec):
    spec, count = linear_spec
    # the slope of 30 points with x ~ U(-1, 1) has SD noise * sqrt(3 / 30) (a little more: 1/sum(x^2) varies)
    data = {k: v for k, v in spec["data"].items() if k != "calls"}  # a tmp path in the data would move its seeds
    spec.update(data={**data, "n": 30}, sweep={"data.noise": [0.02, 0.5]}, data_mode="independent")
    spec.pop("repeats")
    p = {"metric": "metrics.a", "half_width": 0.1, "max_repeats": 60}
    res = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False, precision=p)
    done = json.loads((res.dir / "precision.json").read_text())
    used = {c["data.noise"]: c for c in done["configurations"]}
    assert used[0.02]["repeats"] == 3 and used[0.02]["met"]  # tight at min_repeats: never grew
    true_sd = 0.5 * math.sqrt(3 / 30) * 1.05
    # the SD the rule sees is estimated from the runs, so a sequential stop lands near the formula, not on
    # it (25 against 14 seen once with other seeds); the exact rule is tested above at fixed SD
    assert formula(true_sd) / 2 <= used[0.5]["repeats"] <= 2 * formula(true_sd)
    assert used[0.5]["met"] and used[0.5]["half_width"] <= 0.1 and done["rounds"] >= 3
    configs = {r["data.noise"]: r for r in sweeper.load(res.dir).configs("metrics.a").to_pylist()}
    assert configs[0.5]["n"] == used[0.5]["repeats"]
    assert (configs[0.5]["a_ci_high"] - configs[0.5]["a_ci_low"]) / 2 == pytest.approx(used[0.5]["half_width"])
    plan = pq.read_table(res.dir / "plan.parquet")
    assert plan.num_rows == res.counts()["ok"] == sum(c["repeats"] for c in used.values()) == count()[1]

    def no_ray(self):
        raise AssertionError("a finished precision sweep replays its rounds without Ray")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RayOnDemand, "__call__", no_ray)
        again = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False, precision=p)
    assert count()[1] == plan.num_rows and again.dir == res.dir  # the same rounds replayed, nothing re-run
    assert json.loads((res.dir / "precision.json").read_text())["configurations"] == done["configurations"]


@pytest.mark.usefixtures("ray_session")
def test_shared_data_grows_fits_on_its_one_dataset(tmp_path, linear_spec):
    spec, count = linear_spec
    spec.update(sweep={"data.a": [1.0]}, fit={**spec["fit"], "bootstrap": True})
    spec.pop("repeats")
    res = sweeper.run(spec, out=tmp_path / "out", progress=False,
                      precision={"metric": "metrics.a", "half_width": 0.004, "max_repeats": 40})
    c = json.loads((res.dir / "precision.json").read_text())["configurations"][0]
    assert count()[0] == 1 and c["repeats"] > 3 and c["unit"] == "fits on one dataset"
    page = (res.dir / "report.html").read_text()
    assert "<h2>Precision</h2>" in page and f"<td>{c['repeats']}</td><td>{c['repeats']} (fits on one dataset)" in page


def test_a_metric_the_study_does_not_declare_is_refused_at_load(tmp_path):
    from tests.fixtures import linear

    declared = sweeper.Study("lin", linear.simulate, linear.fit, metrics=("a", "b", "data_sum"))
    spec = {"study": declared, "seed": 1, "data": {"n": 10, "a": 1.0, "b": 0.0, "noise": 0.1}}
    p = {"metric": "metrics.aa", "half_width": 0.1, "max_repeats": 20}
    with pytest.raises(SpecError, match=r"precision.metric.*metrics.aa is not a metric of the study \(did you mean "
                                        r"metrics.a\? it reports metrics.a, metrics.b, metrics.data_sum\)"):
        sweeper.load_spec({**spec, "precision": p})
    assert sweeper.load_spec({**spec, "precision": {**p, "metric": "metrics.b"}}).precision["metric"] == "metrics.b"
    typo = sweeper.Study("lin", linear.simulate, linear.fit, metrics=("a", "b"), findings=(sweeper.Finding("metrics.c"),))
    with pytest.raises(SpecError, match=r"findings\[0\].*metrics.c is not a metric"):
        sweeper.load_spec({**spec, "study": typo})
    undeclared = sweeper.Study("lin", linear.simulate, linear.fit)  # nothing declared: checked after round 1
    assert sweeper.load_spec({**spec, "study": undeclared, "precision": p}).precision["metric"] == "metrics.aa"
