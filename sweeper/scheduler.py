"""The scheduler: simulate each dataset once, submit its runs, keep a bounded number of datasets and runs
alive, retry runs lost to a dead worker, save what comes back. DatasetPool, RunQueue and Saver hold no
Ray state of their own, so unit tests drive them without Ray."""
from __future__ import annotations

import collections
import logging
from concurrent.futures import ThreadPoolExecutor

import ray
from ray.exceptions import RayTaskError
from tqdm.auto import tqdm

from .executors import make_executor
from .worker import StudyRef, simulate_dataset

log = logging.getLogger("sweeper")


class DatasetPool:
    """The datasets alive: one ref per data key while runs still need submitting (Ray frees it after the
    last run holding it), their metadata once known, and a limit on how many are alive at once.
    `make(run)` starts a dataset: (data ref, meta ref, None) to simulate, or (data ref, None, meta) if saved."""

    def __init__(self, runs, limit: int, make):
        self.remaining = collections.Counter(r.data_key for r in runs)
        self.in_flight = collections.Counter()
        self.refs: dict = {}      # data key -> data ref, while runs still need submitting
        self.meta: dict = {}      # data key -> metadata once known
        self.waiting: dict = {}   # meta ref -> (data key, data ref), until the metadata is in
        self.limit, self.sized, self._make = limit, False, make

    def can_open(self, key) -> bool:
        live = {k for k, n in self.in_flight.items() if n} | set(self.refs)
        return key in live or len(live) < self.limit

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
        return ref

    def retake(self, run) -> None:
        self.in_flight[run.data_key] += 1

    def give_back(self, run) -> None:
        self.in_flight[run.data_key] -= 1

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
    attempts last), and the runs in flight by result ref."""

    def __init__(self, runs, retries: int):
        order = {k: i for i, k in enumerate(dict.fromkeys(r.data_key for r in runs))}
        self.new = collections.deque(sorted(runs, key=lambda r: order[r.data_key]))
        self.retry: collections.deque = collections.deque()
        self.pending: dict = {}   # result ref -> [(run, data ref, attempt), ...]: the runs of one task
        self.retries = retries

    def __bool__(self) -> bool:
        return bool(self.new or self.retry or self.pending)

    def lost(self, run, data_ref, attempt: int) -> bool:
        """Queue a lost run again if it has attempts left; False if not."""
        if attempt > self.retries:
            return False
        self.retry.append((run, data_ref, attempt + 1))
        return True

    def next_batch(self, size: int) -> list:
        """Up to `size` new runs of the dataset at the head of the queue (runs wait in dataset order)."""
        batch = [self.new.popleft()]
        while len(batch) < size and self.new and self.new[0].data_key == batch[0].data_key:
            batch.append(self.new.popleft())
        return batch


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


class Saver:
    """Writes runs and datasets on one background thread, so the driver keeps Ray busy while files are
    written; a failed write is an error of the sweep, raised by close()."""

    def __init__(self, sd):
        self.sd = sd
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-store")
        self.writes: list = []

    def run(self, run, result: dict) -> None:
        self.writes.append(self.pool.submit(self.sd.write_run, run, result))

    def dataset(self, key: str, data: dict, meta: dict) -> None:
        self.writes.append(self.pool.submit(self.sd.save_dataset, key, data, meta))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for w in self.writes:
            w.result()


def default_limits() -> tuple[int, int]:
    """(runs in flight, datasets alive until their size is known): many cheap runs may queue on one shared
    dataset, but few datasets of unknown size are held in the object store at once."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(64, 16 * cpus), max(4, 2 * cpus)


