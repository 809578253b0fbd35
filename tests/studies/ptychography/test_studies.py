"""Quick versions of the ptychography studies run end to end through the engine and make their figures."""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from tests import REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("keras")

import sweeper  # noqa: E402

SPECS = REPO / "studies" / "ptychography" / "specs"
TINY = ["data.N=16", "data.object_size=64", "data.probe_radius=4.0", "data.n_train=96", "data.test_step=4.0",
        "data.n_lines=20", "fit.epochs=2", "fit.width=4"]


def not_blank(path: Path) -> bool:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    return img.ndim == 3 and min(img.shape[:2]) > 100 and float(img[..., :3].std()) > 0.05


@pytest.fixture(scope="module")
def dose(tmp_path_factory, ray_session):
    return sweeper.run(SPECS / "dose_response.yaml", TINY + ["repeats=2"], out=tmp_path_factory.mktemp("dose"),
                       progress=False)


@pytest.mark.slow  # a whole study: networks trained
def test_dose_study_runs_three_arms_on_a_dataset_per_repeat(dose):
    t = dose.table.to_pandas()
    assert len(t) == 12 and (t.status == "ok").all()
    arms = sorted(zip(t["data.nphotons"], t["fit.model"], t["fit.loss"]))
    assert arms == sorted(2 * [(d, m, loss) for d in (1e4, 1e9) for m, loss in
                               (("pinn", "nll"), ("pinn", "mae"), ("epie", "nll"))])
    assert t.data_key.nunique() == 4 and (t.groupby("data_key").size() == 3).all()  # the 3 arms share one
    assert len(list((dose.dir / "datasets").glob("*.json"))) == 4  # exactly four simulate calls
    for rid, model in zip(t.run_id, t["fit.model"]):
        assert (dose.dir / "runs" / rid / "model.keras").is_file() == (model == "pinn")
        assert (dose.dir / "runs" / rid / "history.parquet").is_file()


@pytest.mark.slow  # a whole study: networks trained
def test_dose_study_same_trajectory_at_both_doses(dose):
    sets = {}
    for f in sorted((dose.dir / "datasets").glob("*.npz")):
        dose_of = json.loads(f.with_suffix(".json").read_text())["params"]["nphotons"]
        with np.load(f) as d:
            sets.setdefault(dose_of, []).append((d["train_positions"], d["test_positions"], d["train_amplitudes"]))
    (hi, *_), (lo, *_) = sets[1e9], sets[1e4]
    assert np.array_equal(hi[0], lo[0]) and np.array_equal(hi[1], lo[1])
    ratio = np.sqrt((hi[2].astype(float) ** 2).mean() / (lo[2].astype(float) ** 2).mean())
    assert ratio == pytest.approx(np.sqrt(1e5), rel=0.01)


@pytest.mark.slow  # a whole study: networks trained
def test_dose_study_figures_and_summary(dose):
    fig = dose.dir / "figures"
    for name in ("dose_comparison.png", "reference_and_arms.png", "training_curves.png"):
        assert not_blank(fig / name), name
    rows = list(csv.DictReader(open(fig / "dose_summary.csv")))
    assert len(rows) == 6 and {"psnr_mean", "psnr_ci_low", "ssim_mean", "frc_1_7_mean", "n"} <= set(rows[0])
    assert {r["n"] for r in rows} == {"2"}
    assert (dose.dir / "report.html").is_file()
    assert "sanity: mean amplitude ratio" in (fig / "sanity.txt").read_text()


@pytest.mark.slow  # a whole study: networks trained
def test_dose_study_table_gives_every_arm_and_the_paired_loss_difference(dose):
    from studies.ptychography.dose_response import arm_table

    table = arm_table(dose, dose.runs(sweeper.RunStatus.OK))
    assert [(r[0], r[1], r[2]) for r in table[:3]] == [("1e+09", "PINN, MAE loss", "2"),
                                                       ("1e+09", "PINN, NLL loss", "2"),
                                                       ("1e+09", "ePIE reference", "2")]
    diffs = [r for r in table if r[1].startswith("NLL - MAE")]
    assert [(r[0], r[1], r[2]) for r in diffs] == [("1e+09", "NLL - MAE (paired t)", "2 pairs"),
                                                   ("1e+04", "NLL - MAE (paired t)", "2 pairs")]
    t = dose.table.to_pandas().set_index(["data.nphotons", "fit.model", "fit.loss", "repeat_data"])["metrics.psnr"]
    expect = np.mean([t[(1e4, "pinn", "nll", k)] - t[(1e4, "pinn", "mae", k)] for k in (0, 1)])
    assert float(diffs[1][3].split()[0]) == pytest.approx(expect, abs=0.051)


