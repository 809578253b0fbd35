"""Generic figures for any study: each metric against each swept axis, mean and spread over repeats."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (reports run in workers and on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def text_table(head: list, rows: list) -> str:
    """Rows of strings as left-aligned columns under `head`, two spaces apart."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in [head, *rows])


def axis_columns(table: pa.Table) -> list:
    """Parameter columns that take more than one value in the table (the swept axes)."""
    cols = [c for c in table.column_names if c.startswith(("data.", "fit.")) or c == "session"]
    return [c for c in cols if len(set(map(str, table.column(c).to_pylist()))) > 1]


def metric_columns(table: pa.Table) -> list:
    return [c for c in table.column_names if c.startswith("metrics.")]


def metrics_by_axis(table: pa.Table, out_dir: Path) -> list:
    """One PNG per swept axis: every metric of the ok runs vs that axis (mean +- std over the rest)."""
    plt = pyplot()
    out_dir = Path(out_dir)
    if table.num_rows == 0:
        return []
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    metrics, axes = metric_columns(ok), axis_columns(ok)
    paths = []
    for axis in axes:
        xs = ok.column(axis).to_pylist()
        levels = _levels(xs)
        fig, axs = plt.subplots(1, max(len(metrics), 1), figsize=(4 * max(len(metrics), 1), 3.2), squeeze=False)
        for ax, m in zip(axs[0], metrics):
            ys = np.array(ok.column(m).to_pylist(), dtype=float)
            mean = [np.nanmean(ys[[x == lv for x in xs]]) for lv in levels]
            std = [np.nanstd(ys[[x == lv for x in xs]]) for lv in levels]
            ax.errorbar(_positions(levels), mean, yerr=std, marker="o", capsize=3)
            _format_level_axis(ax, levels, axis)
            ax.set_title(m.removeprefix("metrics."))
        fig.tight_layout()
        path = out_dir / f"metrics_by_{axis.replace('.', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def aggregate(table: pa.Table, by: list, metrics: list) -> list[dict]:
    """Rows of mean, std and n of each metric over the ok runs, per combination of the `by` columns."""
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    keys = list(zip(*(ok.column(c).to_pylist() for c in by))) if by else [()] * ok.num_rows
    values = {m: np.array(ok.column(m).to_pylist(), dtype=float) for m in metrics if m in ok.column_names}
    rows = []
    for key in sorted(set(keys), key=lambda k: tuple(str(v) if isinstance(v, str) else v for v in k)):
        sel = np.array([k == key for k in keys])
        row = dict(zip(by, key))
        row["n"] = int(sel.sum())
        for m, v in values.items():
            name = m.removeprefix("metrics.")
            row[f"{name}_mean"] = float(np.nanmean(v[sel]))
            row[f"{name}_std"] = float(np.nanstd(v[sel], ddof=1)) if sel.sum() > 1 else 0.0
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    """A list of flat dicts as CSV (columns in first-seen order)."""
    import csv

    from .store import atomic_write

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


PLAN_COLUMNS = {"run_id", "data_key", "session", "repeat_data", "repeat_fit", "seed_data", "seed_fit", "params"}


@dataclass
class SweepReport:
    """What `sweep report` made: rows ranked by the metric, the best configuration, the files written."""

    rows: list
    axes: list
    metric: str | None
    maximize: bool
    best: dict | None
    paths: list

    def table_text(self, limit: int = 20) -> str:
        """The ranked runs as an aligned text table (the first `limit`)."""
        cols = ["rank", "status", *self.axes, *([self.metric] if self.metric else []), "run_id"]
        text = text_table(cols, [[_fmt(r.get(c)) for c in cols] for r in self.rows[:limit]])
        if len(self.rows) > limit:
            text += f"\n... {len(self.rows) - limit} more runs in summary.csv"
        return text


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _history_stats(root: Path, run_id: str) -> dict:
    """best (min) and final value of every column of a run's history.parquet."""
    import pyarrow.parquet as pq

    path = root / "runs" / run_id / "history.parquet"
    if not path.is_file():
        return {}
    hist = pq.read_table(path)
    out = {}
    for name in hist.column_names:
        if name == "epoch":
            continue
        v = np.asarray(hist.column(name).to_pylist(), dtype=float)
        if v.size and np.isfinite(v).any():
            out[f"history.{name}.best"] = float(np.nanmin(v))
            out[f"history.{name}.final"] = float(v[-1])
    return out


