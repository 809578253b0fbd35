"""SweepResult: load, configs with CIs, best, compare (paired vs Welch, coverage), runs and datasets;
exact axis values end to end; the hypothesis round trip of printed overrides."""
import math
import types

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import sweeper
from sweeper import SpecError
from sweeper.cli import main
from sweeper.store.sweep_store import SweepStore
from sweeper.columns import key_of, to_rows

ARM_CODE = {"control": 0, "treated": 1, "null": 2}
EFFECT = {"control": 0.0, "treated": 1.0, "null": 0.0}


def _effect_simulate(data, seed):
    return {"u": np.array(np.random.default_rng(seed).normal())}


def _effect_fit(dataset, params, seed):
    """y = dataset effect + a part common to the arms of one seed + the arm's effect + the arm's own noise."""
    common = np.random.default_rng(seed).normal()
    own = np.random.default_rng([seed, ARM_CODE[params["arm"]]]).normal()
    return {"metrics": {"y": float(dataset["u"]) + common + EFFECT[params["arm"]] + 0.3 * own}}


EFFECT_STUDY = types.SimpleNamespace(simulate=_effect_simulate, fit=_effect_fit, __name__="planted_effect")


def _effect_sweep(tmp_path, studies, seeds):
    return sweeper.run({"study": EFFECT_STUDY, "name": f"effect_{seeds}", "seed": 11, "data": {"study": 0},
                        "fit": {"arm": "control"}, "sweep": {"data.study": list(range(studies)),
                                                             "fit.arm": ["control", "treated", "null"]},
                        "repeats": 6, "seeds": seeds}, out=tmp_path, progress=False, report=False)


@pytest.mark.usefixtures("ray_session")
def test_compare_uses_datasets_as_units_and_claims_nothing_from_one_dataset(tmp_path):
    """50 data points, one dataset each (shared data), 6 paired fits per arm. Per data point, the arms are fits
    of one dataset: the difference and its fitting SD, no interval, no p. Pooled over the 50 datasets: a
    paired t over dataset means whose CI covers the planted effect (1.0) and the null (0); with independent
    fit seeds the arms still share datasets (a paired t over datasets), and the interval is wider."""
    res = _effect_sweep(tmp_path, 50, "paired")
    assert res.counts() == {"ok": 900, "failed": 0, "pending": 0}
    rows = res.compare("y", "fit.arm", "control", by=["data.study"]).to_pylist()
    assert len(rows) == 100 and {r["ci_unit"] for r in rows} == {"fits on one dataset"}
    assert all(math.isnan(r["p_value"]) and math.isnan(r["ci_low"]) and r["fit_sd"] > 0 for r in rows)
    treated = [r["diff"] for r in rows if r["fit.arm"] == "treated"]
    null = [r["diff"] for r in rows if r["fit.arm"] == "null"]
    assert abs(np.mean(treated) - 1.0) < 0.1 and abs(np.mean(null)) < 0.1
    pooled = {r["fit.arm"]: r for r in res.compare("y", "fit.arm", "control", by=[]).to_pylist()}
    assert pooled["treated"]["averaged_over"] == "data.study" and pooled["treated"]["n"] == 50
    assert {r["ci_unit"] for r in pooled.values()} == {"datasets"}  # 6 pairs on each of 50 datasets
    assert pooled["treated"]["ci_low"] <= 1.0 <= pooled["treated"]["ci_high"]
    assert pooled["null"]["ci_low"] <= 0.0 <= pooled["null"]["ci_high"] and pooled["treated"]["ci_low"] > 0
    adjusted = res.compare("y", "fit.arm", "control", by=[], adjust="holm").to_pylist()  # two arms tested at once
    assert all(r["p_value"] <= r["p_holm"] <= min(1.0, 2 * r["p_value"]) for r in adjusted)
    unpaired = _effect_sweep(tmp_path, 50, "independent")
    other = {r["fit.arm"]: r for r in unpaired.compare("y", "fit.arm", "control", by=[]).to_pylist()}
    assert {r["test"] for r in other.values()} == {"paired t over datasets"} and other["treated"]["n"] == 50
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(pooled["treated"]) < width(other["treated"])


def test_paired_difference_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=12), rng.normal(size=12)
    from sweeper.results.stats import mean_ci, welch

    res = mean_ci(a - b, 0.9)
    ref = stats.ttest_rel(a, b).confidence_interval(0.9)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((ref.low, ref.high))
    w = welch(a, b, 0.95)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert w["p_value"] == pytest.approx(ref.pvalue) and w["ci_low"] == pytest.approx(ref.confidence_interval().low)