def datasets_alive(nbytes: int) -> int:
    """How many datasets of `nbytes` may live at once: a quarter of the object store, between 2 and 16 x CPUs
    (small datasets -- cheap fits on their own data -- must not throttle the sweep; large ones must not
    fill the store)."""
    res = ray.cluster_resources()
    cpus, store = int(res.get("CPU", 1)), res.get("object_store_memory", 2 ** 30)
    return int(min(max(0.25 * store // max(nbytes, 1), 2), 16 * max(cpus, 1)))


class Scheduler:
    """One sweep's runs through Ray: the wait loop over the pieces above."""

    def __init__(self, spec, sd, todo: list, max_in_flight, progress: bool):
        study_ref = StudyRef.of(spec.study, spec.code)
        if study_ref.obj is not None:
            study_ref = ray.put(study_ref)  # a script study (functions by value) is pickled once, not per task
        self.spec, self.sd, self.study_ref = spec, sd, study_ref
        self.executor = make_executor(spec, study_ref, len(todo))
        self.simulate = ray.remote(simulate_dataset).options(num_returns=2, max_retries=max(spec.retries, 1),
                                                             **self._simulate_options())
        default_runs, max_datasets = default_limits()
        self.limit = self.executor.capacity(max_in_flight or default_runs)
        self.saved = {p.stem for p in sd.datasets.glob("*.npz")} if spec.save_datasets and sd.datasets.is_dir() \
            else set()
        self.datasets = DatasetPool(todo, max_datasets, self._make_dataset)
        self.queue = RunQueue(todo, spec.retries)
        self.batcher = Batcher(self.executor.batches)
        self.saver = Saver(sd)
        self.counts = collections.Counter()
        self.bar = tqdm(total=len(todo), desc=spec.name, unit="run", disable=not progress, smoothing=0.05)

    def _simulate_options(self) -> dict:
        """resources.simulate, by default the runs' CPUs and no GPU; with num_gpus the study's simulate runs
        where Ray assigned it a GPU (`sweeper.worker.assigned_gpus()`)."""
        opts = {"num_cpus": self.spec.resources.get("num_cpus", 1) or 1, **self.spec.simulate_resources}
        if ray.cluster_resources().get("CPU", 0) - self.executor.reserved_cpus < opts["num_cpus"]:
            log.info("the actor pool holds the CPUs; datasets are simulated beside it (num_cpus=0)")
            opts["num_cpus"] = 0  # rather than wait for ever behind the pool
        return {k: v for k, v in opts.items() if v or k == "num_cpus"}

    def _make_dataset(self, run):
        saved = self.sd.load_dataset(run.data_key) if run.data_key in self.saved else None
        if saved is not None:
            return ray.put(saved[0]), None, saved[1]
        data_ref, meta_ref = self.simulate.remote(self.study_ref, run.data, run.seed_data)
        return data_ref, meta_ref, None

    def run(self) -> None:
        try:
            while self.queue:
                self._submit()
                waiting = list(self.datasets.waiting) + list(self.queue.pending)
                if not waiting:  # every actor is restarting: wait for the pool
                    self.executor.wait_ready(timeout=1.0)
                    continue
                for ref in self._ready(waiting):
                    if ref in self.datasets.waiting:
                        self._on_meta(ref)
                    else:
                        self._on_result(ref)
        except KeyboardInterrupt:
            # no ray.cancel(force=True) of the runs in flight: it raced their completion inside Ray's core worker
            # and crashed the driver (exit 1) now and then; the driver's exit ends them anyway
            self.bar.close()
            log.warning("stopped: %d runs saved, %d not run; run the same command again to resume",
                        sum(self.counts.values()), len(self.queue.new) + len(self.queue.pending))
            raise
        finally:
            self.saver.close()
            self.bar.close()
            self.executor.shutdown()

    def _submit(self) -> None:
        q, executor = self.queue, self.executor
        while q.retry and len(q.pending) < self.limit and executor.ready():
            run, ref, attempt = q.retry.popleft()
            self.datasets.retake(run)
            q.pending[executor.submit([(run, attempt)], ref)] = [(run, ref, attempt)]
        while q.new and len(q.pending) < self.limit and executor.ready():
            if not self.datasets.can_open(q.new[0].data_key):
                break
            batch = q.next_batch(self.batcher.size)
            ref = [self.datasets.take(run) for run in batch][0]
            q.pending[executor.submit([(run, 1) for run in batch], ref)] = [(run, ref, 1) for run in batch]

    @staticmethod
    def _ready(waiting: list) -> list:
        """What has come back: at least one within a second, then everything else already in."""
        ready, rest = ray.wait(waiting, num_returns=1, timeout=1.0)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return ready

    def _on_meta(self, ref) -> None:
        try:
            meta = ray.get(ref)
        except ray.exceptions.RayError:
            meta = None  # the runs that need it will carry the simulate error
        key, data_ref = self.datasets.known(ref, meta, datasets_alive)
        if meta is not None and self.spec.save_datasets:
            self.saver.dataset(key, ray.get(data_ref), meta)

    def _on_result(self, ref) -> None:
        entries = self.queue.pending.pop(ref)
        for run, _, _ in entries:
            self.datasets.give_back(run)
        try:
            results = ray.get(ref)
            self.executor.done(ref)
        except RayTaskError as e:
            self.executor.done(ref)  # the simulate task these runs depend on raised
            results = [{"status": "failed", "error": str(e), "attempt": a, "metrics": {}} for _, _, a in entries]
        except ray.exceptions.RayError as e:  # a worker or node died, or an object was lost
            self.executor.done(ref, lost=True)
            results = [self._lost(run, data_ref, attempt, e) for run, data_ref, attempt in entries]
        for (run, _, _), result in zip(entries, results):
            if result is not None:
                self.batcher.record(result.get("duration_s"))
                self._finish(run, result)

    def _lost(self, run, data_ref, attempt: int, e) -> dict | None:
        """A run whose task was lost: queued again (None) while it has attempts left, else a failed result."""
        if self.queue.lost(run, data_ref, attempt):
            log.warning("run %s lost (%s); retrying, attempt %d", run.run_id, type(e).__name__, attempt + 1)
            return None
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "attempt": attempt, "metrics": {}}

    def _finish(self, run, result: dict) -> None:
        if run.data_key in self.datasets.meta:
            result["data_sha256"] = self.datasets.meta[run.data_key]["sha256"]
        self.saver.run(run, result)
        self.counts[result["status"]] += 1
        self.bar.update(1)
        self.bar.set_postfix(ok=self.counts["ok"], failed=self.counts["failed"], refresh=False)
