"""Run records: one row per finished run (ok or failed), appended by the driver in batches as Parquet shards
(`<seq>-<rows>.parquet`, written under a temporary name and renamed). A run's last record wins. A shard that
cannot be read whole, or holds fewer rows than its name says, is torn: readers skip it (its runs count as
not run) and the next driver sets it aside as `<name>.torn`, so its runs run again."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sweeper.hashing import plain
from sweeper.store.atomic import write_parquet

log = logging.getLogger("sweeper")

SCHEMA = pa.schema([("run_id", pa.string()), ("status", pa.string()), ("record", pa.string())])


class Records:
    """The shards in one folder. Only the driver holding the sweep directory's lock appends."""

    COMPACT_AT = 32  # more shards than this are rewritten as one at the end of a sweep

    def __init__(self, folder: Path):
        self.dir = Path(folder)
        self._cache: tuple = (None, None)
        self._warned: set = set()

    def shards(self) -> list[Path]:
        """The shards, oldest first."""
        return sorted(self.dir.glob("*.parquet")) if self.dir.is_dir() else []

    def __bool__(self) -> bool:
        return bool(self.shards())

    def append(self, records: list[dict]) -> Path:
        """Write `records` (JSON-able dicts with run_id and status) as the newest shard."""
        table = pa.table({"run_id": [r["run_id"] for r in records], "status": [r["status"] for r in records],
                          "record": [json.dumps(plain(r)) for r in records]}, schema=SCHEMA)
        path = self.dir / f"{self._next_seq():08d}-{len(records)}.parquet"
        write_parquet(path, table, durable=True)
        return path

    def _next_seq(self) -> int:
        names = [p.name for p in self.dir.iterdir()] if self.dir.is_dir() else []
        seqs = [int(n.split("-", 1)[0]) for n in names if n[:8].isdigit() and n[8:9] == "-"]
        return max(seqs, default=-1) + 1

    def _read(self, path: Path) -> pa.Table | None:
        """A shard, or None (and a warning, once) if it is torn."""
        try:
            table = pq.read_table(path, schema=SCHEMA)
            torn = None if table.num_rows == int(path.stem.split("-")[1]) else \
                f"{table.num_rows} rows where its name says {path.stem.split('-')[1]}"
        except (OSError, ValueError, IndexError, pa.ArrowException) as e:
            table, torn = None, str(e).splitlines()[0]
        if torn is None:
            return table
        if path not in self._warned:
            self._warned.add(path)
            log.warning("run records %s are torn (%s): their runs count as not run and run again", path, torn)
        return None

    def latest(self) -> pa.Table:
        """The last record of every run (run_id, status, record), in the order they were written."""
        shards = tuple((p, p.stat().st_size) for p in self.shards())
        if shards != self._cache[0]:
            tables = [t for t in map(self._read, (p for p, _ in shards)) if t is not None]
            self._cache = (shards, _last_per_run(pa.concat_tables(tables) if tables else SCHEMA.empty_table()))
        return self._cache[1]

    def statuses(self) -> dict:
        """{run_id: status} of every recorded run."""
        latest = self.latest()
        return dict(zip(latest.column("run_id").to_pylist(), latest.column("status").to_pylist()))

    def get(self, run_id: str) -> dict | None:
        """A run's last record, or None."""
        latest = self.latest()
        hit = latest.filter(pc.equal(latest.column("run_id"), run_id))
        return json.loads(hit.column("record")[0].as_py()) if hit.num_rows else None

    def all(self) -> dict:
        """{run_id: last record} of every recorded run."""
        latest = self.latest()
        return {rid: json.loads(text) for rid, text in
                zip(latest.column("run_id").to_pylist(), latest.column("record").to_pylist())}

    def set_aside_torn(self) -> list[Path]:
        """Rename torn shards to `<name>.torn` (the driver, before it writes): kept to look at, never read."""
        torn = [p for p in self.shards() if self._read(p) is None]
        for p in torn:
            os.replace(p, p.with_name(p.name + ".torn"))
        return torn

    def compact(self) -> None:
        """Rewrite many shards as one (the newest): written before the old ones go, so a crash in between
        leaves duplicates that the last-record rule resolves, never a loss."""
        old = self.shards()
        if len(old) <= self.COMPACT_AT:
            return
        latest = self.latest()
        path = self.dir / f"{self._next_seq():08d}-{latest.num_rows}.parquet"
        write_parquet(path, latest, durable=True)
        for p in old:
            p.unlink()


def _last_per_run(table: pa.Table) -> pa.Table:
    """Each run_id's last row, ordered by position."""
    if table.num_rows == 0:
        return table
    table = table.append_column("_i", pa.array(np.arange(table.num_rows)))
    last = table.group_by("run_id", use_threads=False).aggregate([("_i", "max")]).column("_i_max")
    return table.take(last.take(pc.sort_indices(last))).drop_columns(["_i"])
