"""results.parquet's rows: a run record flattened into ids, status, data.*, fit.* and metrics.* columns with
exact types."""
from __future__ import annotations

import pyarrow as pa

from sweeper.columns import table_from_columns


def record_row(run, result: dict) -> dict:
    """The record of a finished run (ok or failed): what it was given and what came back."""
    return {"run_id": run.run_id, "data_key": run.data_key, "status": result["status"],
            "error": result.get("error"), "duration_s": result.get("duration_s"),
            "attempt": result.get("attempt", 1), "node": result.get("node"), "device": result.get("device"),
            "data_sha256": result.get("data_sha256"),
            "repeat_data": run.repeat_data, "repeat_fit": run.repeat_fit, "seed_data": run.seed_data,
            "seed_fit": run.seed_fit, "session": run.session, "data": run.data, "fit": run.fit,
            "metrics": result.get("metrics") or {}}


def results_table(records: dict, run_ids) -> pa.Table:
    """One row per run of `run_ids` that has a record (`records`: run id -> record), in that order."""
    return _to_table([_flat_row(records[rid]) for rid in run_ids if rid in records])


ROW_KEYS = ("run_id", "data_key", "status", "error", "duration_s", "attempt", "node", "device", "data_sha256",
            "repeat_data", "repeat_fit", "seed_data", "seed_fit")


def _flatten(prefix: str, d: dict) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(key, v))
        else:
            out[key] = v
    return out


def _flat_row(r: dict) -> dict:
    """A record as one results row: ids and status, then data.*, fit.* and metrics.* columns."""
    flat = {k: r.get(k) for k in ROW_KEYS}
    if r.get("session") is not None:
        flat["session"] = r["session"]
    flat.update(_flatten("data", r.get("data") or {}))
    flat.update(_flatten("fit", r.get("fit") or {}))
    flat.update({f"metrics.{k}": v for k, v in (r.get("metrics") or {}).items()})
    return flat


def _to_table(rows: list) -> pa.Table:
    """Columns with exact types (sweeper.columns.encode); metrics as float64."""
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
