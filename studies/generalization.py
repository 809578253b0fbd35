"""Generalization: how does reconstruction quality grow with the number of training patterns,
PINN vs supervised baseline?

Every training set covers the whole object: positions are drawn uniformly over the object for each
size (one fixed scan seed, so a smaller set is a uniform subset of a larger one), never the first n
patterns of a raster, which for gridsize > 1 would train on a corner. The test set is one fixed scan.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeper.report import aggregate, pyplot, write_csv

from .ptychography import __version__, cleanup, fit, setup, simulate, validate  # noqa: F401

PANELS = [("metrics.mae", "MAE (amplitude)", False), ("metrics.psnr", "PSNR (dB)", False),
          ("metrics.ssim", "SSIM", False), ("metrics.resolution_px", "FRC-1/7 resolution (px)", False)]


def report(table, figures_dir: Path) -> list[Path]:
    plt = pyplot()

    figures_dir = Path(figures_dir)
    rows = aggregate(table, ["fit.model", "data.n_train"], [m for m, _, _ in PANELS])
    if not rows:
        return []
    fig, axs = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4))
    for ax, (metric, label, _) in zip(axs, PANELS):
        name = metric.removeprefix("metrics.")
        for model in sorted({r["fit.model"] for r in rows}):
            pts = sorted((r["data.n_train"], r[f"{name}_mean"], r[f"{name}_std"], r["n"]) for r in rows
                         if r["fit.model"] == model and f"{name}_mean" in r)
            if not pts:
                continue
            x, y, e, n = map(np.array, zip(*pts))
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=f"{model} (n={int(n.min())}-{int(n.max())})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training patterns")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axs[0].legend(fontsize=8)
    fig.suptitle("Reconstruction quality vs training-set size (mean ± std over repeats)")
    fig.tight_layout()
    path = figures_dir / "generalization.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path, write_csv(rows, figures_dir / "aggregated_metrics.csv")]
