"""The scheduler's bookkeeping, with no Ray state of its own (unit tests drive it without Ray): the datasets
alive, the runs to submit and in flight, their time limits, and the batch size."""
from __future__ import annotations

import collections
import time

import numpy as np


class DatasetPool:
    """The datasets alive: one ref per data key while runs still need submitting (Ray frees it after the
    last run holding it), their metadata once known, and a limit on how many are alive at once.
    `make(run)` starts a dataset: (data ref, meta ref, None) to simulate, or (data ref, None, meta) if saved."""

    def __init__(self, runs, limit: int, make):
        keys = [r.data_key for r in runs] if isinstance(runs, list) else runs.data_key.to_pylist()  # or a Plan
        self.remaining = collections.Counter(keys)  # data key -> runs not yet taken; forgotten once done
        self.in_flight = collections.Counter()
        self.refs: dict = {}      # data key -> data ref, while runs still need submitting
        self.meta: dict = {}      # data key -> metadata once known
        self.waiting: dict = {}   # meta ref -> (data key, data ref), until the metadata is in
        self.live: set = set()    # keys with a ref kept or runs in flight: what the limit counts
        self.limit, self.sized, self._make = limit, False, make

    def can_open(self, key) -> bool:
        return key in self.live or len(self.live) < self.limit

    def _update(self, key) -> None:
        """Keep `live` (and the in-flight counts, which only live keys hold) up to date after a change."""
        if key in self.refs or self.in_flight[key] > 0:
            self.live.add(key)
        else:
            self.live.discard(key)
            del self.in_flight[key]

    def take(self, run):
        """The dataset ref a new run of `run.data_key` uses (started on first use)."""
        key = run.data_key
        if key not in self.refs:
            data_ref, meta_ref, meta = self._make(run)
            self.refs[key] = data_ref
            if meta is None:
                self.waiting[meta_ref] = (key, data_ref)
            else:
                self.meta[key] = meta
        ref = self.refs[key]
        self.remaining[key] -= 1
        self.in_flight[key] += 1
        if self.remaining[key] == 0:
            del self.refs[key]  # in-flight runs keep it alive
        self._update(key)
        return ref

    def alone(self, run) -> bool:
        """Whether this run is its dataset's only user (nothing simulated or in flight for it yet)."""
        key = run.data_key
        return self.remaining[key] == 1 and key not in self.refs and not self.in_flight[key]

    def skip(self, run) -> None:
        """The run's dataset is made inside its own task (simulate and fit fused): nothing to keep alive."""
        self.remaining[run.data_key] -= 1

    def retake(self, run) -> None:
        self.in_flight[run.data_key] += 1
        self._update(run.data_key)

    def give_back(self, run) -> None:
        self.in_flight[run.data_key] -= 1
        self._update(run.data_key)

    def forget(self, key) -> None:
        """Drop what is kept of a dataset none of whose runs is left to take or in flight (its metadata, its
        count), so the pool holds the datasets in use, not every dataset of the sweep."""
        if self.remaining[key] <= 0 and key not in self.live:
            self.meta.pop(key, None)
            self.remaining.pop(key, None)

    def known(self, meta_ref, meta, size_limit) -> tuple:
        """Record a dataset's metadata; the first one sets the limit from its size. (data key, data ref)."""
        key, data_ref = self.waiting.pop(meta_ref)
        if meta is not None:
            self.meta[key] = meta
            if not self.sized:
                self.limit, self.sized = size_limit(meta["nbytes"]), True
        return key, data_ref


class RunQueue:
    """Runs still to submit (a dataset's runs together), runs lost to a dead worker (first, while their
    attempts last), and the runs in flight by result ref. The runs to submit come from the plan a chunk at a
    time as the queue drains, so the driver holds O(chunk + in flight) Run objects, not one per planned run."""

    CHUNK = 1024

    def __init__(self, runs, retries: int):
        """`runs`: the runs to do, a Plan (made into Runs as needed) or a list of runs."""
        self._make, self._rows = _in_dataset_order(runs)
        self._next = 0
        self.new: collections.deque = collections.deque()   # made, not yet submitted (the head of the queue)
        self.retry: collections.deque = collections.deque()
        self.pending: dict = {}   # result ref -> [(run, data ref, attempt), ...]: the runs of one task
        self.retries = retries

    def __bool__(self) -> bool:
        return bool(self.unsubmitted() or self.retry or self.pending)

    def unsubmitted(self) -> int:
        """How many new runs wait to be submitted."""
        return len(self.new) + len(self._rows) - self._next

    def _fill(self, n: int) -> None:
        """Make runs from the plan until `n` wait at the head (or the plan is used up)."""
        while len(self.new) < n and self._next < len(self._rows):
            chunk = self._rows[self._next:self._next + max(self.CHUNK, n - len(self.new))]
            self._next += len(chunk)
            self.new.extend(self._make(chunk))

    def head(self):
        """The next new run, or None."""
        self._fill(1)
        return self.new[0] if self.new else None

    def lost(self, run, data_ref, attempt: int) -> bool:
        """Queue a lost run again if it has attempts left; False if not."""
        if attempt > self.retries:
            return False
        self.retry.append((run, data_ref, attempt + 1))
        return True

    def next_alone(self, size: int, alone) -> list:
        """Up to `size` new runs from the head of the queue whose datasets each have no other user."""
        self._fill(size)
        batch = []
        while len(batch) < size and self.new and alone(self.new[0]):
            batch.append(self.new.popleft())
        return batch

    def take_matching(self, size: int, window: int, accept) -> list:
        """Up to `size` new runs from the first `window` for which accept(run) holds (accept may take their
        datasets), in queue order; the rest keep their places."""
        self._fill(window)
        picked, kept = [], []
        while self.new and len(picked) < size and len(picked) + len(kept) < window:
            run = self.new.popleft()
            (picked if accept(run) else kept).append(run)
        self.new.extendleft(reversed(kept))
        return picked

    def next_batch(self, size: int) -> list:
        """Up to `size` new runs of the dataset at the head of the queue (runs wait in dataset order)."""
        self._fill(size)
        batch = [self.new.popleft()]
        while len(batch) < size and self.new and self.new[0].data_key == batch[0].data_key:
            batch.append(self.new.popleft())
        return batch


