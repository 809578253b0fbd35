"""The answers of `configs()` and `compare()`: a sequence of typed rows (ConfigRow, Difference) that also has a
table form, for CSV and pandas."""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import pyarrow as pa

from sweeper.columns import table_from_columns


class Rows(Sequence):
    """Typed rows, in order; `.table` (Arrow, exact types), `.to_pylist()` and `.to_pandas()` are their
    table form, one column per field (`row.columns()`)."""

    def __init__(self, rows: list, **column_options):
        self.rows = list(rows)
        self._options = column_options

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"Rows({len(self.rows)} {type(self.rows[0]).__name__ if self.rows else 'rows'})"

    def to_pylist(self) -> list[dict]:
        """Each row as {column: exact value}."""
        return [self.row_columns(r) for r in self.rows]

    def row_columns(self, row) -> dict:
        """One row (of these) as the table has it."""
        return row.columns(**self._options)

    @cached_property
    def table(self) -> pa.Table:
        rows = self.to_pylist()
        return table_from_columns({k: [r[k] for r in rows] for k in (rows[0] if rows else {})})

    def to_pandas(self):
        return self.table.to_pandas()
