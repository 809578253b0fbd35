"""The driver's background writer: finished runs and datasets saved on one thread, records in batches."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sweeper.records import RunOutcome, RunRecord


class Saver:
    """Writes runs and datasets on one background thread, so the driver keeps Ray busy while files are
    written. Run records are appended in batches: when FLUSH_ROWS are waiting, when the oldest has waited
    FLUSH_S (`tick()`, from the wait loop), and at close. The first failed write (`failure`) stops the sweep:
    the scheduler starts no more runs, what comes back is kept here and written at close if it can be, and
    close() raises the failure. The saver holds a count of the writes not yet done, not one future per run;
    past BACKLOG of them the scheduler takes no more runs (`backlogged`)."""

    FLUSH_S, FLUSH_ROWS = 1.0, 5000
    BACKLOG = 2000  # writes waiting before the scheduler takes no more runs: results wait here, not pile up

    def __init__(self, store):
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-store")
        self.outstanding = 0      # writes submitted and not yet done
        self._done = threading.Condition()
        self.error: BaseException | None = None  # a write that raised other than OSError: raised by tick/close
        self.waiting: list = []   # records written but not yet appended (touched on the pool's thread only)
        self.unwritten: list = [] # (record, outcome) whose parts could not be written (the pool's thread only)
        self.oldest = None        # when the oldest waiting record came
        self.failure: OSError | None = None

    def _submit(self, fn, *args) -> None:
        with self._done:
            self.outstanding += 1
        self.pool.submit(self._counted, fn, *args)

    def _counted(self, fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 -- kept, and raised on the driver's thread
            self.error = self.error or e
        finally:
            with self._done:
                self.outstanding -= 1
                self._done.notify_all()

    def run(self, record: RunRecord, outcome: RunOutcome) -> None:
        """Save a finished run: its parts (arrays, history, files, log) in its folder, then its record."""
        if self.oldest is None:
            self.oldest = time.monotonic()
        self._submit(self._write_run, record, outcome)

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
        """Append the waiting records if the oldest has waited FLUSH_S; raise a write's unexpected error."""
        if self.oldest is not None and time.monotonic() - self.oldest >= self.FLUSH_S:
            self.oldest = None
            self._submit(self._flush)
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def backlogged(self, wait_s: float = 0.0) -> bool:
        """Whether BACKLOG writes or more still wait (after waiting up to `wait_s` for fewer): the scheduler
        then takes no more runs, so a writer slower than the cluster bounds the driver's memory instead of
        holding every finished run's results."""
        with self._done:
            if wait_s > 0:
                self._done.wait_for(lambda: self.outstanding < self.BACKLOG, timeout=wait_s)
            return self.outstanding >= self.BACKLOG

    def dataset(self, key: str, data: dict, meta: dict) -> None:
        self._submit(self._save_dataset, key, data, meta)

    def _save_dataset(self, key: str, data: dict, meta: dict) -> None:
        try:
            self.store.save_dataset(key, data, meta)
        except OSError as e:  # a dataset not saved is simulated again when needed: only the sweep stops
            self.failure = self.failure or e

    def close(self) -> None:
        """Write what waits (one more try for what could not be written), then raise the first failure if
        anything is still unwritten."""
        self._submit(self._last_try)
        self.pool.shutdown(wait=True)
        self._raise_error()
        if self.failure is not None:  # the sweep stopped at it, whatever the last try could still write
            raise self.failure

    def _last_try(self) -> None:
        retry, self.unwritten, failed = self.unwritten, [], self.failure
        self.failure = None
        for record, outcome in retry:
            self._write_run(record, outcome)
        self._flush()
        self.failure = failed or self.failure
