"""Figures that never pool silently: a metric against one axis (a line per value of a second) or over two
axes (a heatmap), with a panel per value of every other swept axis; past MAX_PANELS panels the rest are
averaged and the title names them. Error bars are the CIs of SweepResult.configs(); failed
configurations are marked, not blank; an axis spanning more than a decade is drawn on a log scale."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sweeper.columns import key_of
from sweeper.records import MIXED, ONE_DATASET

MAX_PANELS = 12
MAX_LINES = 8


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (reports run in workers and on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def levels(result, axis: str) -> list:
    """The values of a swept axis, typed, in first-planned order (numbers sorted)."""
    vals = result.levels(axis)
    return sorted(vals) if numeric(vals) else vals


def numeric(vals) -> bool:
    return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


def log_scale(vals) -> bool:
    """Numeric, non-negative values whose positive ones span more than a decade."""
    positive = [v for v in vals if numeric(vals) and v > 0]
    return bool(positive) and min(vals) >= 0 and max(positive) / min(positive) > 10


def layout(result, shown: list, max_panels: int = MAX_PANELS) -> tuple[list, list]:
    """(axes drawn as panels, axes averaged over): the other axes become panels while they fit."""
    facet, pooled, count = [], [], 1
    for a in result.axes:
        if a in shown:
            continue
        n = len(levels(result, a))
        if count * n <= max_panels:
            facet.append(a)
            count *= n
        else:
            pooled.append(a)
    return facet, pooled


def panels(rows: list, facet: list) -> list[tuple[str, list]]:
    """[(panel title, its ConfigRows)] for each combination of the facet axes' values."""
    out: dict = {}
    for r in rows:
        title = ", ".join(f"{a}={fmt(r.axes[a])}" for a in facet)
        out.setdefault(key_of([r.axes[a] for a in facet]), (title, []))[1].append(r)
    return list(out.values())


def grid(plt, n: int, width: float = 4.6, height: float = 3.4, rows_of: int = 1):
    cols = min(n, 4)
    nrows = math.ceil(n / cols)
    fig, axs = plt.subplots(nrows * rows_of, cols, figsize=(width * cols, height * nrows * rows_of),
                            squeeze=False)
    return fig, axs


def caption(rows: list, ci: float, pooled: list, what: str = "error bars") -> str:
    """What the error bars (or ± values) are and what each point averages over."""
    ns = [r.n for r in rows if r.n > 0]
    unit = "dataset means" if any(r.ci_unit == "datasets" for r in rows) else "runs"
    span = f"{min(ns)}-{max(ns)}" if ns and min(ns) < max(ns) else str(ns[0] if ns else 0)
    if rows and all(r.ci_unit == ONE_DATASET for r in rows if r.n > 0):
        return (f"points: mean of {span} fits on one dataset; no {what}: the spread of fits on one dataset is "
                "fitting variance and says nothing of data variance" + (f"; averaged over {', '.join(pooled)}"
                                                                        if pooled else ""))
    text = f"{what}: {ci:.0%} CI of the mean (Student t over {unit}); n = {span} ok runs per point"
    if pooled:
        text += f"; averaged over {', '.join(pooled)}"
    if any(r.n == 1 for r in rows):
        text += "; none where n=1"
    if any(r.ci_unit == MIXED for r in rows):
        text += "; none where a point pools several data configurations (their datasets are not replicates)"
    if any(r.ci_unit == ONE_DATASET for r in rows):
        text += "; none where every fit used one dataset (fitting variance only)"
    return text


def _x(vals, level):
    """The x position of an axis value: itself if the axis is numeric, else its index among the levels."""
    return level if numeric(vals) else [key_of(v) for v in vals].index(key_of(level))


def _line(ax, rows, metric, x, xs, label):
    """One line of configuration means with CI bars; failed configurations as red crosses at the bottom."""
    ok = sorted((r for r in rows if r.n > 0), key=lambda r: _x(xs, r.axes[x]))
    px = [_x(xs, r.axes[x]) for r in ok]
    mean = np.array([r.stat(metric).mean for r in ok], float)
    low = np.array([r.stat(metric).low for r in ok], float)
    high = np.array([r.stat(metric).high for r in ok], float)
    err = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0) if ok else None
    line = ax.errorbar(px, mean, yerr=err, marker="o", capsize=3, label=label)
    failed = [r for r in rows if r.n == 0 and r.n_failed > 0]
    if failed:
        ax.plot([_x(xs, r.axes[x]) for r in failed], [0.02] * len(failed), "x", ms=9, mew=2,
                color=line[0].get_color(), transform=ax.get_xaxis_transform(), clip_on=False)
        for r in failed:
            ax.annotate("failed", (_x(xs, r.axes[x]), 0.05), xycoords=("data", "axes fraction"), fontsize=7,
                        ha="center", color="red")


def format_x(ax, xs, label) -> None:
    if numeric(xs):
        if log_scale(xs) and min(xs) > 0:
            ax.set_xscale("log")
        elif log_scale(xs):  # a 0 among them: linear up to the smallest positive value, log beyond
            ax.set_xscale("symlog", linthresh=min(v for v in xs if v > 0))
    else:
        ax.set_xticks(range(len(xs)), [fmt(v) for v in xs])
    ax.set_xlabel(label)


