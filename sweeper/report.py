"""The generic sweep report: configurations ranked by a metric with CIs, the runs, the best configuration's
overrides, a heatmap over two axes and the metric against each axis (figures/sweep/). Also the CSV and
variance-components helpers the studies' reports use."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import figures
from .figures import fmt, pyplot  # noqa: F401  (studies draw with the same pyplot)
from .hashing import plain
from .files import atomic_write
from .values import to_rows


def text_table(head: list, rows: list) -> str:
    """Rows of strings as left-aligned columns under `head`, two spaces apart."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in [head, *rows])


def metrics_by_axis(result, out_dir: Path) -> list:
    """A study without a report of its own: every metric against each swept axis (metric_vs_axis)."""
    if not result.metrics or not result.counts()["ok"]:
        return []
    return [figures.metric_vs_axis(result, result.metrics, axis, Path(out_dir) / f"metrics_by_{_slug(axis)}.png")
            for axis in result.axes if len(figures.levels(result, axis)) > 1]


def _slug(name: str) -> str:
    return name.replace(".", "_")


def write_csv(rows: list[dict], path: Path) -> Path:
    """A list of flat dicts as CSV (columns in first-seen order)."""
    import csv

    cols = list(dict.fromkeys(k for r in rows for k in r))

    def w(p):
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(Path(path), w)
    return Path(path)


def variance_components(values, groups) -> dict:
    """Split the variance of `values` into between-group and within-group parts.

    One-way random-effects ANOVA (method of moments): within = MS_within, between =
    (MS_between - MS_within) / n0 (floored at 0), n0 = (N - sum n_i^2 / N) / (G - 1) for unequal
    group sizes. With crossed data, groups are datasets: between = data variance, within = fitting
    variance. A part that the design cannot estimate (one group; or one value per group) is NaN.
    """
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    keep = np.isfinite(values)
    values, groups = values[keep], groups[keep]
    labels, idx = np.unique(groups, return_inverse=True)
    g, n = len(labels), len(values)
    sizes = np.bincount(idx, minlength=g)
    means = np.bincount(idx, weights=values, minlength=g) / np.maximum(sizes, 1)
    grand = values.mean() if n else np.nan
    ss_within = float(((values - means[idx]) ** 2).sum())
    ss_between = float((sizes * (means - grand) ** 2).sum())
    within = ss_within / (n - g) if n > g else np.nan
    if g > 1:
        n0 = (n - (sizes ** 2).sum() / n) / (g - 1)
        ms_between = ss_between / (g - 1)
        between = max((ms_between - within) / n0, 0.0) if np.isfinite(within) else ms_between
    else:
        between = np.nan
    total = np.nansum([between, within]) if np.isfinite(between) or np.isfinite(within) else np.nan
    return {"groups": g, "n": n, "var_between": float(between), "var_within": float(within),
            "var_total": float(total), "share_between": float(between / total) if total and np.isfinite(between)
            else np.nan}


@dataclass
class SweepReport:
    """What the sweep report made: configurations ranked by the metric, the best one, the files written."""

    configs: list
    axes: list
    metric: str | None
    maximize: bool
    best: dict | None
    paths: list

    def table_text(self, limit: int = 20) -> str:
        """The ranked configurations as an aligned text table (the first `limit`)."""
        name = self.metric.removeprefix("metrics.") if self.metric else None
        head = [*(["rank"] if name else []), *self.axes, "n", "failed", *([f"{name} mean", "95% CI"] if name else [])]
        rows = [[*([fmt(r["rank"]) if r["rank"] else "-"] if name else []), *(fmt(r[a]) for a in self.axes),
                 str(r["n"]), str(r["n_failed"]), *([fmt(r[f"{name}_mean"]), _interval(r, name)] if name else [])]
                for r in self.configs[:limit]]
        text = text_table(head, rows)
        if len(self.configs) > limit:
            text += f"\n... {len(self.configs) - limit} more configurations in summary.csv"
        return text