@pytest.mark.slow  # a whole study: networks trained
def test_a_swept_axis_beyond_dose_and_loss_makes_arms_of_its_own(tmp_path, ray_session):
    """A budget sweep (here fit.epochs) is never pooled into one arm: the table, the paired NLL - MAE rows,
    the summary and the figure's panels keep each value apart."""
    from studies.ptychography.dose_response import arm_table

    res = sweeper.run(SPECS / "dose_response.yaml", TINY + ["sweep.data.nphotons=[1e9]", "sweep.fit.epochs=[1, 2]",
                                                            "zip.fit.model=[pinn, pinn]", "zip.fit.loss=[nll, mae]",
                                                            "repeats=2"], out=tmp_path, progress=False)
    table = arm_table(res, res.runs(sweeper.RunStatus.OK))
    assert [(r[1], r[2]) for r in table] == [("PINN, MAE loss, epochs 1", "2"), ("PINN, MAE loss, epochs 2", "2"),
                                             ("PINN, NLL loss, epochs 1", "2"), ("PINN, NLL loss, epochs 2", "2"),
                                             ("NLL - MAE (paired t), epochs 1", "2 pairs"),
                                             ("NLL - MAE (paired t), epochs 2", "2 pairs")]
    rows = list(csv.DictReader(open(res.dir / "figures" / "dose_summary.csv")))
    assert sorted((r["fit.loss"], r["fit.epochs"], r["n"]) for r in rows) == [
        ("mae", "1", "2"), ("mae", "2", "2"), ("nll", "1", "2"), ("nll", "2", "2")]
    import matplotlib.image as mpimg

    wide = mpimg.imread(res.dir / "figures" / "dose_comparison.png")
    assert wide.shape[1] > 4.2 * wide.shape[0]  # a pattern and four arms side by side (3 panels: about 3x)


@pytest.mark.slow  # a whole study: networks trained
def test_generalization_quick_study(tmp_path, ray_session):
    res = sweeper.run(SPECS / "generalization.yaml", TINY + ["sweep.data.n_train=[32, 96]", "fit.epochs=1",
                                                             "repeats=2"],
                      out=tmp_path, progress=False)
    t = res.table.to_pandas()
    assert len(t) == 2 * 2 * 2 and (t.status == "ok").all()
    rows = list(csv.DictReader(open(res.dir / "figures" / "aggregated_metrics.csv")))
    assert {(r["fit.model"], r["data.n_train"], r["n"]) for r in rows} == {
        (m, n, "2") for m in ("pinn", "baseline") for n in ("32", "96")}
    assert not_blank(res.dir / "figures" / "generalization.png")


def test_training_subsets_span_the_object():
    from studies.ptychography import pipeline as P

    for n in (16, 64):
        d = P.simulate({"N": 16, "object_size": 128, "probe_radius": 4.0, "n_train": n, "gridsize": 2,
                        "k_neighbors": 4, "test_step": 8.0}, 1)
        pos = d["train_positions"]
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        assert np.all(lo < 8 + 0.25 * 112) and np.all(hi > 8 + 0.75 * 112)  # spread over the scannable area
        quadrant = (pos[:, 0] > 64).astype(int) * 2 + (pos[:, 1] > 64)
        assert len(set(quadrant)) == 4


def test_the_device_label_names_backend_device_and_ray_s_gpus():
    from studies.ptychography.pipeline import device_label

    assert device_label("jax", "gpu", [1]) == "jax:gpu:1"  # Ray's GPU id 1 (CUDA_VISIBLE_DEVICES=1)
    assert device_label("jax", "cpu", []) == "jax:cpu"
    assert device_label("tensorflow", "cpu", [0]).startswith("tensorflow:cpu (gpu 0 assigned, unused")


def test_simulate_asks_for_cupy_only_when_ray_assigned_a_gpu(monkeypatch):
    import numpy as np

    from studies.ptychography import pipeline as P

    seen = []
    monkeypatch.setattr(P, "simulate_on", lambda data, seed, xp: seen.append(xp) or {})
    P.simulate({}, 1)
    assert seen == [np]
    monkeypatch.setattr(P, "assigned_gpus", lambda: [0])
    monkeypatch.setattr(P, "gpu_array_module", lambda: "cupy")
    P.simulate({}, 1)
    assert seen == [np, "cupy"]


@pytest.mark.slow  # a whole study: networks trained
def test_dose_series_quick_study_draws_its_curves_and_every_reconstruction(tmp_path, ray_session):
    res = sweeper.run(SPECS / "dose_series.yaml", TINY + ["sweep.data.nphotons=[1e3, 1e4, 1e9]", "repeats=1"],
                      out=tmp_path, progress=False)
    t = res.table.to_pandas()
    assert len(t) == 3 * 3 and (t.status == "ok").all()
    fig = res.dir / "figures"
    assert not_blank(fig / "dose_series.png") and not_blank(fig / "reconstructions.png")
    rows = list(csv.DictReader(open(fig / "dose_series_summary.csv")))
    assert {(r["fit.model"], r["fit.loss"]) for r in rows} == {("pinn", "nll"), ("pinn", "mae"), ("epie", "nll")}