@pytest.fixture(scope="module")
def grid(tmp_path_factory, ray_session):
    """The linear study over 2 x 2 values (one arm fails), 3 repeats, crossed: 2 datasets x 3 fits per point...
    here shared data: 3 fits of one dataset per data point."""
    out = tmp_path_factory.mktemp("grid")
    spec = {"study": "tests.fixtures.linear", "name": "grid", "seed": 4, "description": "does lstsq recover a?",
            "data": {"n": 60, "a": 1.0, "b": 0.0, "noise": 0.3}, "fit": {"bootstrap": True, "fail": False},
            "sweep": {"data.a": [1.0, 3.0], "fit.fail": [False, True]}, "repeats": 3}
    return sweeper.run(spec, out=out, progress=False)


def test_load_returns_what_run_returned(grid):
    again = sweeper.load(grid.dir)
    assert isinstance(grid, sweeper.SweepResult) and isinstance(again, sweeper.SweepResult)
    assert again.table.equals(grid.table) and again.axes == ["data.a", "fit.fail"] == grid.axes
    assert again.spec["name"] == "grid" and again.plan.num_rows == 12
    assert len(again.to_pandas()) == 12


def test_without_results_parquet_the_records_answer_and_only_a_damaged_file_warns(grid, tmp_path, caplog):
    """A running sweep has no results.parquet yet: status and load read the run records without a warning."""
    import shutil

    copy = tmp_path / "grid"
    shutil.copytree(grid.dir, copy)
    (copy / "results.parquet").unlink()
    with caplog.at_level("WARNING", logger="sweeper"):
        assert sweeper.load(copy).table.sort_by("run_id").equals(grid.table.sort_by("run_id"))
    assert not caplog.records
    (copy / "results.parquet").write_bytes(b"not parquet")
    with caplog.at_level("WARNING", logger="sweeper"):
        assert sweeper.load(copy).table.sort_by("run_id").equals(grid.table.sort_by("run_id"))
    assert any("results.parquet is unreadable" in r.getMessage() for r in caplog.records)


def test_configs_mean_sd_ci_by_configuration(grid):
    rows = grid.configs("metrics.a").to_pylist()
    assert [(r["data.a"], r["fit.fail"], r["n"], r["n_failed"]) for r in rows] == [
        (1.0, False, 3, 0), (1.0, True, 0, 3), (3.0, False, 3, 0), (3.0, True, 0, 3)]
    t = grid.to_pandas()
    for r in (rows[0], rows[2]):
        vals = t[(t["data.a"] == r["data.a"]) & (t.status == "ok")]["metrics.a"].to_numpy()
        assert r["a_mean"] == pytest.approx(vals.mean()) and r["a_sd"] == pytest.approx(vals.std(ddof=1))
        # shared data: 3 fits of one dataset; their spread is the fitting SD, and no interval is claimed
        assert r["ci_unit"] == "fits on one dataset" and r["n_datasets"] == 1
        assert math.isnan(r["a_sem"]) and math.isnan(r["a_ci_low"]) and math.isnan(r["a_ci_high"])
    assert math.isnan(rows[1]["a_mean"])
    pooled = grid.configs("a", by=["data.a"]).to_pylist()
    assert [r["n"] for r in pooled] == [3, 3] and pooled[0]["averaged_over"] == "fit.fail"
    with pytest.raises(ValueError, match="no metric 'metrics.nope'; the results have: metrics.a"):
        grid.configs("nope")


def test_independent_configs_have_t_intervals_over_runs(tmp_path, ray_session):
    """A dataset per run: the runs are the units of a Student-t interval."""
    res = sweeper.run({"study": "tests.fixtures.linear", "name": "ind", "seed": 2,
                       "data": {"n": 40, "a": 1.0, "b": 0.0, "noise": 0.5}, "fit": {"bootstrap": True},
                       "data_mode": "independent", "repeats": 3}, out=tmp_path, progress=False)
    (row,) = res.configs("a").to_pylist()
    vals = res.to_pandas()["metrics.a"].to_numpy()
    assert row["ci_unit"] == "runs" and row["n"] == 3 and row["n_datasets"] == 3
    assert row["a_sem"] == pytest.approx(vals.std(ddof=1) / math.sqrt(3))
    low, high = stats.t.interval(0.95, 2, loc=vals.mean(), scale=stats.sem(vals))
    assert (row["a_ci_low"], row["a_ci_high"]) == pytest.approx((low, high))


