"""results.parquet's rows: each run's record as one row (`RunRecord.columns`: ids, status, data.*, fit.* and
metrics.* columns) with exact types."""
from __future__ import annotations

import pyarrow as pa

from sweeper.columns import table_from_columns


def results_table(records: dict, run_ids) -> pa.Table:
    """One row per run of `run_ids` that has a record (`records`: run id -> RunRecord), in that order; columns
    with exact types (sweeper.columns.encode), metrics and durations as float64."""
    rows = [records[rid].columns for rid in run_ids if rid in records]
    names = list(dict.fromkeys(k for r in rows for k in r))
    if not names:
        return pa.table({"run_id": pa.array([], pa.string()), "status": pa.array([], pa.string())})
    cols = {}
    for name in names:
        values = [r.get(name) for r in rows]
        if name.startswith("metrics.") or name == "duration_s":
            values = [float(v) if isinstance(v, (int, float)) or v in ("nan", "inf", "-inf") else None
                      for v in values]
        cols[name] = values
    return table_from_columns(cols)
