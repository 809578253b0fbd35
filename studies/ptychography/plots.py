"""Figure pieces the ptychography studies share: the object's central crop, a line of means with CI bars
cut at the metric's range beside each run's dot, and saving a figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeper.toolkit import pyplot

from .pipeline import METRIC_RANGES


def central_crop(img, frac: float = 0.5):
    """The middle `frac` of an image in each direction (the figures' view of the object)."""
    h, w = img.shape
    dh, dw = int(h * frac / 2), int(w * frac / 2)
    return img[h // 2 - dh:h // 2 + dh, w // 2 - dw:w // 2 + dw]


def ci_line(ax, metric: str, configs: list, runs: list, x_key: str, shift: float = 1.0, **style) -> None:
    """One arm: its configurations' (ConfigRows) means over `x_key` with 95% CI bars cut at the metric's range,
    and its runs (records) as dots; x moved by the factor `shift` so that arms drawn side by side do not hide
    each other."""
    name = metric.removeprefix("metrics.")
    pts = sorted(configs, key=lambda c: c.axes[x_key])
    x = np.array([c.axes[x_key] for c in pts]) * shift
    y = np.array([c.stat(name).mean for c in pts])
    low = np.clip([c.stat(name).low for c in pts], *METRIC_RANGES[name])
    high = np.clip([c.stat(name).high for c in pts], *METRIC_RANGES[name])
    bars = ax.errorbar(x, y, yerr=np.nan_to_num(np.array([y - low, high - y])), marker="o", capsize=3, **style)
    ax.scatter([r[x_key] * shift for r in runs], [r[f"metrics.{name}"] for r in runs], s=10, alpha=0.5,
               color=bars.lines[0].get_color(), zorder=3)


def log_axis(ax, which: str = "y", base: float = 10) -> None:
    """A log axis labelled in plain numbers that never crowd: the decades, and between them only 2x and 5x
    (matplotlib's default labels every minor tick of a short axis in 10^x notation, which overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    if base == 10:
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        axis.set_minor_formatter(plain)


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)