def test_crossed_configs_use_dataset_means(tmp_path, ray_session):
    res = sweeper.run({"study": "tests.fixtures.linear", "name": "x", "seed": 2,
                       "data": {"n": 40, "a": 1.0, "b": 0.0, "noise": 0.5}, "fit": {"bootstrap": True},
                       "data_mode": "crossed", "repeats": {"data": 4, "fit": 3}}, out=tmp_path, progress=False)
    (row,) = res.configs("a").to_pylist()
    t = res.to_pandas()
    means = t.groupby("data_key")["metrics.a"].mean().to_numpy()
    assert row["ci_unit"] == "datasets" and row["n"] == 12 and row["n_datasets"] == 4
    assert row["a_sd"] == pytest.approx(means.std(ddof=1))
    assert row["a_ci_high"] - row["a_mean"] == pytest.approx(stats.t.ppf(0.975, 3) * means.std(ddof=1) / 2)


def test_best_and_its_overrides(grid):
    best = grid.best("a", "max")
    assert best["axes"] == {"data.a": 3.0, "fit.fail": False} and best["n"] == 3
    assert best["overrides"] == ["data.a=3.0", "fit.fail=false"]
    again = sweeper.expand(sweeper.load_spec(str(grid.dir / "spec.yaml"), best["overrides"]))
    assert sorted(r.run_id for r in again.runs) == sorted(best["run_ids"])
    assert grid.best("a", "min")["axes"]["data.a"] == 1.0
    with pytest.raises(ValueError, match="'min' or 'max'"):
        grid.best("a", "maximize")


def test_run_gives_history_arrays_files_log_and_error(grid):
    t = grid.to_pandas()
    ok_id = t[t.status == "ok"].run_id.iloc[0]
    run = grid.run(ok_id)
    assert run.status == "ok" and run.error is None and set(run.metrics) == {"a", "b", "data_sum"}
    assert run.history.column("loss").to_pylist()[:2] == [1.0, 0.5]
    assert list(run.arrays) == ["residuals"] and run.arrays["residuals"].shape == (60,)
    assert run.config["data"]["a"] in (1.0, 3.0) and run.files == {}
    failed = grid.run(t[t.status == "failed"].run_id.iloc[0])
    assert "asked to fail" in failed.error and failed.history is None
    with pytest.raises(KeyError, match="not in this sweep"):
        grid.run("nope")
    errors = grid.errors()
    assert errors == [{"error": "RuntimeError: this fit was asked to fail", "n": 6,
                       "run_ids": errors[0]["run_ids"]}]


def test_dataset_is_checked_against_its_hash(grid, tmp_path):
    key = grid.table.column("data_key")[0].as_py()
    data = grid.dataset(key)
    assert data["x"].shape == (60,)
    sd = SweepStore(grid.dir)
    npz = sd.paths.datasets / f"{key}.npz"
    saved = npz.read_bytes()
    try:
        np.savez(npz, x=data["x"] + 1, y=data["y"])
        with pytest.raises(ValueError, match="does not match its recorded sha256"):
            grid.dataset(key)
        npz.unlink()  # not saved: simulated again from its params and seed, and checked
        assert np.array_equal(grid.dataset(key)["x"], data["x"])
    finally:
        npz.write_bytes(saved)


# -- exact values ---------------------------------------------------------------------------------------

MIXED = """\
study: tests.fixtures.linear
seed: 5
data: {n: 40, a: 1.0, b: 0.0, noise: 0.1}
fit: {bootstrap: true, C: 1, gamma: scale}
sweep:
  fit.C: [0.1, 1, 10]
  fit.gamma: [scale, 0.05, "0.05", null]
report: {metric: metrics.a, maximize: true, axes: [fit.C, fit.gamma]}
"""


