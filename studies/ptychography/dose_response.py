"""Dose response: PINN reconstruction quality at high (1e9) vs low (1e4) photons, Poisson NLL vs MAE loss,
beside the ePIE reference (what the data allow).

Same object, probe and scan trajectories in every arm: photon statistics are the only difference
between doses. `report` draws the 6-panel comparison, the ePIE reference with the table of arms (95%
CIs, and the paired NLL - MAE differences), the training curves and dose_summary.csv. A value of any other
swept axis (a budget sweep's groups and epochs) makes arms of its own in all of them.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from sweeper import Finding, RunStatus
from sweeper.toolkit import pyplot, write_csv

from . import pipeline
from .arms import (
    DOSE_MODEL_LOSS,
    arm_name,
    extra_axes,
    extra_label,
    extra_of,
    extra_order,
    first_run,
)
from .pipeline import METRIC_RANGES
from .plots import central_crop, log_axis, save_figure

log = logging.getLogger("sweeper.studies.ptychography.dose_response")
METRICS = ["metrics.mae", "metrics.mse", "metrics.psnr", "metrics.ssim", "metrics.frc_0_5", "metrics.frc_1_7",
           "metrics.resolution_px", "metrics.phase_mae"]


def _arm_label(cfg) -> str:
    """PSNR and SSIM of an arm (a ConfigRow): mean with its 95% CI over the arm's runs (cut at the metric's
    range), and n."""
    def one(name, unit, digits):
        s = cfg.stat(name)
        return f"{name.upper()} " + _mean_ci(s.mean, s.low, s.high, digits, METRIC_RANGES[name], unit=unit)
    n = cfg.n
    return f"{one('psnr', ' dB', 1)}\n{one('ssim', '', 3)}\n" + (f"n={n}, 95% CI" if n > 1 else "n=1 run, no CI")


def _arm_axes(result) -> list:
    """The swept axes that tell the arms apart (a pinned one, e.g. `fit.loss=nll`, is not an axis)."""
    return [a for a in DOSE_MODEL_LOSS if a in result.axes] + extra_axes(result)


def _arms(result, rows, metrics) -> dict:
    """{(dose, model, loss, extra): the configuration's ConfigRow (n, an Interval per metric)}."""
    fixed, extras = {a: rows[0][a] for a in DOSE_MODEL_LOSS}, extra_axes(result)
    return {(*(c.axes.get(a, fixed[a]) for a in fixed), extra_of(c.axes, extras)): c
            for c in result.configs(metrics, by=_arm_axes(result))}


def _label(ax, cfg) -> None:
    """An arm's PSNR and SSIM (mean, CI, n) in the panel's lower left corner."""
    ax.text(0.02, 0.02, _arm_label(cfg), transform=ax.transAxes, color="yellow", fontsize=9, va="bottom",
            bbox={"facecolor": "black", "alpha": 0.5, "lw": 0})


def dose_figure(result, rows, figures_dir: Path, patterns: dict) -> Path:
    """A row per dose: a test diffraction pattern, then each trained arm's first-repeat reconstruction labelled
    with its arm's PSNR and SSIM (mean, 95% CI, n)."""
    plt = pyplot()

    doses = sorted({r["data.nphotons"] for r in rows}, reverse=True)
    arms = _arms(result, rows, ["psnr", "ssim"])
    trained = sorted({k[1:] for k in arms if k[1] != "epie"}, key=lambda a: (a[:2], extra_order(a[2])))
    trained = trained or [("pinn", "mae", ()), ("pinn", "nll", ())]
    logs = {d: np.log10(patterns[d].astype(np.float64) ** 2 + 1) for d in doses}
    vmax = max(float(v.max()) for v in logs.values())
    fig, axs = plt.subplots(len(doses), 1 + len(trained), figsize=(3.4 * (1 + len(trained)), 3.4 * len(doses)),
                            squeeze=False)
    for i, dose in enumerate(doses):
        ax = axs[i, 0]
        im = ax.imshow(logs[dose], cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(f"diffraction, {dose:.0e} photons")
        fig.colorbar(im, ax=ax, fraction=0.046, label="log10(counts + 1)")
        for ax, (model, loss, extra) in zip(axs[i, 1:], trained):
            run, name = first_run(rows, dose, loss, model, extra), arm_name(model, loss, extra)
            if run is None:
                ax.set_title(f"{name}: no run", fontsize=8)
            else:
                amp = result.run(run.run_id).arrays["amplitude"]
                ax.imshow(central_crop(amp), cmap="gray", vmin=0.5, vmax=1.5)
                ax.set_title(f"{name}, {dose:.0e}\n(first repeat shown)", fontsize=8)
                _label(ax, arms[(dose, model, loss, extra)])
        for ax in axs[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("PINN reconstruction (amplitude, central crop) by dose and arm")
    return save_figure(fig, Path(figures_dir) / "dose_comparison.png")


TABLE_METRICS = [("psnr", "PSNR dB", 1), ("ssim", "SSIM", 3), ("resolution_px", "FRC-0.5 res. px", 1)]


def _mean_ci(mean, low, high, digits, span=(-np.inf, np.inf), sign=False, unit="") -> str:
    """'mean[unit] [low, high]' (no interval for n < 2), the interval cut at `span`."""
    if not np.isfinite(mean):
        return "-"
    text = (f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}") + unit
    if np.isfinite(low):
        text += f" [{max(low, span[0]):.{digits}f}, {min(high, span[1]):.{digits}f}]"
    return text


def arm_table(result, rows) -> list[list[str]]:
    """Rows of text: each arm's n and mean [95% CI] of PSNR, SSIM and resolution at each dose, then the paired
    NLL - MAE difference of the PINN at each dose."""
    arms = _arms(result, rows, [m for m, _, _ in TABLE_METRICS])
    table = []
    for (dose, model, loss, extra), c in sorted(arms.items(), key=lambda kv: (-kv[0][0], kv[0][1] == "epie",
                                                                             kv[0][2], extra_order(kv[0][3]))):
        table.append([f"{dose:.0e}", arm_name(model, loss, extra), f"{c.n}"] + [
            _mean_ci(c.stat(m).mean, c.stat(m).low, c.stat(m).high, d, METRIC_RANGES[m]) for m, _, d in TABLE_METRICS])
    if "fit.loss" in result.axes and {"nll", "mae"} <= {r["fit.loss"] for r in rows if r["fit.model"] == "pinn"}:
        table += _loss_differences(result)
    return table


def _loss_differences(result) -> list[list[str]]:
    """The PINN's NLL - MAE difference at each dose and extra arm (paired t over repeats: same dataset, same
    fit seed)."""
    extras = extra_axes(result)
    by = [a for a in ("data.nphotons", "fit.model") if a in result.axes] + extras
    diffs = {m: [r for r in result.compare(m, "fit.loss", "mae", by=by)
                 if r.at.get("fit.model", "pinn") == "pinn" and r.level == "nll"] for m, _, _ in TABLE_METRICS}
    out = []
    for i, row in enumerate(diffs["psnr"]):
        n = f"{row.n} {'pairs' if row.test == 'paired t' else 'runs'}"
        what = f"NLL - MAE ({row.test}){extra_label(extra_of(row.at, extras))}"
        out.append([f"{row.at.get('data.nphotons', 0):.0e}", what, n] +
                   [_mean_ci(diffs[m][i].diff, diffs[m][i].ci_low, diffs[m][i].ci_high, d, sign=True)
                    for m, _, d in TABLE_METRICS])
    return out


def reference_figure(result, rows, figures_dir: Path) -> Path:
    """The truth and the ePIE reconstruction at each dose (what the data allow), over the table of every arm
    with 95% CIs and the paired NLL - MAE differences."""
    plt = pyplot()

    doses = sorted({r["data.nphotons"] for r in rows}, reverse=True)
    table = arm_table(result, rows)
    arms, extras = _arms(result, rows, ["psnr", "ssim"]), extra_axes(result)
    epie_doses = [d for d in doses if first_run(rows, d, None, "epie") is not None]
    fig = plt.figure(figsize=(11, 3.6 + 0.24 * (len(table) + 2)))
    grid = fig.add_gridspec(2, len(epie_doses) + 1, height_ratios=[3.4, 0.24 * (len(table) + 2)])
    truth = np.abs(result.dataset(rows[0]["data_key"])["object"])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(central_crop(truth), cmap="gray", vmin=0.5, vmax=1.5)
    ax.set_title("truth (amplitude)")
    for j, dose in enumerate(epie_doses, start=1):
        ax, run = fig.add_subplot(grid[0, j]), first_run(rows, dose, None, "epie")
        ax.imshow(central_crop(result.run(run.run_id).arrays["amplitude"]), cmap="gray", vmin=0.5, vmax=1.5)
        ax.set_title(f"ePIE, {dose:.0e} photons (first repeat)")
        _label(ax, arms[(dose, "epie", run["fit.loss"], extra_of(run, extras))])
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[1, :])
    ax.axis("off")
    cells = ax.table(cellText=table, colLabels=["photons", "arm", "n"] + [label for _, label, _ in TABLE_METRICS],
                     loc="upper center", cellLoc="left", colLoc="left")
    cells.auto_set_font_size(False)
    cells.set_fontsize(8.5)
    cells.auto_set_column_width(list(range(3 + len(TABLE_METRICS))))
    pairs = "; NLL - MAE: mean paired difference [95% t interval]" if any("NLL - MAE" in r[1] for r in table) else ""
    ax.set_title("every arm: mean [95% t interval over its n runs, each repeat its own dataset; cut at the "
                 f"metric's range]{pairs}", fontsize=9)
    fig.suptitle("The physics reference (ePIE with the known probe, no training) and every arm" if epie_doses
                 else "Every arm (no ePIE reference in this sweep)")
    return save_figure(fig, Path(figures_dir) / "reference_and_arms.png")


LOSS_UNITS = {"nll": "Poisson NLL per pixel / mean count", "mae": "|sqrt(pred) - sqrt(counts)| / sqrt(mean count)",
              "mixed": "NLL + MAE terms, as above"}


def training_curves(result, rows, figures_dir: Path) -> Path:
    """Training and validation loss of each arm's first repeat, one panel per loss: the losses are in different
    units, so they share no axis."""
    plt = pyplot()
    first = [r for r in rows if not (r["repeat_fit"] or r["repeat_data"]) and r["fit.model"] != "epie"]
    extras = extra_axes(result)
    losses = sorted({r["fit.loss"] for r in first}) or ["nll"]
    fig, axes = plt.subplots(1, len(losses), figsize=(4.5 * len(losses), 3.8), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        for r in sorted((r for r in first if r["fit.loss"] == loss), key=lambda r: -r["data.nphotons"]):
            history = result.run(r.run_id).history
            h = history.to_pydict() if history is not None else {}
            if "train_loss" not in h:
                continue
            what = f"{r['data.nphotons']:.0e} photons{extra_label(extra_of(r, extras))}"
            line, = ax.plot(h["epoch"], h["train_loss"], label=f"{what}, train")
            if any(v is not None for v in h.get("val_loss", [])):
                ax.plot(h["epoch"], h["val_loss"], "--", color=line.get_color(), label="validation")
        log_axis(ax, "y")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{loss.upper()} loss ({LOSS_UNITS.get(loss, 'its own units')})", fontsize=8)
        ax.set_title(f"{loss.upper()} arms, first repeat", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, Path(figures_dir) / "training_curves.png")


def report(result, figures_dir: Path) -> list[Path]:
    figures_dir = Path(figures_dir)
    rows = result.runs(RunStatus.OK)
    if not rows:
        return []
    patterns, amp_mean, amp_rms = {}, {}, {}
    for dose in sorted({r["data.nphotons"] for r in rows}):
        r = next(x for x in rows if x["data.nphotons"] == dose)
        data = result.dataset(r["data_key"])
        a = data["test_amplitudes"].astype(np.float64)
        patterns[dose] = a[len(a) // 2]
        amp_mean[dose], amp_rms[dose] = a.mean(), np.sqrt((a**2).mean())
    paths = []
    if len(amp_mean) >= 2:
        hi, lo = max(amp_mean), min(amp_mean)
        line = (f"sanity: mean amplitude ratio {hi:.0e}/{lo:.0e} photons = {amp_mean[hi] / amp_mean[lo]:.0f}, "
                f"RMS amplitude ratio = {amp_rms[hi] / amp_rms[lo]:.0f} (sqrt({hi / lo:.0e}) = {np.sqrt(hi / lo):.0f})")
        log.info(line)
        (figures_dir / "sanity.txt").write_text(line + "\n")
    paths.append(dose_figure(result, rows, figures_dir, patterns))
    paths.append(training_curves(result, rows, figures_dir))
    paths.append(reference_figure(result, rows, figures_dir))
    configs = result.configs(METRICS, by=_arm_axes(result))
    paths.append(write_csv(configs.to_pylist(), figures_dir / "dose_summary.csv"))
    return paths


study = replace(pipeline.study, name="dose_response", report=report,
                description="How does PINN reconstruction quality change between 1e9 and 1e4 photons, under a Poisson "
                            "NLL loss versus MAE?",
                findings=tuple(Finding(m, "fit.loss", "mae", where={"fit.model": "pinn"})
                               for m in ("metrics.ssim", "metrics.psnr", "metrics.resolution_px")))
