"""Generalization: how does reconstruction quality grow with the number of training patterns,
PINN vs supervised baseline?

Every training set covers the whole object: positions are drawn uniformly over the object for each
size (one fixed scan seed, so a smaller set is a uniform subset of a larger one), never the first n
patterns of a raster, which for gridsize > 1 would train on a corner. The test set is one fixed scan.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sweeper import Finding, RunStatus
from sweeper.toolkit import pyplot, write_csv

from . import pipeline
from .plots import ci_line, log_axis, save_figure

PANELS = [("metrics.mae", "MAE (amplitude)"), ("metrics.psnr", "PSNR (dB)"),
          ("metrics.ssim", "SSIM"), ("metrics.resolution_px", "FRC-0.5 resolution (px)")]


def report(result, figures_dir: Path) -> list[Path]:
    """Each metric against the training-set size, a line per model: mean and 95% CI over repeats."""
    plt = pyplot()
    figures_dir = Path(figures_dir)
    rows = result.configs([m for m, _ in PANELS], by=["fit.model", "data.n_train"])
    if not any(r.n for r in rows):
        return []
    runs = result.runs(RunStatus.OK)
    fig, axs = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    for ax, (metric, label) in zip(axs, PANELS):
        for model in sorted({r.axes["fit.model"] for r in rows}):
            mine = [r for r in rows if r.axes["fit.model"] == model and r.n > 0]
            n = sorted({r.n for r in mine})
            ci_line(ax, metric, mine, [r for r in runs if r["fit.model"] == model], "data.n_train",
                    label=f"{model} (n={n[0]}" + (f"-{n[-1]})" if len(n) > 1 else ")"))
        log_axis(ax, "x", base=2)
        if metric == "metrics.resolution_px":
            log_axis(ax, "y")
        ax.set_xlabel("training patterns")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axs[0].legend(fontsize=8)
    pooled = rows[0].averaged_over
    fig.suptitle("Reconstruction quality vs training-set size: mean and 95% CI (Student t, cut at the metric's "
                 "range) over repeats, each its own dataset; dots: each run"
                 + (f", averaged over {pooled}" if pooled else ""), fontsize=10)
    return [save_figure(fig, figures_dir / "generalization.png"),
            write_csv(rows.to_pylist(), figures_dir / "aggregated_metrics.csv")]


study = replace(pipeline.study, name="generalization", report=report,
                description="How does reconstruction quality grow with the number of training patterns, PINN versus a "
                            "supervised baseline?",
                findings=(Finding("metrics.ssim", "fit.model", "baseline"),
                          Finding("metrics.psnr", "fit.model", "baseline")))
