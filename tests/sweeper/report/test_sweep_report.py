"""The generic sweep report: variance components, ranking, failed runs, heatmap, best overrides, grid spec."""
import csv
import itertools
import json

import numpy as np
import pytest

import sweeper
from sweeper.spec.plan import expand
from sweeper.cli import main
from sweeper.results.stats import variance_components
from sweeper.spec.resolved import load_spec
from tests import REPO

SPECS = REPO / "studies" / "ptychography" / "specs"


@pytest.mark.parametrize("sizes", [[20] * 150, list(np.random.default_rng(1).integers(2, 30, 150))])
def test_variance_components_recover_known_between_and_within(sizes):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    values = 5.0 + 2.0 * rng.standard_normal(len(sizes))[groups] + 0.5 * rng.standard_normal(len(groups))
    vc = variance_components(values, groups)
    assert vc["groups"] == len(sizes) and vc["n"] == len(groups)
    assert vc["var_between"] == pytest.approx(4.0, rel=0.2)
    assert vc["var_within"] == pytest.approx(0.25, rel=0.06)
    assert vc["share_between"] == pytest.approx(4.0 / 4.25, rel=0.05)


def test_variance_components_say_what_the_design_cannot_estimate():
    one_group = variance_components([1.0, 2.0, 3.0], [0, 0, 0])
    assert np.isnan(one_group["var_between"]) and one_group["var_within"] == pytest.approx(1.0)
    assert one_group["var_total"] == pytest.approx(1.0) and np.isnan(one_group["share_between"])
    one_each = variance_components([1.0, 2.0, 3.0], [0, 1, 2])  # data and fitting spread mixed in one value each
    assert np.isnan(one_each["var_within"]) and np.isnan(one_each["var_between"])
    assert np.isnan(one_each["share_between"]) and one_each["var_total"] == pytest.approx(1.0)


@pytest.fixture
def grid_dir(tmp_path, ray_session):
    """A linear-study grid: data.a x data.noise, 2 repeats (12 runs)."""
    res = sweeper.run({"study": "tests.fixtures.linear", "name": "grid", "seed": 4,
                       "data": {"n": 100, "a": 1.0, "b": 0.0, "noise": 0.1}, "fit": {"fail": False},
                       "sweep": {"data.a": [1.0, 2.0, 3.0], "data.noise": [0.05, 0.2]},
                       "zip": {}, "repeats": 2}, out=tmp_path, progress=False)
    return res.dir


def test_report_ranks_configurations_and_plots(grid_dir):
    from sweeper.report.sweep_report import sweep_report

    res = sweeper.load(grid_dir)
    rep = sweep_report(res, metric="a", maximize=True)
    means = [r.stat("a").mean for _, r in rep.configs]
    assert means == sorted(means, reverse=True) and [k for k, _ in rep.configs] == list(range(1, 7))
    assert all(r.n == 2 for _, r in rep.configs)  # one row per configuration, not per run
    assert rep.best["axes"]["data.a"] == 3.0 and rep.best["n"] == 2
    assert "data.a=3.0" in rep.best["overrides"]
    names = {p.name for p in rep.paths}
    assert {"summary.csv", "runs.csv", "summary.json", "heatmap_a.png", "a_vs_data_a.png",
            "a_vs_data_noise.png"} <= names
    assert all(p.parent == grid_dir / "figures" / "sweep" and p.stat().st_size > 0 for p in rep.paths)
    summary = json.loads((grid_dir / "figures" / "sweep" / "summary.json").read_text())
    assert summary["best"]["overrides"] == rep.best["overrides"] and len(summary["configurations"]) == 6
    runs = list(csv.DictReader(open(grid_dir / "figures" / "sweep" / "runs.csv")))
    assert len(runs) == 12 and all(r["history.loss.best"] and r["history.loss.final"] for r in runs)
    lowest = sweep_report(res, metric="metrics.a", maximize=False)
    assert lowest.best["axes"]["data.a"] == 1.0


def test_failed_and_pending_configurations_appear_with_their_status(tmp_path, ray_session, capsys):
    from sweeper.report.sweep_report import sweep_report

    spec = {"study": "tests.fixtures.linear", "name": "mixed", "seed": 4,
            "data": {"n": 50, "a": 1.0, "b": 0.0, "noise": 0.1}, "fit": {"fail": False},
            "sweep": {"fit.fail": [False, True], "data.a": [1.0, 2.0]}}
    res = sweeper.run(spec, out=tmp_path, progress=False)
    assert main(["report", str(res.dir), "--metric", "metrics.b", "--minimize"]) == 0
    out = capsys.readouterr().out
    assert "best metrics.b" in out and "spec.yaml fit.fail=false data.a=" in out and "report.html" in out
    rep = sweep_report(res, metric="metrics.b")
    assert [(r.n, r.n_failed) for _, r in rep.configs] == [(1, 0), (1, 0), (0, 1), (0, 1)]
    assert rep.configs[-1][0] is None and all(r.axes["fit.fail"] is False for _, r in rep.configs[:2])
    with pytest.raises(ValueError, match="the results have: metrics.a, metrics.b"):
        sweep_report(res, metric="metrics.nope")
    assert main(["report", str(res.dir), "--metric", "nope", "--maximize"]) == 2
    assert "no metric 'metrics.nope'" in capsys.readouterr().err


def test_a_metric_without_a_better_direction_is_shown_not_ranked(grid_dir, capsys):
    """A recovered parameter has no better direction: `--direction none` ranks nothing and names no best,
    and still writes the table and the metric's figures."""
    assert main(["report", str(grid_dir), "--metric", "metrics.a", "--direction", "none"]) == 0
    out = capsys.readouterr().out
    assert "best " not in out and "rank" not in out and "a mean" in out
    sweep_dir = grid_dir / "figures" / "sweep"
    assert (sweep_dir / "summary.csv").is_file() and list(sweep_dir.glob("a_vs_*.png"))
    assert "rank" not in (sweep_dir / "summary.csv").read_text().splitlines()[0].split(",")


def test_best_overrides_reproduce_the_best_runs(grid_dir, tmp_path):
    best = sweeper.load(grid_dir).best("a", "max")
    again = sweeper.run(str(grid_dir / "spec.yaml"), best["overrides"], out=tmp_path / "again", progress=False)
    assert set(again.table.column("run_id").to_pylist()) == set(best["run_ids"]) and len(best["run_ids"]) == 2


def test_grid_spec_plans_the_cartesian_matrix():
    spec = load_spec(SPECS / "pinn_grid.yaml")
    plan = expand(spec)
    want = set(itertools.product(spec.sweep["fit.nll_weight"], spec.sweep["fit.learning_rate"]))
    got = [(r.fit["nll_weight"], r.fit["learning_rate"]) for r in plan.runs]
    assert len(got) == len(want) == 6 and set(got) == want
    assert len(plan.data_keys) == 1
    assert spec.report == {"metric": "metrics.psnr", "maximize": True, "axes": ["fit.nll_weight", "fit.learning_rate"]}