def _in_dataset_order(runs) -> tuple:
    """(make(rows) -> runs, the rows in queue order): each dataset's runs together, datasets in order of first
    use. A Plan's runs are made from its columns when asked; a list's are its own."""
    if hasattr(runs, "runs_at"):
        first_use = runs.data_key.dictionary_encode().indices.to_numpy(zero_copy_only=False)  # first-use order
        return runs.runs_at, np.argsort(first_use, kind="stable")
    order = {k: i for i, k in enumerate(dict.fromkeys(r.data_key for r in runs))}
    rows = sorted(range(len(runs)), key=lambda i: order[runs[i].data_key])
    return (lambda chunk: [runs[i] for i in chunk]), rows


class Deadlines:
    """The time limit of each task in flight (spec.timeout_s for each run it holds). A task's clock starts when
    the datasets it waits for are known, so simulating them does not count; the scheduler keeps no more tasks
    in flight than the cluster runs at once, so neither does a queue."""

    def __init__(self, timeout_s: float | None):
        self.timeout_s = timeout_s
        self.waiting: dict = {}   # task ref -> (data keys still being simulated, seconds allowed)
        self.due: dict = {}       # task ref -> (monotonic deadline, seconds allowed)
        self.expired: dict = {}   # task ref -> seconds allowed, once it ran past them

    def __bool__(self) -> bool:
        return self.timeout_s is not None

    def start(self, ref, runs: int, unknown_keys: set) -> None:
        """A task of `runs` runs was submitted; its clock starts now or when `unknown_keys` are known."""
        if self.timeout_s is None:
            return
        allowed = self.timeout_s * runs
        if unknown_keys:
            self.waiting[ref] = (set(unknown_keys), allowed)
        else:
            self.due[ref] = (time.monotonic() + allowed, allowed)

    def data_known(self, key) -> None:
        """A dataset's simulate came back: the clocks of the tasks that waited only for it start."""
        for ref in [r for r, (keys, _) in self.waiting.items() if key in keys]:
            keys, allowed = self.waiting[ref]
            keys.discard(key)
            if not keys:
                del self.waiting[ref]
                self.due[ref] = (time.monotonic() + allowed, allowed)

    def overdue(self) -> list:
        """The tasks past their limit (each given once), now counted as expired."""
        now = time.monotonic()
        late = [ref for ref, (deadline, _) in self.due.items() if now >= deadline]
        for ref in late:
            self.expired[ref] = self.due.pop(ref)[1]
        return late

    def finished(self, ref) -> float | None:
        """Forget a task that came back; the seconds it was allowed if it expired, else None."""
        self.waiting.pop(ref, None)
        self.due.pop(ref, None)
        return self.expired.pop(ref, None)


FUSED = "fused"  # the data ref of runs whose dataset is simulated inside their own task


class Batcher:
    """How many runs of one dataset go to one task: about TARGET_S of work, from a moving average of the
    runs' durations so far. One run per task until WARMUP durations are in, and whenever runs are slower
    than the target, so an expensive run never waits behind others."""

    TARGET_S, MAX, WARMUP, ALPHA = 0.1, 256, 4, 0.05

    def __init__(self, enabled: bool):
        self.enabled, self.seen, self.mean = enabled, 0, 0.0

    def record(self, duration_s) -> None:
        if duration_s is None:
            return
        self.mean = duration_s if not self.seen else (1 - self.ALPHA) * self.mean + self.ALPHA * duration_s
        self.seen += 1

    @property
    def size(self) -> int:
        if not self.enabled or self.seen < self.WARMUP:
            return 1
        return max(1, min(self.MAX, int(self.TARGET_S / max(self.mean, 1e-6))))
