"""Dose response: PINN reconstruction quality at high (1e9) vs low (1e4) photons, Poisson NLL vs MAE loss.

Same object, probe and scan trajectories in every arm: photon statistics are the only difference
between doses. `report` draws the 6-panel comparison, the training curves and summary.csv.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sweeper import Study
from sweeper.report import pyplot, write_csv
from sweeper.values import to_rows

from .ptychography import VERSION, DataParams, FitParams, cleanup, fit, setup, simulate

log = logging.getLogger("sweeper.studies.dose_response")
METRICS = ["metrics.mae", "metrics.mse", "metrics.psnr", "metrics.ssim", "metrics.frc_1_7",
           "metrics.resolution_px", "metrics.phase_mae"]


def _rows(result) -> list[dict]:
    return [r for r in to_rows(result.table) if r["status"] == "ok"]


def _arm_label(cfg: dict) -> str:
    """PSNR and SSIM of an arm: mean with its 95% CI over the arm's runs, and n."""
    def one(name, unit, digits):
        mean, low, high = (cfg[f"{name}_{s}"] for s in ("mean", "ci_low", "ci_high"))
        ci = f" [{low:.{digits}f}, {high:.{digits}f}]" if np.isfinite(low) else ""
        return f"{name.upper()} {mean:.{digits}f}{unit}{ci}"
    n = cfg["n"]
    return f"{one('psnr', ' dB', 1)}\n{one('ssim', '', 3)}\n" + (f"n={n}, 95% CI" if n > 1 else "n=1 run, no CI")


def _pick(rows, nphotons, loss):
    """The first repeat of an arm."""
    arm = [r for r in rows if r["data.nphotons"] == nphotons and r["fit.loss"] == loss]
    return min(arm, key=lambda r: (r["repeat_data"], r["repeat_fit"])) if arm else None


def _crop(img, frac=0.5):
    h, w = img.shape
    dh, dw = int(h * frac / 2), int(w * frac / 2)
    return img[h // 2 - dh:h // 2 + dh, w // 2 - dw:w // 2 + dw]


def dose_figure(result, rows, figures_dir: Path, patterns: dict) -> Path:
    plt = pyplot()

    doses = sorted({r["data.nphotons"] for r in rows}, reverse=True)
    arms = {(c["data.nphotons"], c["fit.loss"]): c
            for c in to_rows(result.configs(["psnr", "ssim"], by=["data.nphotons", "fit.loss"]))}
    logs = {d: np.log10(patterns[d].astype(np.float64) ** 2 + 1) for d in doses}
    vmax = max(float(v.max()) for v in logs.values())
    fig, axs = plt.subplots(len(doses), 3, figsize=(10, 3.4 * len(doses)), squeeze=False)
    for i, dose in enumerate(doses):
        ax = axs[i, 0]
        im = ax.imshow(logs[dose], cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(f"diffraction, {dose:.0e} photons")
        fig.colorbar(im, ax=ax, fraction=0.046, label="log10(counts + 1)")
        for j, loss in enumerate(("mae", "nll"), start=1):
            ax, run = axs[i, j], _pick(rows, dose, loss)
            if run is None:
                ax.set_title(f"{loss.upper()}: no run")
            else:
                amp = result.run(run["run_id"]).arrays["amplitude"]
                ax.imshow(_crop(amp), cmap="gray", vmin=0.5, vmax=1.5)
                ax.set_title(f"{loss.upper()} loss, {dose:.0e} (first repeat shown)")
                ax.text(0.02, 0.02, _arm_label(arms[(dose, loss)]),
                        transform=ax.transAxes, color="yellow", fontsize=9, va="bottom",
                        bbox={"facecolor": "black", "alpha": 0.5, "lw": 0})
        for ax in axs[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("PINN reconstruction (amplitude, central crop) by dose and loss")
    fig.tight_layout()
    path = Path(figures_dir) / "dose_comparison.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(result, rows, figures_dir: Path) -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in sorted(rows, key=lambda r: (-r["data.nphotons"], r["fit.loss"])):
        if r["repeat_fit"] or r["repeat_data"]:
            continue
        history = result.run(r["run_id"]).history
        if history is None:
            continue
        h = history.to_pydict()
        if "train_loss" not in h:  # the epie reference trains nothing
            continue
        label = f"{r['data.nphotons']:.0e} / {r['fit.loss']}"
        line, = ax.plot(h["epoch"], h["train_loss"], label=f"{label} train")
        if any(v is not None for v in h.get("val_loss", [])):
            ax.plot(h["epoch"], h["val_loss"], "--", color=line.get_color(), label=f"{label} val")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (each arm in its own units)")
    ax.set_title("first repeat of each arm", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(figures_dir) / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(result, figures_dir: Path) -> list[Path]:
    figures_dir = Path(figures_dir)
    rows = _rows(result)
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
    configs = result.configs(METRICS, by=["data.nphotons", "fit.loss"])
    paths.append(write_csv(to_rows(configs), figures_dir / "dose_summary.csv"))
    return paths


study = Study("dose_response", simulate, fit, data_params=DataParams, fit_params=FitParams, version=VERSION, report=report,
              setup=setup, teardown=cleanup,
              description="How does PINN reconstruction quality change between 1e9 and 1e4 photons, under a Poisson NLL loss versus MAE?")
