"""Generic figures for any study: each metric against each swept axis, mean and spread over repeats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def axis_columns(table: pa.Table) -> list:
    """Parameter columns that take more than one value in the table (the swept axes)."""
    cols = [c for c in table.column_names if c.startswith(("data.", "fit.")) or c == "session"]
    return [c for c in cols if len(set(map(str, table.column(c).to_pylist()))) > 1]


def metric_columns(table: pa.Table) -> list:
    return [c for c in table.column_names if c.startswith("metrics.")]


def metrics_by_axis(table: pa.Table, out_dir: Path) -> list:
    """One PNG per swept axis: every metric of the ok runs vs that axis (mean +- std over the rest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    if table.num_rows == 0:
        return []
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    metrics, axes = metric_columns(ok), axis_columns(ok)
    paths = []
    for axis in axes:
        xs = ok.column(axis).to_pylist()
        levels = sorted(set(xs), key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else str(v)))
        numeric = all(isinstance(v, (int, float)) for v in levels)
        fig, axs = plt.subplots(1, max(len(metrics), 1), figsize=(4 * max(len(metrics), 1), 3.2), squeeze=False)
        for ax, m in zip(axs[0], metrics):
            ys = np.array(ok.column(m).to_pylist(), dtype=float)
            mean = [np.nanmean(ys[[x == lv for x in xs]]) for lv in levels]
            std = [np.nanstd(ys[[x == lv for x in xs]]) for lv in levels]
            pos = levels if numeric else list(range(len(levels)))
            ax.errorbar(pos, mean, yerr=std, marker="o", capsize=3)
            if numeric and min(levels) > 0 and max(levels) / min(levels) > 50:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(pos, [str(v) for v in levels])
            ax.set_xlabel(axis)
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
