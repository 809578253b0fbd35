"""Exact parameter values: typed columns, override text that reads back to the same value, duplicate checks.

An int stays an int and "0.05" stays a string from the spec to plan.parquet, results.parquet and every
printed `key=value`. A column whose values share one scalar type is stored with that type; any other
(ints with floats, strings with numbers, lists, None with values...) is stored as the override text of
each value, and the field is marked so `decode` reads the typed values back.
"""
from __future__ import annotations

import json
import shlex

import pyarrow as pa

from sweeper.yaml_dialect import dump_flow, parse_value

ENCODING_KEY = b"sweeper.encoding"
SCALARS = (bool, int, float, str)


def override_text(value) -> str:
    """The YAML text of `value` that `parse_value` reads back to an equal value of the same type."""
    return dump_flow(value)


def override(key: str, value) -> str:
    """`key=value` for the command line, exact (see override_text)."""
    return f"{key}={override_text(value)}"


def run_command(spec_path, overrides) -> str:
    """The shell command that runs a spec with these overrides (each argument quoted)."""
    return " ".join(["sweep", "run", *map(shlex.quote, [str(spec_path), *overrides])])


def _kind(values) -> type | None:
    """The one scalar type all non-null values share, else None."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) == 1 and next(iter(kinds)) in SCALARS:
        return next(iter(kinds))
    return None if kinds else str


def encode(name: str, values: list) -> tuple[pa.Field, pa.Array]:
    """A typed Arrow column for a parameter's values, or override text marked for decoding."""
    if _kind(values) is not None:
        arr = pa.array(values)
        return pa.field(name, arr.type), arr
    arr = pa.array([override_text(v) for v in values], pa.string())
    return pa.field(name, pa.string(), metadata={ENCODING_KEY: b"yaml"}), arr


def table_from_columns(columns: dict) -> pa.Table:
    """A table from {name: python values} with every column encoded by `encode`."""
    fields, arrays = zip(*(encode(n, v) for n, v in columns.items())) if columns else ((), ())
    return pa.Table.from_arrays(list(arrays), schema=pa.schema(list(fields)))


def is_encoded(table: pa.Table, name: str) -> bool:
    meta = table.schema.field(name).metadata or {}
    return meta.get(ENCODING_KEY) == b"yaml"


def decode(table: pa.Table, name: str) -> list:
    """The exact typed values of a column written by `encode`."""
    values = table.column(name).to_pylist()
    return [parse_value(v) for v in values] if is_encoded(table, name) else values


def same_value(a, b) -> bool:
    """Equal under == (1 == 1.0 == True): two such values on one axis would be indistinguishable configurations."""
    try:
        return bool(a == b)
    except Exception:
        return False


def first_duplicate(values: list) -> tuple | None:
    """(i, j) of the first pair of values equal under ==, else None. Values equal under == hash alike
    (1, 1.0, True), so hashable values are compared within their hash bucket only."""
    buckets: dict = {}
    for j, b in enumerate(values):
        try:
            candidates = buckets.setdefault(hash(b), [])
        except TypeError:  # unhashable (a list): compare with every earlier value
            candidates = range(j)
        for i in candidates:
            if same_value(values[i], b):
                return i, j
        if isinstance(candidates, list):
            candidates.append(j)
    return None


def key_of(value) -> str:
    """A hashable, type-exact key of a value (1, 1.0 and True differ)."""
    return json.dumps([type(value).__name__, value], sort_keys=True, default=repr)


def to_rows(table: pa.Table) -> list[dict]:
    """The table's rows as dicts of exact typed values (encoded columns decoded)."""
    columns = {name: decode(table, name) for name in table.column_names}
    return [dict(zip(columns, vals)) for vals in zip(*columns.values())] if columns else []