def sweep_rows(root, results: pa.Table | None = None) -> tuple[list, list]:
    """(rows, axes): one row per planned run (pending ones too) with its axes, status, metrics and history
    best/final values; axes are the plan's swept keys. `results`: the results table if already read."""
    import pyarrow.parquet as pq

    from .driver import load_results

    root = Path(root)
    plan = pq.read_table(root / "plan.parquet")
    axes = [c for c in plan.column_names if c not in PLAN_COLUMNS]
    if "session" in plan.column_names and any(plan.column("session").to_pylist()):
        axes = ["session", *axes]
    if results is None:
        results = load_results(root) if (root / "runs").is_dir() else pa.table({"run_id": pa.array([], pa.string())})
    by_id = {r["run_id"]: r for r in results.to_pylist()}
    rows = []
    for p in plan.to_pylist():
        r = by_id.get(p["run_id"], {})
        row = {"run_id": p["run_id"], "status": r.get("status", "pending"),
               **{a: p.get(a) for a in axes}, "repeat_data": p["repeat_data"], "repeat_fit": p["repeat_fit"]}
        row.update({k: v for k, v in r.items() if k.startswith("metrics.")})
        row.update(_history_stats(root, p["run_id"]))
        row["duration_s"] = r.get("duration_s")
        err = r.get("error")
        row["error"] = err.strip().splitlines()[-1] if isinstance(err, str) and err.strip() else None
        rows.append(row)
    return rows, axes


def _value(row, metric):
    v = row.get(metric)
    return float(v) if isinstance(v, (int, float)) and row.get("status") == "ok" and np.isfinite(v) else np.nan


def rank_rows(rows: list, metric: str, maximize: bool) -> list:
    """Rows sorted best first by `metric`; failed, pending and NaN rows last. Adds `rank` (1-based)."""
    sign = -1.0 if maximize else 1.0
    scored = sorted(((_value(r, metric), r) for r in rows),
                    key=lambda vr: (np.isnan(vr[0]), 0.0 if np.isnan(vr[0]) else sign * vr[0]))
    return [{"rank": None if np.isnan(v) else i, **r} for i, (v, r) in enumerate(scored, 1)]


def best_configuration(rows: list, axes: list, metric: str, maximize: bool) -> dict | None:
    """The axis values whose ok runs have the best mean metric, and the overrides that reproduce them."""
    groups: dict = {}
    for r in rows:
        v = _value(r, metric)
        if not np.isnan(v):
            groups.setdefault(tuple(r.get(a) for a in axes), []).append(v)
    if not groups:
        return None
    pick = (max if maximize else min)(groups, key=lambda k: np.mean(groups[k]))
    vals = groups[pick]
    overrides = [f"{a}={_override_value(v)}" for a, v in zip(axes, pick)]
    return {"axes": dict(zip(axes, pick)), "metric": metric, "mean": float(np.mean(vals)),
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "n": len(vals), "overrides": overrides}


def _override_value(v) -> str:
    import json

    if isinstance(v, str):
        try:
            json.loads(v)  # a list or mapping axis value is stored as JSON text, which YAML reads back
            return v.replace(" ", "")
        except ValueError:
            return v
    return json.dumps(v)


def _levels(values) -> list:
    return sorted(set(values), key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else str(v)))


def _numeric(levels) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)


def _positions(levels) -> list:
    """x positions of an axis's levels: the values themselves if numeric, else 0, 1, 2, ..."""
    return levels if _numeric(levels) else list(range(len(levels)))


def _format_level_axis(ax, levels, label: str) -> None:
    """Log scale for numeric levels spanning more than 50x; the level names as ticks otherwise."""
    if _numeric(levels):
        if min(levels) > 0 and max(levels) / min(levels) > 50:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(levels)), [_fmt(v) for v in levels])
    ax.set_xlabel(label)