def metric_vs_axis(result, metrics: list, x: str, path: Path, ci: float = 0.95) -> Path:
    """Each metric (a row of panels) against axis x: a line per value of the first other axis (up to
    MAX_LINES values), a panel per value of the next ones, the rest averaged and named in the title."""
    plt = pyplot()
    hue = next((a for a in result.axes if a != x and len(levels(result, a)) <= MAX_LINES), None)
    facet, pooled = layout(result, [x, hue], max(1, MAX_PANELS // len(metrics)))
    rows = result.configs(metrics, ci, by=[a for a in (x, hue, *facet) if a])
    xs, groups = levels(result, x), panels(rows, facet)
    fig, axs = plt.subplots(len(metrics), len(groups), figsize=(4.6 * len(groups), 3.3 * len(metrics) + 0.6),
                            squeeze=False)
    for i, metric in enumerate(metrics):
        for j, (title, members) in enumerate(groups):
            ax = axs[i, j]
            for h in (levels(result, hue) if hue else [None]):
                sel = [r for r in members if hue is None or key_of(r.axes[hue]) == key_of(h)]
                _line(ax, sel, metric, x, xs, None if hue is None else f"{hue}={fmt(h)}")
            format_x(ax, xs, x)
            ax.set_ylabel(metric.removeprefix("metrics."))
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
    if hue:
        axs[0, 0].legend(fontsize=7)
    what = ", ".join(m.removeprefix("metrics.") for m in metrics)
    fig.suptitle(f"{what} vs {x}" + (f" (averaged over {', '.join(pooled)})" if pooled else ""), fontsize=10)
    fig.tight_layout()
    fig.text(0.5, -0.01, caption(rows, ci, pooled), ha="center", va="top", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def variance_split(result, metrics: list, path: Path) -> Path | None:
    """Crossed data: each configuration's variance of each metric split into data variance (between datasets)
    and fitting variance (within one), as stacked bars; None without a configuration that has the split."""
    rows = [r for r in result.configs(metrics) if any(math.isfinite(s.var_data) for s in r.stats.values())]
    if not rows:
        return None
    plt = pyplot()
    fig, axs = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    labels = [(", ".join(f"{a}={fmt(v)}" for a, v in r.axes.items()) or "all runs")
              + f"\n{r.n} runs on {r.n_datasets} datasets" for r in rows]
    for ax, metric in zip(axs[0], metrics):
        stats = [r.stat(metric) for r in rows]
        data, fit = np.array([s.var_data for s in stats]), np.array([s.var_fit for s in stats])
        ax.bar(range(len(rows)), data, label="data (between datasets)")
        ax.bar(range(len(rows)), fit, bottom=np.nan_to_num(data), label="fitting (within a dataset)")
        ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{metric.removeprefix('metrics.')}: variance split", fontsize=9)
        ax.set_ylabel("variance")
    axs[0, 0].legend(fontsize=7)
    fig.text(0.5, -0.02, "one-way random-effects ANOVA over each configuration's runs, datasets as groups "
             "(method of moments); runs and datasets under each bar", ha="center", va="top", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _cell_text(r, metric) -> str:
    if r is None:
        return ""
    if r.n == 0:
        return f"failed ({r.n_failed})" if r.n_failed else "pending"
    s = r.stat(metric)
    half = (s.high - s.low) / 2
    pm = f"\n±{half:.2g}" if math.isfinite(half) else ""
    return f"{s.mean:.3g}{pm}\nn={r.n}" + (f", {r.n_failed} failed" if r.n_failed else "")


def heatmap(result, metric: str, x: str, y: str, path: Path, maximize: bool, ci: float = 0.95) -> Path:
    """The mean of `metric` over (x, y), a heatmap per value of the other axes (the rest averaged and
    named); each cell says mean, CI half-width and n; failed cells are hatched and say so."""
    plt = pyplot()
    name = metric.removeprefix("metrics.")
    facet, pooled = layout(result, [x, y])
    rows = result.configs(metric, ci, by=[x, y, *facet])
    xs, ys, groups = levels(result, x), levels(result, y), panels(rows, facet)
    finite = [r.stat(metric).mean for r in rows if r.n > 0 and math.isfinite(r.stat(metric).mean)]
    vmin, vmax = (min(finite), max(finite)) if finite else (0, 1)
    fig, axs = grid(plt, len(groups), 1.3 * len(xs) + 2.6, 0.8 * len(ys) + 1.8)
    for ax, (title, members) in zip(axs.flat, groups):
        cell = {(key_of(r.axes[x]), key_of(r.axes[y])): r for r in members}
        img = np.full((len(ys), len(xs)), np.nan)
        for (i, xv), (j, yv) in ((a, b) for a in enumerate(xs) for b in enumerate(ys)):
            r = cell.get((key_of(xv), key_of(yv)))
            if r is not None and r.n > 0:
                img[j, i] = r.stat(metric).mean
            if r is not None and r.n == 0:
                ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="xx", color="red", lw=0))
            ax.text(i, j, _cell_text(r, metric), ha="center", va="center", fontsize=8,
                    bbox=dict(facecolor="white", alpha=0.6, lw=0))
        im = ax.imshow(img, cmap="viridis_r" if maximize is False else "viridis", vmin=vmin, vmax=vmax, aspect="auto",
                       origin="lower")
        ax.set_xticks(range(len(xs)), [fmt(v) for v in xs])
        ax.set_yticks(range(len(ys)), [fmt(v) for v in ys])
        ax.set(xlabel=x, ylabel=y, title=title)
    for ax in list(axs.flat)[len(groups):]:
        ax.axis("off")
    better = "" if maximize is None else f", {'higher' if maximize else 'lower'} is better"
    fig.colorbar(im, ax=axs, label=f"{name} mean{better}")
    fig.suptitle(f"{name}: mean over repeats" + (f", averaged over {', '.join(pooled)}" if pooled else ""),
                 fontsize=10)
    fig.text(0.5, -0.03, caption(rows, ci, pooled, "±"), ha="center", va="top", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
