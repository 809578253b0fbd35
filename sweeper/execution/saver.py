"""The driver's background writer: finished runs and datasets saved on one thread, records in batches."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sweeper.records import RunOutcome, RunRecord


class Saver:
    """Writes runs and datasets on one background thread, so the driver keeps Ray busy while files are
    written. Run records are appended in batches: when FLUSH_ROWS are waiting, when the oldest has waited
    FLUSH_S (`tick()`, from the wait loop), and at close. A failed write is an error of the sweep, raised by
    close()."""

    FLUSH_S, FLUSH_ROWS = 1.0, 5000

    def __init__(self, store):
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-store")
        self.writes: list = []
        self.waiting: list = []   # records written but not yet appended (touched on the pool's thread only)
        self.oldest = None        # when the oldest waiting record came

    def run(self, record: RunRecord, outcome: RunOutcome) -> None:
        """Save a finished run: its parts (arrays, history, files, log) in its folder, then its record."""
        if self.oldest is None:
            self.oldest = time.monotonic()
        self.writes.append(self.pool.submit(self._write_run, record, outcome))

    def _write_run(self, record: RunRecord, outcome: RunOutcome) -> None:
        self.store.write_run_parts(record, outcome)
        self.waiting.append(record)
        if len(self.waiting) >= self.FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        records, self.waiting = self.waiting, []
        self.store.append_records(records)

    def tick(self) -> None:
        """Append the waiting records if the oldest has waited FLUSH_S."""
        if self.oldest is not None and time.monotonic() - self.oldest >= self.FLUSH_S:
            self.oldest = None
            self.writes.append(self.pool.submit(self._flush))

    def dataset(self, key: str, data: dict, meta: dict) -> None:
        self.writes.append(self.pool.submit(self.store.save_dataset, key, data, meta))

    def close(self) -> None:
        self.writes.append(self.pool.submit(self._flush))
        self.pool.shutdown(wait=True)
        for w in self.writes:
            w.result()