def test_mixed_type_axis_runs_reports_and_round_trips(tmp_path, ray_session, capsys):
    (tmp_path / "spec.yaml").write_text(MIXED)
    assert main(["run", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    root = capsys.readouterr().out.strip().splitlines()[-1]
    res = sweeper.load(root)
    assert res.counts()["ok"] == 12
    configs = res.configurations()
    assert [c["axes"]["fit.gamma"] for c in configs[:4]] == ["scale", 0.05, "0.05", None]
    assert [type(c["axes"]["fit.C"]) for c in configs[::4]] == [float, int, int]
    assert "fit.gamma='0.05'" in configs[2]["overrides"] and "fit.C=10" in configs[8]["overrides"]
    cols = {c: to_rows(res.table.select([c])) for c in ("fit.C", "fit.gamma")}
    assert {type(r["fit.C"]) for r in cols["fit.C"]} == {int, float}
    for c in configs:  # `sweep plan SPEC <printed overrides>` plans exactly that configuration's runs
        assert main(["plan", str(res.dir / "spec.yaml"), *c["overrides"]]) == 0
        planned = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]}
        assert planned == set(c["run_ids"])
    assert main(["report", root]) == 0
    out = capsys.readouterr().out
    assert "sweep run" in out and "fit.C=" in out and "fit.C=10.0" not in out


def test_equal_values_on_one_axis_are_a_spec_error():
    with pytest.raises(SpecError, match=r"sweep.fit.C: values 1 and 1.0 are equal"):
        sweeper.load_spec({"study": "tests.fixtures.linear", "seed": 1, "name": "t", "data": {"n": 5},
                           "fit": {"C": 1}, "sweep": {"fit.C": [1, 1.0]}})


SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=64),
                    st.booleans(), st.none(),
                    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2))


def _distinct(values):
    from sweeper.columns import first_duplicate

    return first_duplicate(values) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(axes=st.lists(st.lists(VALUES, min_size=1, max_size=3).filter(_distinct), min_size=1, max_size=3),
       repeats=st.integers(1, 2))
def test_printed_overrides_plan_exactly_their_configuration(tmp_path_factory, axes, repeats):
    """For every configuration, the spec.yaml of the sweep plus its printed overrides plans exactly its runs."""
    sweep = {f"fit.x{i}": values for i, values in enumerate(axes)}
    spec = sweeper.load_spec({"study": "tests.fixtures.linear", "name": "h", "seed": 9, "repeats": repeats,
                              "data": {"n": 5, "a": 1.0, "b": 0.0, "noise": 0.1},
                              "fit": {f"x{i}": 0 for i in range(len(axes))}, "sweep": sweep})
    plan = sweeper.expand(spec)
    sd = SweepStore(tmp_path_factory.mktemp("h"))
    sd.write_spec(spec.to_dict(), spec.origins)
    sd.write_plan(plan.table())
    res = sweeper.SweepResult(sd, table=pa.table({"run_id": pa.array([], pa.string()),
                                                 "status": pa.array([], pa.string())}))
    configs = res.configurations()
    assert sum(len(c["run_ids"]) for c in configs) == len(plan.runs)
    assert len(configs) == math.prod(len(v) for v in axes)
    for c in configs:
        for axis, value in c["axes"].items():
            assert key_of(value) == key_of(next(v for v in sweep[axis] if key_of(v) == key_of(value)))
        again = sweeper.expand(sweeper.load_spec(str(sd.paths.spec), c["overrides"]))
        assert sorted(r.run_id for r in again.runs) == sorted(c["run_ids"])


def test_runs_are_typed_records_and_configs_typed_rows_with_their_table(grid):
    """runs(status=...) is the one status filter; configs() rows carry an Interval per metric whose numbers
    are the table form's columns."""
    from sweeper import ConfigRow, RunRecord, RunStatus

    runs = grid.runs()
    assert len(runs) == 12 and all(isinstance(r, RunRecord) for r in runs)
    ok, failed = grid.runs(RunStatus.OK), grid.runs("failed")
    assert len(ok) == grid.counts()["ok"] == 6 and len(failed) == 6 and not grid.runs(RunStatus.PENDING)
    assert all(r.ok and r["fit.fail"] is False and "metrics.a" in r.columns for r in ok)
    assert [r.run_id for r in runs] == grid.plan.column("run_id").to_pylist()
    rows = grid.configs("a")
    for row, flat in zip(rows, rows.to_pylist()):
        assert isinstance(row, ConfigRow) and row.n == flat["n"] and row.axes["data.a"] == flat["data.a"]
        s = row.stat("metrics.a")
        assert (s.mean, s.sd, s.unit) == pytest.approx((flat["a_mean"], flat["a_sd"], flat["ci_unit"]), nan_ok=True)
    assert rows.table.column_names[:4] == ["data.a", "fit.fail", "n", "n_failed"]
    assert grid.levels("data.a") == [1.0, 3.0] and grid.levels("fit.fail") == [False, True]


