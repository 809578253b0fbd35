"""The generic sweep report: configurations ranked by a metric with CIs, the runs, the best configuration's
overrides, a heatmap over two axes and the metric against each axis (figures/sweep/)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweeper.hashing import plain
from sweeper.records import ONE_DATASET, RunStatus
from sweeper.report import figures
from sweeper.report.figures import fmt
from sweeper.report.tables import text_table, write_csv
from sweeper.store.atomic import atomic_write


def metrics_by_axis(result, out_dir: Path) -> list:
    """A study without a report of its own: every metric against each swept axis (metric_vs_axis)."""
    if not result.metrics or not result.counts()["ok"]:
        return []
    return [figures.metric_vs_axis(result, result.metrics, axis, Path(out_dir) / f"metrics_by_{_slug(axis)}.png")
            for axis in result.axes if len(figures.levels(result, axis)) > 1]


def _slug(name: str) -> str:
    return name.replace(".", "_")


@dataclass
class SweepReport:
    """What the sweep report made: configurations ranked by the metric ([(rank or None, ConfigRow)]), the best
    one, the files written."""

    configs: list
    axes: list
    metric: str | None
    maximize: bool | None  # None: no better direction, nothing ranked
    best: dict | None
    paths: list

    def table_text(self, limit: int = 20) -> str:
        """The ranked configurations as an aligned text table (the first `limit`)."""
        name = self.metric.removeprefix("metrics.") if self.metric else None
        ranked = bool(name) and self.maximize is not None
        head = [*(["rank"] if ranked else []), *self.axes, "n", "failed", *([f"{name} mean", "95% CI"] if name else [])]
        rows = [[*([fmt(k) if k else "-"] if ranked else []), *(fmt(r.axes[a]) for a in self.axes),
                 str(r.n), str(r.n_failed), *([fmt(r.stat(name).mean), _interval(r.stat(name))] if name else [])]
                for k, r in self.configs[:limit]]
        text = text_table(head, rows)
        if len(self.configs) > limit:
            text += f"\n... {len(self.configs) - limit} more configurations in summary.csv"
        return text


def _interval(s) -> str:
    if s.unit == ONE_DATASET:
        return f"none (fitting SD {s.sd:.4g}, 1 dataset)"
    return f"[{s.low:.4g}, {s.high:.4g}]" if s.has_interval else "-"


def rank(rows, metric: str, maximize: bool) -> list:
    """[(rank, ConfigRow)] best first by mean `metric`, 1-based; those without a mean (no ok run, or NaN in
    every run) last, rank None."""
    sign = -1.0 if maximize else 1.0
    valued = lambda r: r.n > 0 and math.isfinite(r.stat(metric).mean)  # noqa: E731
    ordered = sorted(rows, key=lambda r: (not valued(r), sign * r.stat(metric).mean if valued(r) else 0.0))
    return [(i if valued(r) else None, r) for i, r in enumerate(ordered, 1)]


def run_rows(result) -> list:
    """Every planned run: status, the error's line, axes, metrics, best (min) and final history values."""
    from sweeper.results.sweep_result import error_line

    rows = []
    for r in result.runs():
        row = {"run_id": r.run_id, "status": r.status.value, **{a: r[a] for a in result.axes},
               **({m: r.get(m) for m in result.metrics} if r.status != RunStatus.PENDING else {}),
               "error": error_line(r.error) if r.error else None}
        if r.status != RunStatus.PENDING:
            row.update(_history_stats(result.history(r.run_id)))
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
    out = result.paths.sweep_figures
    out.mkdir(parents=True, exist_ok=True)
    metric = result.metric_names(metric)[0] if metric else None
    result.check_axes(axes or [])
    rows = result.configs(ci=ci)
    configs, best = [(None, r) for r in rows], None
    if metric and maximize is not None:  # None: no better direction, nothing ranked
        configs = rank(rows, metric, maximize)
        best = result.best(metric, "max" if maximize else "min", ci)
    ranked = bool(metric) and maximize is not None
    table = [{**({"rank": k} if ranked else {}), **rows.row_columns(r)} for k, r in configs]
    paths = [write_csv(table, out / "summary.csv"), write_csv(run_rows(result), out / "runs.csv")]
    summary = {"metric": metric, "maximize": maximize, "axes": result.axes, "ci": ci,
               "best": best and {k: v for k, v in best.items() if k != "interval"}, "configurations": table}
    text = json.dumps(plain(summary, nonfinite=lambda v: None), indent=1, default=str, allow_nan=False)
    atomic_write(out / "summary.json", lambda p: Path(p).write_text(text))
    paths.append(out / "summary.json")
    if metric and (best or maximize is None and result.counts()["ok"]):
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
    split = figures.variance_split(result, [metric], out / f"variance_split_{name}.png")
    return paths + ([split] if split else [])