def heatmap(rows: list, metric: str, x: str, y: str, path: Path, maximize: bool) -> Path:
    """Mean of `metric` over the ok runs in each (x, y) cell, annotated; failed-only cells are blank."""
    plt = pyplot()
    xs, ys = _levels(r.get(x) for r in rows), _levels(r.get(y) for r in rows)
    grid = np.full((len(ys), len(xs)), np.nan)
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            vals = [_value(r, metric) for r in rows if r.get(x) == xv and r.get(y) == yv]
            vals = [v for v in vals if not np.isnan(v)]
            if vals:
                grid[j, i] = np.mean(vals)
    fig, ax = plt.subplots(figsize=(1.4 * len(xs) + 3.0, 0.9 * len(ys) + 2.0))
    im = ax.imshow(grid, cmap="viridis" if maximize else "viridis_r", aspect="auto", origin="lower")
    for j in range(len(ys)):
        for i in range(len(xs)):
            ax.text(i, j, "failed" if np.isnan(grid[j, i]) else f"{grid[j, i]:.3g}", ha="center", va="center",
                    color="w" if np.isnan(grid[j, i]) else "k", fontsize=9,
                    bbox=dict(facecolor="white", alpha=0.6, lw=0) if np.isfinite(grid[j, i]) else None)
    ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_fmt(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    fig.colorbar(im, ax=ax, label=f"{metric.split('.', 1)[1]}, {'higher' if maximize else 'lower'} is better")
    ax.set_title(f"{metric}: mean over repeats", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def metric_lines(rows: list, metric: str, x: str, by: str | None, path: Path) -> Path:
    """`metric` against axis `x` (mean +- std over the other axes and repeats), one line per value of `by`."""
    plt = pyplot()
    xs = _levels(r.get(x) for r in rows)
    pos = _positions(xs)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for line in (_levels(r.get(by) for r in rows) if by else [None]):
        mean, std = [], []
        for xv in xs:
            vals = [_value(r, metric) for r in rows if r.get(x) == xv and (by is None or r.get(by) == line)]
            vals = np.array([v for v in vals if not np.isnan(v)])
            mean.append(vals.mean() if vals.size else np.nan)
            std.append(vals.std() if vals.size else np.nan)
        ax.errorbar(pos, mean, yerr=std, marker="o", capsize=3, label=None if by is None else f"{by}={_fmt(line)}")
    _format_level_axis(ax, xs, x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if by:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def sweep_report(root, metric: str | None = None, maximize: bool = False, axes: list | None = None,
                 out_dir=None, results: pa.Table | None = None) -> SweepReport:
    """The generic report of any sweep: summary.csv / summary.json (ranked by `metric` if given), a heatmap
    of the metric over two axes, the metric against each axis, and the best configuration as overrides."""
    import json

    from .hashing import plain
    from .store import atomic_write

    root = Path(root)
    out = Path(out_dir) if out_dir else root / "figures"
    out.mkdir(parents=True, exist_ok=True)
    rows, plan_axes = sweep_rows(root, results)
    if metric and not metric.startswith(("metrics.", "history.")):
        metric = f"metrics.{metric}"
    known = {k for r in rows for k in r}
    if metric and metric not in known:
        choices = sorted(k for k in known if k.startswith(("metrics.", "history.")))
        raise ValueError(f"no column {metric!r} in the results; choose one of: {', '.join(choices) or '(none yet)'}")
    varied = [a for a in plan_axes if len(set(map(str, (r.get(a) for r in rows)))) > 1]
    for a in axes or []:
        if a not in plan_axes:
            raise ValueError(f"{a!r} is not a sweep axis of this study; axes: {', '.join(plan_axes) or '(none)'}")
    chosen = list(axes) if axes else varied
    best = None
    if metric:
        rows = rank_rows(rows, metric, maximize)
        best = best_configuration(rows, plan_axes, metric, maximize)
    paths = [write_csv(rows, out / "summary.csv")]
    summary = {"metric": metric, "maximize": maximize, "axes": plan_axes, "best": best, "runs": rows}
    text = json.dumps(plain(summary, nonfinite=lambda v: None), indent=1, default=str, allow_nan=False)
    atomic_write(out / "summary.json", lambda p: Path(p).write_text(text))
    paths.append(out / "summary.json")
    if metric and any(not np.isnan(_value(r, metric)) for r in rows):
        name = metric.split(".", 1)[1].replace(".", "_")
        if len(chosen) >= 2:
            paths.append(heatmap(rows, metric, chosen[0], chosen[1], out / f"heatmap_{name}.png", maximize))
        for x in chosen:
            by = next((a for a in chosen if a != x), None)
            paths.append(metric_lines(rows, metric, x, by, out / f"{name}_vs_{x.replace('.', '_')}.png"))
    return SweepReport(rows, plan_axes, metric, maximize, best, paths)