def test_a_planned_run_without_a_record_is_pending(grid, tmp_path):
    import shutil

    copy = tmp_path / "grid"
    shutil.copytree(grid.dir, copy)
    (copy / "results.parquet").unlink()
    for shard in (copy / "records").glob("*.parquet"):
        shard.unlink()
    again = sweeper.load(copy)
    pending = again.runs(sweeper.RunStatus.PENDING)
    assert len(pending) == 12 and pending[0].metrics == {} and pending[0]["data.a"] == 1.0
    assert pending[0].data == grid.runs()[0].data and pending[0].seed_fit == grid.runs()[0].seed_fit


def test_pooling_data_settings_gives_no_data_level_interval(grid):
    """by=["fit.fail"] pools data.a: a row's datasets come from two data settings, not replicates of one, so
    it has a mean and no interval, and says why; pooling a fit axis keeps the unit of the data."""
    from sweeper.records import MIXED, ONE_DATASET

    pooled = grid.configs("a", by=["fit.fail"])
    ok = next(r for r in pooled if r.axes["fit.fail"] is False)
    assert ok.ci_unit == MIXED and ok.n == 6 and math.isnan(ok.stat("a").low)
    assert "several data configurations" in ok.stat("a").words() and "CI" not in ok.stat("a").words()
    assert {r.ci_unit for r in grid.configs("a", by=["data.a"]) if r.n} == {ONE_DATASET}


def test_crossed_configs_carry_the_variance_split(tmp_path, ray_session):
    """Crossed data: each configuration's Interval has the data and fitting variance of
    `variance_components` over its runs (datasets as groups); the table form has them as columns, the generic
    report draws them and report.html states the share."""
    from sweeper.results.stats import variance_components

    res = sweeper.run({"study": "tests.fixtures.linear", "seed": 3, "data": {"n": 30, "a": 1.0, "b": 0.0, "noise": 0.5},
                       "fit": {"bootstrap": True}, "data_mode": "crossed", "repeats": {"data": 4, "fit": 3},
                       "sweep": {"data.noise": [0.2, 0.5]}, "report": {"metric": "metrics.a", "direction": "none"}},
                      out=tmp_path, progress=False)
    for row in res.configs("a"):
        runs = [r for r in res.runs(sweeper.RunStatus.OK) if r["data.noise"] == row.axes["data.noise"]]
        vc = variance_components([r.metrics["a"] for r in runs], [r.data_key for r in runs])
        s = row.stat("a")
        assert (s.var_data, s.var_fit) == pytest.approx((vc["var_between"], vc["var_within"]))
        assert s.share_data == pytest.approx(vc["share_between"])
    assert {"a_var_data", "a_var_fit", "a_share_data"} <= set(res.configs("a").table.column_names)
    assert any(p.name == "variance_split_a.png" for p in res.figures)
    assert "of the variance" in (res.dir / "report.html").read_text()


def test_compare_pairs_by_repeat_when_asked(tmp_path, ray_session):
    """Arms on datasets of their own (a data axis) are compared by Welch's t unless paired by repeat by design:
    pair_by="repeat" gives scipy's paired t over the repeat-matched differences."""
    res = sweeper.run({"study": "tests.fixtures.linear", "seed": 6, "data": {"n": 30, "a": 1.0, "b": 0.0, "noise": 0.3},
                       "fit": {}, "sweep": {"data.a": [1.0, 2.0]}, "data_mode": "independent", "repeats": 5},
                      out=tmp_path, progress=False)
    (welch,) = res.compare("a", "data.a", 1.0)
    (paired,) = res.compare("a", "data.a", 1.0, pair_by="repeat")
    value = {(r["data.a"], r.repeat_data): r.metrics["a"] for r in res.runs(sweeper.RunStatus.OK)}
    d = [value[(2.0, k)] - value[(1.0, k)] for k in range(5)]
    expected = stats.ttest_1samp(d, 0.0)
    assert welch.test == "Welch t" and paired.test == "paired t by repeat" and paired.n == 5
    assert paired.diff == pytest.approx(np.mean(d)) and paired.p_value == pytest.approx(expected.pvalue)
    assert (paired.ci_low, paired.ci_high) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    with pytest.raises(ValueError, match="pair_by"):
        res.compare("a", "data.a", 1.0, pair_by="dataset")
