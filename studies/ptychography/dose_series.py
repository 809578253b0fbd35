"""The dose series: reconstruction quality from 1e3 to 1e9 photons for the PINN under a Poisson NLL and an MAE
loss, beside the ePIE reference, and the dose efficiency of NLL over MAE (issue 14, point 3).

`report` draws PSNR, SSIM and the FRC-0.5 resolution against dose (log axis), one line per arm with 95% CIs
over repeats, and writes figures/dose_efficiency.json: the dose at which MAE reaches the quality NLL reaches
at 1e4 photons, over 1e4, with a bootstrap interval over repeats (studies/ptychography/dose_efficiency.py).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from sweeper import Finding, RunStatus
from sweeper.toolkit import plain, pyplot, write_csv

from . import pipeline
from .arms import extra_axes, extra_label, extra_of, extra_order, first_run
from .dose_efficiency import dose_efficiency
from .plots import central_crop, ci_line, save_figure

PANELS = [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("resolution_px", "FRC-0.5 resolution (px, lower is better)")]
ARM_KEYS = ["fit.model", "fit.loss"]
REF_DOSE = 1e4


def arm_name(model: str, loss: str, extra: tuple = ()) -> str:
    return ("ePIE (known probe)" if model == "epie" else f"PINN, {loss.upper()}") + extra_label(extra)


def quality_matrix(rows, model: str, loss: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(doses, (doses, repeats) values) of one arm; repeats missing at any dose are left out."""
    arm = [r for r in rows if r["fit.model"] == model and r["fit.loss"] == loss]
    doses = np.array(sorted({r["data.nphotons"] for r in arm}))
    by = {(r["data.nphotons"], r["repeat_data"], r["repeat_fit"]): r[f"metrics.{metric}"] for r in arm}
    reps = sorted({k[1:] for k in by})
    full = [rep for rep in reps if all((d, *rep) in by for d in doses)]
    return doses, np.array([[by[(d, *rep)] for rep in full] for d in doses]).reshape(len(doses), len(full))


def efficiency(rows, metric: str) -> dict | None:
    """NLL's dose efficiency over MAE in `metric`, on repeats present in both arms at every dose."""
    d_nll, nll = quality_matrix(rows, "pinn", "nll", metric)
    d_mae, mae = quality_matrix(rows, "pinn", "mae", metric)
    n = min(nll.shape[1], mae.shape[1])
    if n < 2 or len(d_nll) < 3 or not np.array_equal(d_nll, d_mae):
        return None
    res = dose_efficiency(d_nll, nll[:, :n], mae[:, :n], ref_dose=REF_DOSE)
    return {"metric": f"metrics.{metric}", "meaning": f"dose at which MAE reaches NLL's {metric} at "
            f"{REF_DOSE:.0e} photons, divided by {REF_DOSE:.0e} (> 1: NLL needs less dose)", **res}


def _arms(rows, extras: list) -> list:
    """Every (model, loss, extra) arm, ePIE last: a value of any other swept axis is an arm of its own (`rows`:
    run records, or configurations' axes)."""
    return sorted({(r["fit.model"], r["fit.loss"], extra_of(r, extras)) for r in rows},
                  key=lambda a: (a[0] == "epie", a[1], extra_order(a[2])))


def series_figure(result, figures_dir: Path, eff: dict | None) -> Path:
    plt = pyplot()
    extras = extra_axes(result)
    configs = result.configs([m for m, _ in PANELS], by=["data.nphotons", *ARM_KEYS, *extras])
    runs = result.runs(RunStatus.OK)
    fig, axs = plt.subplots(1, 3, figsize=(14, 4.4))
    arms, ns = _arms([c.axes for c in configs], extras), [c.n for c in configs]
    for ax, (metric, label) in zip(axs, PANELS):
        for k, (model, loss, extra) in enumerate(arms):
            arm = lambda r: (r["fit.model"], r["fit.loss"], extra_of(r, extras)) == (model, loss, extra)  # noqa: E731
            ci_line(ax, metric, [c for c in configs if arm(c.axes)], [r for r in runs if arm(r)], "data.nphotons",
                    shift=1.25 ** (k - 1), label=arm_name(model, loss, extra),
                    linestyle="--" if model == "epie" else "-")
        ax.set_xscale("log")
        ax.set_xlabel("photons per pattern")
        ax.set_ylabel(label)
        ax.axvline(REF_DOSE, color="0.8", lw=0.8, zorder=0)
    axs[0].legend(fontsize=8)
    if eff is not None:
        axs[1].set_title(_efficiency_text(eff), fontsize=8)
    n_text = f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}"
    fig.suptitle(f"line: mean over repeats; dots: each run; error bars: 95% t CI (n = {n_text} runs "
                 "per point), cut at the metric's range; each repeat its own simulated dataset, shared by the arms",
                 fontsize=9)
    return save_figure(fig, Path(figures_dir) / "dose_series.png")