def _interval(row, name) -> str:
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    return f"[{low:.4g}, {high:.4g}]" if low is not None and math.isfinite(low) else "-"


def rank(rows: list, metric: str, maximize: bool) -> list:
    """Configurations best first by mean `metric`; those without an ok run last. Adds `rank` (1-based)."""
    name = metric.removeprefix("metrics.")
    sign = -1.0 if maximize else 1.0
    key = lambda r: (r["n"] == 0, 0.0 if r["n"] == 0 else sign * r[f"{name}_mean"])  # noqa: E731
    return [{"rank": i if r["n"] else None, **r} for i, r in enumerate(sorted(rows, key=key), 1)]


def run_rows(result) -> list:
    """Every planned run: status, the error's line, axes, metrics, best (min) and final history values."""
    from .results import error_line
    from .values import decode

    by_id = {r["run_id"]: r for r in to_rows(result.table)}
    axes = {a: decode(result.plan, a) for a in result.axes}
    rows = []
    for i, rid in enumerate(result.plan.column("run_id").to_pylist()):
        r = by_id.get(rid, {})
        row = {"run_id": rid, "status": r.get("status", "pending"), **{a: v[i] for a, v in axes.items()},
               **{k: v for k, v in r.items() if k.startswith("metrics.")},
               "error": error_line(r["error"]) if r.get("error") else None}
        if r:
            row.update(_history_stats(result.sd.read_history(rid)))
        rows.append(row)
    return rows


def _history_stats(hist) -> dict:
    out = {}
    for name in (hist.column_names if hist is not None else []):
        v = np.asarray(hist.column(name).to_pylist(), dtype=float)
        if name != "epoch" and v.size and np.isfinite(v).any():
            out[f"history.{name}.best"] = float(np.nanmin(v))
            out[f"history.{name}.final"] = float(v[-1])
    return out


def sweep_report(result, metric: str | None = None, maximize: bool = False, axes: list | None = None,
                 ci: float = 0.95) -> SweepReport:
    """The generic report of any sweep, in figures/sweep/: summary.csv (one row per configuration, ranked
    by `metric` if given, with CIs), runs.csv, summary.json, a heatmap of the metric over two axes and the
    metric against each axis. A ValueError names an unknown metric or axis."""
    out = result.sd.sweep_figures
    out.mkdir(parents=True, exist_ok=True)
    metric = result.metric_names(metric)[0] if metric else None
    result.check_axes(axes or [])
    configs = to_rows(result.configs(ci=ci))
    best = None
    if metric:
        configs = rank(configs, metric, maximize)
        best = result.best(metric, "max" if maximize else "min", ci)
    paths = [write_csv(configs, out / "summary.csv"), write_csv(run_rows(result), out / "runs.csv")]
    summary = {"metric": metric, "maximize": maximize, "axes": result.axes, "ci": ci, "best": best,
               "configurations": configs}
    text = json.dumps(plain(summary, nonfinite=lambda v: None), indent=1, default=str, allow_nan=False)
    atomic_write(out / "summary.json", lambda p: Path(p).write_text(text))
    paths.append(out / "summary.json")
    if metric and best:
        paths += _figures(result, metric, maximize, axes, out, ci)
    return SweepReport(configs, result.axes, metric, maximize, best, paths)


def _figures(result, metric, maximize, axes, out: Path, ci: float) -> list:
    chosen = list(axes) if axes else [a for a in result.axes if len(figures.levels(result, a)) > 1]
    name = _slug(metric.removeprefix("metrics."))
    paths = []
    if len(chosen) >= 2:
        paths.append(figures.heatmap(result, metric, chosen[0], chosen[1], out / f"heatmap_{name}.png", maximize,
                                     ci))
    for x in chosen:
        paths.append(figures.metric_vs_axis(result, [metric], x, out / f"{name}_vs_{_slug(x)}.png", ci))
    return paths
