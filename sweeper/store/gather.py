"""results.parquet's rows: each run's stored record as one row (`records.flat_columns`: ids, status, data.*,
fit.* and metrics.* columns) with exact types."""
from __future__ import annotations

import pyarrow as pa

from sweeper.columns import table_from_columns
from sweeper.records import flat_columns


def results_table(records: dict, run_ids) -> pa.Table:
    """One row per run of `run_ids` that has a record (`records`: run id -> the record as stored), in that
    order; columns with exact types (sweeper.columns.encode), metrics and durations as float64."""
    rows = [flat_columns(records[rid]) for rid in run_ids if rid in records]
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
