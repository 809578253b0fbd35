"""Generalization: how does reconstruction quality grow with the number of training patterns,
PINN vs supervised baseline?

Every training set covers the whole object: positions are drawn uniformly over the object for each
size (one fixed scan seed, so a smaller set is a uniform subset of a larger one), never the first n
patterns of a raster, which for gridsize > 1 would train on a corner. The test set is one fixed scan.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeper import Study
from sweeper.report import pyplot, write_csv
from sweeper.values import to_rows

from .ptychography import METRIC_RANGES, VERSION, DataParams, FitParams, cleanup, fit, setup, simulate

PANELS = [("metrics.mae", "MAE (amplitude)"), ("metrics.psnr", "PSNR (dB)"),
          ("metrics.ssim", "SSIM"), ("metrics.resolution_px", "FRC-1/7 resolution (px)")]


def report(result, figures_dir: Path) -> list[Path]:
    """Each metric against the training-set size, a line per model: mean and 95% CI over repeats."""
    plt = pyplot()
    figures_dir = Path(figures_dir)
    rows = to_rows(result.configs([m for m, _ in PANELS], by=["fit.model", "data.n_train"]))
    if not any(r["n"] for r in rows):
        return []
    runs = [r for r in to_rows(result.table) if r["status"] == "ok"]
    fig, axs = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    for ax, (metric, label) in zip(axs, PANELS):
        for model in sorted({r["fit.model"] for r in rows}):
            _model_line(ax, metric, rows, runs, model)
        ax.set_xscale("log", base=2)
        if metric == "metrics.resolution_px":
            ax.set_yscale("log")
        ax.set_xlabel("training patterns")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axs[0].legend(fontsize=8)
    pooled = rows[0].get("averaged_over")
    fig.suptitle("Reconstruction quality vs training-set size: mean and 95% CI (Student t, cut at the metric's "
                 "range) over repeats, each its own dataset; dots: each run"
                 + (f", averaged over {pooled}" if pooled else ""), fontsize=10)
    fig.tight_layout()
    path = figures_dir / "generalization.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path, write_csv(rows, figures_dir / "aggregated_metrics.csv")]


def _model_line(ax, metric: str, rows: list, runs: list, model: str) -> None:
    """One model: its means with CI bars cut at the metric's range, and each run as a dot."""
    name = metric.removeprefix("metrics.")
    pts = sorted((r["data.n_train"], r[f"{name}_mean"], r[f"{name}_ci_low"], r[f"{name}_ci_high"], r["n"])
                 for r in rows if r["fit.model"] == model and r["n"] > 0)
    x, y, lo, hi, n = map(np.array, zip(*pts))
    lo, hi = np.clip(lo, *METRIC_RANGES[name]), np.clip(hi, *METRIC_RANGES[name])
    err = np.nan_to_num(np.vstack([y - lo, hi - y]), nan=0.0)
    n_text = f"{int(n.min())}" + (f"-{int(n.max())}" if n.max() > n.min() else "")
    bars = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{model} (n={n_text})")
    mine = [r for r in runs if r["fit.model"] == model]
    ax.scatter([r["data.n_train"] for r in mine], [r[metric] for r in mine], s=10, alpha=0.5,
               color=bars.lines[0].get_color(), zorder=3)


study = Study("generalization", simulate, fit, data_params=DataParams, fit_params=FitParams, version=VERSION, report=report,
              setup=setup, teardown=cleanup,
              description="How does reconstruction quality grow with the number of training patterns, PINN versus a supervised baseline?")