def _efficiency_text(eff: dict) -> str:
    def fmt(v):
        return "beyond the doses measured" if not np.isfinite(v) or v == 0 else f"{v:.2g}"
    return (f"dose efficiency NLL vs MAE ({eff['metric'].split('.')[-1]} at {REF_DOSE:.0e}): {fmt(eff['ratio'])}x,\n"
            f"95% bootstrap CI [{fmt(eff['ci_low'])}, {fmt(eff['ci_high'])}], n={eff['n_repeats']} repeats")


def gallery(result, rows, figures_dir: Path) -> Path:
    """Every arm's reconstruction at every dose (first repeat; amplitude, central crop, one gray scale), a
    row per dose, beside the truth: what the curves average, to look at."""
    plt = pyplot()
    doses = sorted({r["data.nphotons"] for r in rows}, reverse=True)
    arms = _arms(rows, extra_axes(result))
    fig, axs = plt.subplots(len(doses), len(arms) + 1, figsize=(2.3 * (len(arms) + 1), 2.3 * len(doses)),
                            squeeze=False)
    truth = np.abs(result.dataset(rows[0]["data_key"])["object"])
    for i, dose in enumerate(doses):
        axs[i, 0].imshow(central_crop(truth), cmap="gray", vmin=0.5, vmax=1.5)
        axs[i, 0].set_ylabel(f"{dose:.0e} photons")
        for j, (model, loss, extra) in enumerate(arms, start=1):
            run = first_run(rows, dose, loss, model, extra)
            if run is not None:
                axs[i, j].imshow(central_crop(result.run(run.run_id).arrays["amplitude"]), cmap="gray", vmin=0.5, vmax=1.5)
                axs[i, j].set_title(f"SSIM {run['metrics.ssim']:.2f}, {run['metrics.psnr']:.1f} dB", fontsize=8)
    for j, name in enumerate(["truth", *(arm_name(*a) for a in arms)]):
        axs[0, j].set_title(f"{name}\n{axs[0, j].get_title()}", fontsize=8)
    for ax in axs.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Amplitude reconstructions, first repeat of each arm at each dose (central crop; each panel: "
                 "that run's SSIM and PSNR)", fontsize=9)
    return save_figure(fig, Path(figures_dir) / "reconstructions.png", dpi=100)


def report(result, figures_dir: Path) -> list[Path]:
    figures_dir = Path(figures_dir)
    rows = result.runs(RunStatus.OK)
    if not rows:
        return []
    # the dose efficiency compares the two PINN arms' curves; other swept axes would pool curves apart
    effs = {m: None if extra_axes(result) else efficiency(rows, m) for m in ("ssim", "psnr")}
    eff = effs["ssim"]
    paths = [series_figure(result, figures_dir, eff), gallery(result, rows, figures_dir)]
    if eff is not None:
        out = {**eff, "also": {k: v for k, v in effs.items() if k != "ssim"}}
        path = figures_dir / "dose_efficiency.json"
        path.write_text(json.dumps(plain(out), indent=1))  # a ratio beyond the doses measured: "inf"
        paths.append(path)
    configs = result.configs([m for m, _ in PANELS], by=["data.nphotons", *ARM_KEYS, *extra_axes(result)])
    paths.append(write_csv(configs.to_pylist(), figures_dir / "dose_series_summary.csv"))
    return paths


study = replace(pipeline.study, name="dose_series", report=report,
                description="How does reconstruction quality fall from 1e9 to 1e3 photons for the PINN under NLL and "
                            "MAE, beside ePIE, and how much dose does NLL save over MAE?",
                findings=(Finding("metrics.ssim", "fit.loss", "mae", where={"fit.model": "pinn"}),))
