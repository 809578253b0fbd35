"""Gridsize: does the PINN trained on groups of neighbouring patterns tied by the overlap constraint
(gridsize 2) reconstruct as well as one trained on single patterns (gridsize 1)?

The same simulate and fit as the other ptychography studies. `report` pairs the gridsizes by repeat (the
same object, probe and scan trajectories; each gridsize draws its own photon noise and fit seed), and writes
the paired differences with t intervals over the repeats (gridsize_pairs.csv), a figure of every pair and
the first repeat's reconstructions.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from sweeper import Finding, RunStatus
from sweeper.toolkit import pyplot, write_csv

from . import pipeline
from .pipeline import METRIC_RANGES
from .plots import central_crop, save_figure

METRICS = ("psnr", "ssim", "resolution_px")
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "resolution_px": "FRC-0.5 resolution (px, lower is finer)"}


def pairs(rows: list) -> dict:
    """{(dose, metric): [(gridsize-1 value, gridsize-2 value) per repeat]} over the repeats both gridsizes ran."""
    by = {(r["data.nphotons"], r["data.gridsize"], r["repeat_data"], r["repeat_fit"]): r for r in rows}
    out: dict = {}
    for (dose, g, rd, rf), one in sorted(by.items()):
        two = by.get((dose, 2, rd, rf))
        if g != 1 or two is None:
            continue
        for m in METRICS:
            out.setdefault((dose, m), []).append((one[f"metrics.{m}"], two[f"metrics.{m}"]))
    return out


def paired_rows(pairs_by: dict, ci: float = 0.95) -> list:
    """gridsize 2 - gridsize 1 per dose and metric: means, the mean paired difference and its t interval."""
    from scipy import stats

    rows = []
    for (dose, m), pts in sorted(pairs_by.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        a = np.array(pts, dtype=float)
        d = a[:, 1] - a[:, 0]
        low = high = p = float("nan")
        if len(d) > 1 and d.std() > 0:
            res = stats.ttest_1samp(d, 0.0)
            low, high = res.confidence_interval(ci)
            p = float(res.pvalue)
        rows.append({"data.nphotons": dose, "metric": m, "n_pairs": len(d), "ci_unit": "repeats (paired)",
                     "gs1_mean": float(a[:, 0].mean()), "gs2_mean": float(a[:, 1].mean()),
                     "diff_mean": float(d.mean()), "diff_ci_low": float(low), "diff_ci_high": float(high),
                     "p_value": p, "test": "paired t"})
    return rows


def pairs_figure(pairs_by: dict, table: list, path: Path) -> Path:
    """Per dose and metric, each repeat's gridsize-1 and gridsize-2 values joined by a line, titled with the
    paired difference and its 95% t interval."""
    plt = pyplot()
    doses = sorted({k[0] for k in pairs_by}, reverse=True)
    fig, axs = plt.subplots(len(METRICS), len(doses), figsize=(3.9 * len(doses), 2.6 * len(METRICS)),
                            squeeze=False)
    diff = {(r["data.nphotons"], r["metric"]): r for r in table}
    for j, dose in enumerate(doses):
        for i, m in enumerate(METRICS):
            ax, pts = axs[i, j], np.array(pairs_by.get((dose, m), []), dtype=float)
            for one, two in pts:
                ax.plot([1, 2], [one, two], "-o", color="tab:blue", alpha=0.7, ms=4)
            r = diff[(dose, m)]
            spread = (f"95% CI [{r['diff_ci_low']:.3g}, {r['diff_ci_high']:.3g}]" if np.isfinite(r["diff_ci_low"])
                      else "equal in every pair")
            ax.set_title(f"{dose:.0e} photons: gs2 - gs1 = {r['diff_mean']:+.3g}\n"
                         f"{spread}, paired t, n = {r['n_pairs']} repeats", fontsize=8)
            ax.set_xticks([1, 2], ["gridsize 1", "gridsize 2"])
            ax.set_xlim(0.6, 2.4)
            ax.set_ylabel(LABELS[m], fontsize=8)
            _, hi = METRIC_RANGES[m]
            if np.isfinite(hi) and len(pts):
                ax.set_ylim(top=min(hi, pts.max() + 0.1 * (np.ptp(pts) or 0.05)))
    return save_figure(fig, path)


def gallery(result, rows: list, path: Path) -> Path:
    """Rows: doses; columns: the truth, then the first repeat's reconstruction at gridsize 1 and 2 (the
    central half of the object, on the truth's grey scale), each titled with its own PSNR and SSIM."""
    plt = pyplot()
    doses = sorted({r["data.nphotons"] for r in rows}, reverse=True)
    fig, axs = plt.subplots(len(doses), 3, figsize=(9, 3.1 * len(doses)), squeeze=False)
    for i, dose in enumerate(doses):
        firsts = {g: min((r for r in rows if r["data.nphotons"] == dose and r["data.gridsize"] == g),
                         key=lambda r: (r["repeat_data"], r["repeat_fit"]), default=None) for g in (1, 2)}
        some = next(r for r in firsts.values() if r is not None)
        truth = np.abs(result.dataset(some.data_key)["object"])
        axs[i, 0].imshow(central_crop(truth), cmap="gray", vmin=0.5, vmax=1.5)
        axs[i, 0].set_title(f"truth ({dose:.0e} photons)", fontsize=9)
        for j, g in enumerate((1, 2), start=1):
            r = firsts[g]
            if r is not None:
                amp = result.run(r.run_id).arrays["amplitude"]
                axs[i, j].imshow(central_crop(amp), cmap="gray", vmin=0.5, vmax=1.5)
                axs[i, j].set_title(f"gridsize {g}, repeat 1: {r['metrics.psnr']:.1f} dB, SSIM {r['metrics.ssim']:.3f}",
                                    fontsize=9)
        for ax in axs[i]:
            ax.axis("off")
    return save_figure(fig, path)


def report(result, figures_dir: Path) -> list[Path]:
    rows = result.runs(RunStatus.OK)
    pairs_by = pairs(rows)
    if not pairs_by:
        return []
    table = paired_rows(pairs_by)
    figures_dir = Path(figures_dir)
    return [write_csv(table, figures_dir / "gridsize_pairs.csv"),
            pairs_figure(pairs_by, table, figures_dir / "gridsize_pairs.png"),
            gallery(result, rows, figures_dir / "gridsize_reconstructions.png")]


study = replace(pipeline.study, name="gridsize", report=report,
                description="Does the overlap constraint of gridsize 2 reconstruct as well as single patterns?",
                findings=tuple(Finding(m, "data.gridsize", 1, pair_by="repeat")  # as the CSV pairs them
                               for m in ("metrics.ssim", "metrics.psnr")))