@pytest.mark.slow  # a whole study: networks trained
def test_the_ptychopinn_comparison_stitches_and_scores_its_patches_like_ours(dose, tmp_path):
    """comparisons/ptychopinn/vs_ptychopinn.py: the true test patches, zero outside the centre PtychoPINN predicts, score
    as the truth (stitched as they are, the zeros and the sub-pixel shift's ringing at them give 22 dB)."""
    import importlib.util

    from kernels import diffraction

    spec = importlib.util.spec_from_file_location("vs", REPO / "comparisons" / "ptychopinn" / "vs_ptychopinn.py")
    vs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vs)
    vs.export(dose, tmp_path)
    keys = sorted(p.stem for p in tmp_path.glob("*.npz"))
    assert len(keys) == 4  # 2 doses x 2 repeats; the PINN arms share each dataset
    for key in keys:
        data = dose.dataset(key)
        N = data["probe"].shape[-1]
        patches = diffraction.extract_patches(data["object"], data["test_positions"], N) * vs.predicted_region(N)
        np.savez(tmp_path / f"{key}.pred.npz", patches=patches, train_s=1.0, samples=1, parameters=1)
    scores = vs.theirs(dose, tmp_path)
    assert set(scores) == set(keys)
    assert all(s["psnr"] > 35 and s["ssim"] > 0.99 for s in scores.values()), scores
    table = vs.score_table(vs.our_runs(dose), scores)
    assert table.count("| 1e+09 |") == 3 and table.count("| 1e+04 |") == 3 and "| 2 |" in table


@pytest.mark.slow  # a whole study: networks trained
def test_gridsize_quick_study_pairs_the_gridsizes_by_repeat(tmp_path, ray_session):
    res = sweeper.run(SPECS / "gridsize.yaml", TINY + ["repeats=2"], out=tmp_path, progress=False)
    t = res.table.to_pandas()
    assert len(t) == 2 * 2 * 2 and (t.status == "ok").all() and set(t["data.gridsize"]) == {1, 2}
    assert set(t["fit.model"]) == {"pinn"} and set(t["fit.loss"]) == {"nll"}
    rows = list(csv.DictReader(open(res.dir / "figures" / "gridsize_pairs.csv")))
    assert len(rows) == 2 * 3
    for r in rows:  # the paired difference, recomputed from the runs: gridsize 2 minus 1 of the same repeat
        dose, m = float(r["data.nphotons"]), f"metrics.{r['metric']}"
        arm = {g: t[(t["data.nphotons"] == dose) & (t["data.gridsize"] == g)].sort_values("repeat_data")[m].to_numpy()
               for g in (1, 2)}
        d = arm[2] - arm[1]
        assert r["n_pairs"] == "2" and float(r["diff_mean"]) == pytest.approx(d.mean())
        if d.std() > 0:
            half = float(r["diff_ci_high"]) - d.mean()
            assert half == pytest.approx(12.706 * d.std(ddof=1) / np.sqrt(2), rel=1e-3)  # t(0.975, 1 df)
    for name in ("gridsize_pairs.png", "gridsize_reconstructions.png"):
        assert not_blank(res.dir / "figures" / name)
    # the page states the CSV's test: the finding pairs the gridsizes by repeat, with the CSV's numbers
    (ssim,) = [r for r in res.compare("ssim", "data.gridsize", 1, pair_by="repeat") if r.at["data.nphotons"] == 1e9]
    csv_ssim = next(r for r in rows if r["metric"] == "ssim" and float(r["data.nphotons"]) == 1e9)
    assert ssim.test == "paired t by repeat" and ssim.diff == pytest.approx(float(csv_ssim["diff_mean"]))
    assert "paired t by repeat" in (res.dir / "report.html").read_text()


def test_epie_runs_on_cupy_when_ray_assigned_the_fit_a_gpu(monkeypatch):
    from studies.ptychography import pipeline as P

    seen = []
    monkeypatch.setattr(P, "epie_on", lambda dataset, f, xp: seen.append(xp) or {})
    monkeypatch.setattr(P, "assigned_gpus", lambda: [])
    P.fit({}, {"model": "epie"}, 1)
    monkeypatch.setattr(P, "assigned_gpus", lambda: [0])
    monkeypatch.setattr(P, "gpu_array_module", lambda: "cupy stand-in")
    P.fit({}, {"model": "epie"}, 1)
    assert seen == [np, "cupy stand-in"]
