"""The driver's background writer: finished runs and datasets saved on one thread, records in batches."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sweeper.records import RunOutcome, RunRecord


class Saver:
    """Writes runs and datasets on one background thread, so the driver keeps Ray busy while files are
    written. Run records are appended in batches: when FLUSH_ROWS are waiting, when the oldest has waited
    FLUSH_S (`tick()`, from the wait loop), and at close. The first failed write (`failure`) stops the sweep:
    the scheduler starts no more runs, what comes back is kept here and written at close if it can be, and
    close() raises the failure."""

    FLUSH_S, FLUSH_ROWS = 1.0, 5000

    def __init__(self, store):
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-store")
        self.writes: list = []
        self.waiting: list = []   # records written but not yet appended (touched on the pool's thread only)
        self.unwritten: list = [] # (record, outcome) whose parts could not be written (the pool's thread only)
        self.oldest = None        # when the oldest waiting record came
        self.failure: OSError | None = None

    def run(self, record: RunRecord, outcome: RunOutcome) -> None:
        """Save a finished run: its parts (arrays, history, files, log) in its folder, then its record."""
        if self.oldest is None:
            self.oldest = time.monotonic()
        self.writes.append(self.pool.submit(self._write_run, record, outcome))

    def _write_run(self, record: RunRecord, outcome: RunOutcome) -> None:
        if self.failure is not None:
            self.unwritten.append((record, outcome))
            return
        try:
            self.store.write_run_parts(record, outcome)
        except OSError as e:
            self.failure = e
            self.unwritten.append((record, outcome))
            return
        self.waiting.append(record)
        if len(self.waiting) >= self.FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        try:
            self.store.append_records(self.waiting)
        except OSError as e:
            self.failure = e  # the records stay waiting
            return
        self.waiting = []

    def tick(self) -> None:
        """Append the waiting records if the oldest has waited FLUSH_S; forget the writes that are done (an
        error in one is raised here), so the saver holds what is in flight, not every run of the sweep."""
        if self.oldest is not None and time.monotonic() - self.oldest >= self.FLUSH_S:
            self.oldest = None
            self.writes.append(self.pool.submit(self._flush))
        still, done = [], []
        for w in self.writes:
            (done if w.done() else still).append(w)
        self.writes = still
        for w in done:
            w.result()

    def dataset(self, key: str, data: dict, meta: dict) -> None:
        self.writes.append(self.pool.submit(self._save_dataset, key, data, meta))

    def _save_dataset(self, key: str, data: dict, meta: dict) -> None:
        try:
            self.store.save_dataset(key, data, meta)
        except OSError as e:  # a dataset not saved is simulated again when needed: only the sweep stops
            self.failure = self.failure or e

    def close(self) -> None:
        """Write what waits (one more try for what could not be written), then raise the first failure if
        anything is still unwritten."""
        self.writes.append(self.pool.submit(self._last_try))
        self.pool.shutdown(wait=True)
        for w in self.writes:
            w.result()
        if self.failure is not None:  # the sweep stopped at it, whatever the last try could still write
            raise self.failure

    def _last_try(self) -> None:
        retry, self.unwritten, failed = self.unwritten, [], self.failure
        self.failure = None
        for record, outcome in retry:
            self._write_run(record, outcome)
        self._flush()
        self.failure = failed or self.failure
