"""The scheduler: simulate each dataset once, submit its runs (cheap ones several to a task, or simulated and
fitted together when their dataset has no other user), keep a bounded number of datasets and runs alive,
retry runs lost to a dead worker, save what comes back. Its bookkeeping is in queues.py."""
from __future__ import annotations

import collections
import logging
import re

import ray
from ray.exceptions import RayTaskError
from tqdm.auto import tqdm

from sweeper.execution import crashes
from sweeper.execution.executors import Executor, TaskExecutor
from sweeper.execution.queues import FUSED, Batcher, DatasetPool, Deadlines, RunQueue
from sweeper.execution.saver import Saver
from sweeper.execution.worker import StudyRef, simulate_dataset
from sweeper.records import RunOutcome, RunRecord
from sweeper.spec.models import HowToRun

log = logging.getLogger("sweeper")


def packing_key(pack: int, study):
    """run -> the study's pack key when the spec packs (`pack` > 1) and the study can (fit_packed and
    pack_key); runs whose key is None, and every run otherwise, go alone."""
    if pack <= 1 or study.fit_packed is None or study.pack_key is None:
        return lambda run: None
    return lambda run: study.pack_key(run.data, run.fit)


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

    def __init__(self, study, how: HowToRun, store, todo, progress: str | None, options: dict):
        """`how`: how the spec runs (max_in_flight as the driver settled it); `options`: what every task and
        actor gets (the study's runtime_env, from the driver); `progress`: the bar's label, None for none;
        `todo`: the runs to do, a Plan (its Runs made as they are submitted) or a list."""
        study_ref = StudyRef.of(study)
        if study_ref.obj is not None:
            study_ref = ray.put(study_ref)  # a script study (functions by value) is pickled once, not per task
        self.how, self.store, self.study_ref = how, store, study_ref
        self.executor = make_executor(how, study_ref, len(todo), options)
        self.simulate = ray.remote(simulate_dataset).options(num_returns=2, max_retries=max(how.retries, 1),
                                                             **options, **self._simulate_options())
        default_runs, max_datasets = default_limits()
        self.limit = self.executor.capacity(how.max_in_flight or default_runs)
        self.deadlines = Deadlines(how.timeout_s)
        if self.deadlines:  # a run's clock must not tick while it queues: no more in flight than run at once
            self.limit = min(self.limit, runs_at_once(how.resources.asked()))
        self.saved = {p.stem for p in store.paths.datasets.glob("*.npz")} \
            if how.save_datasets and store.paths.datasets.is_dir() else set()
        self.datasets = DatasetPool(todo, max_datasets, self._make_dataset)
        self.queue = RunQueue(todo, how.retries)
        self.batcher = Batcher(self.executor.batches and not self.deadlines)  # a time limit is a run's own
        self.saver = Saver(store)
        self.counts = collections.Counter()
        self.pack_key = packing_key(how.pack, study)
        self.bar = tqdm(total=len(todo), desc=progress, unit="run", disable=progress is None, smoothing=0.05)

    def _simulate_options(self) -> dict:
        """resources.simulate, by default the runs' CPUs and no GPU; with num_gpus the study's simulate runs
        where Ray assigned it a GPU (`sweeper.worker.assigned_gpus()`)."""
        opts = {"num_cpus": self.how.resources.num_cpus or 1, **self.how.simulate.asked()}
        if ray.cluster_resources().get("CPU", 0) - self.executor.reserved_cpus < opts["num_cpus"]:
            log.info("the actor pool holds the CPUs; datasets are simulated beside it (num_cpus=0)")
            opts["num_cpus"] = 0  # rather than wait for ever behind the pool
        return {k: v for k, v in opts.items() if v or k == "num_cpus"}

    def _make_dataset(self, run):
        saved = self.store.load_dataset(run.data_key) if run.data_key in self.saved else None
        if saved is not None:
            return ray.put(saved[0]), None, saved[1]
        data_ref, meta_ref = self.simulate.remote(self.study_ref, run.data, run.seed_data)
        return data_ref, meta_ref, None

    def run(self) -> None:
        with crashes.worker_deaths_in_the_runs():
            self._run()

    def _run(self) -> None:
        try:
            while self.queue.pending if self.saver.failure else self.queue:
                # a failed write starts no more runs (those in flight come back), nor does a writer behind
                if not self.saver.failure and not self.saver.backlogged(wait_s=0.0 if self.queue.pending else 0.5):
                    self._submit()
                self._cancel_overdue()
                self.saver.tick()
                waiting = list(self.datasets.waiting) + list(self.queue.pending)
                if not waiting:  # every actor is restarting: wait for the pool
                    self.executor.wait_ready(timeout=1.0)
                    continue
                # metadata first: a fit back in the same wait as its dataset's metadata needs its data_sha256
                for ref in sorted(self._ready(waiting), key=lambda r: r not in self.datasets.waiting):
                    if ref in self.datasets.waiting:
                        self._on_meta(ref)
                    else:
                        self._on_result(ref)
        except KeyboardInterrupt:
            # no ray.cancel(force=True) of the runs in flight: it raced their completion inside Ray's core worker
            # and crashed the driver (exit 1) now and then; the driver's exit ends them anyway
            self.bar.close()
            log.warning("stopped: %d runs saved, %d not run; run the same command again to resume",
                        sum(self.counts.values()), self.queue.unsubmitted() + len(self.queue.pending))
            raise
        finally:
            self.saver.close()
            self.bar.close()
            self.executor.shutdown()

    def _submit(self) -> None:
        q, executor = self.queue, self.executor
        while q.retry and len(q.pending) < self.limit and executor.ready():
            run, ref, attempt = q.retry.popleft()
            if ref is FUSED:
                self._submit_fused([run], attempt)
                continue
            self.datasets.retake(run)
            self._pending(executor.submit([(run, attempt)], ref), [(run, ref, attempt)])
        while q.head() is not None and len(q.pending) < self.limit and executor.ready():
            if self.pack_key(q.head()) is not None:
                if not self._submit_pack():
                    break
                continue
            fused = self._fusable()
            if fused:
                self._submit_fused(fused, 1)
                continue
            if not self.datasets.can_open(q.head().data_key):
                break
            batch = q.next_batch(self.batcher.size)
            ref = [self.datasets.take(run) for run in batch][0]
            self._pending(executor.submit([(run, 1) for run in batch], ref), [(run, ref, 1) for run in batch])

    def _submit_pack(self) -> bool:
        """Up to spec.pack runs compatible with the head of the queue (its pack key; looking a few packs
        ahead), each on its own dataset, as one program; False if no dataset can be opened now."""
        key, taken = self.pack_key(self.queue.head()), {}

        def accept(run):
            if self.pack_key(run) != key or not self.datasets.can_open(run.data_key):
                return False
            taken[run.run_id] = self.datasets.take(run)
            return True

        runs = self.queue.take_matching(self.how.pack, 8 * self.how.pack, accept)
        if not runs:
            return False
        refs = [taken[run.run_id] for run in runs]
        if len(runs) == 1:
            ref = self.executor.submit([(runs[0], 1)], refs[0])
        else:
            ref = self.executor.submit_packed([(run, 1) for run in runs], refs)
        self._pending(ref, [(run, data_ref, 1) for run, data_ref in zip(runs, refs)])
        return True

    def _fusable(self) -> list:
        """Runs at the head of the queue whose datasets have no other user and are not saved on disk: simulated
        and fitted in one task (several cheap ones, else one), so a dataset never leaves the node that fits it.
        None under a time limit: simulating must not count against the run's."""
        size = self.batcher.size
        if not self.executor.fuses or self.deadlines:
            return []
        alone = lambda r: r.data_key not in self.saved and self.datasets.alone(r)  # noqa: E731
        return self.queue.next_alone(size, alone)

    def _submit_fused(self, runs: list, attempt: int) -> None:
        if attempt == 1:  # a retry's dataset was skipped on its first attempt
            for run in runs:
                self.datasets.skip(run)
        ref = self.executor.submit_fused([(run, attempt) for run in runs], self.how.save_datasets)
        self._pending(ref, [(run, FUSED, attempt) for run in runs])

    def _pending(self, ref, entries: list) -> None:
        """A task in flight: its runs [(run, data ref, attempt), ...], its clock (spec.timeout_s) started."""
        self.queue.pending[ref] = entries
        unknown = {run.data_key for run, data_ref, _ in entries
                   if data_ref is not FUSED and run.data_key not in self.datasets.meta}
        self.deadlines.start(ref, len(entries), unknown)

    def _cancel_overdue(self) -> None:
        """Cancel the tasks past their time limit (a task's worker is killed, a warm actor restarted); their
        runs come back through _on_result as timed out."""
        for ref in self.deadlines.overdue():
            log.warning("cancelling %d run(s) past timeout_s (%s)", len(self.queue.pending[ref]),
                        ", ".join(run.run_id for run, _, _ in self.queue.pending[ref]))
            self.executor.cancel(ref)

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
        self.deadlines.data_known(key)
        if meta is not None and self.how.save_datasets:
            self.saver.dataset(key, ray.get(data_ref), meta)

    def _on_result(self, ref) -> None:
        entries = self.queue.pending.pop(ref)
        fused = entries[0][1] is FUSED
        if not fused:
            for run, _, _ in entries:
                self.datasets.give_back(run)
        allowed = self.deadlines.finished(ref)
        try:
            results = ray.get(ref)
            self.executor.done(ref)
        except ray.exceptions.RayError as e:
            results = self._task_failed(ref, entries, e, allowed)
        for (run, _, _), result in zip(entries, results):
            simulate_s = 0.0
            if fused and isinstance(result, dict):  # {"meta", "data", "result"} of simulate_and_fit
                result, simulate_s = self._fused_dataset(run, result)
            if result is not None:
                self.batcher.record((result.duration_s or 0.0) + simulate_s)
                self._finish(run, result)

    def _task_failed(self, ref, entries: list, e, allowed: float | None) -> list:
        """The results of a task that raised: cancelled past its time limit (`allowed` seconds), its simulate
        raised, or its worker or node died (each run retried while it has attempts left: None)."""
        if allowed is not None:
            self.executor.done(ref, lost=True)  # a killed actor rejoins once restarted
            return [timed_out(attempt, allowed) for _, _, attempt in entries]
        if isinstance(e, RayTaskError):  # the simulate task these runs depend on raised
            self.executor.done(ref)
            return [RunOutcome.failed(a, in_the_study_s_words(e)) for _, _, a in entries]
        self.executor.done(ref, lost=True)
        return [self._lost(run, data_ref, attempt, e) for run, data_ref, attempt in entries]

    def _fused_dataset(self, run, out: dict) -> tuple[RunOutcome, float]:
        """A fused run's dataset: its metadata (for data_sha256), saved if the spec says so. (result, the
        simulate's seconds)."""
        if out["meta"] is None:
            return out["result"], 0.0
        self.datasets.meta[run.data_key] = out["meta"]
        if out["data"] is not None:
            self.saver.dataset(run.data_key, out["data"], out["meta"])
        return out["result"], out["meta"]["duration_s"]

    def _lost(self, run, data_ref, attempt: int, e) -> RunOutcome | None:
        """A run whose task was lost: queued again (None) while it has attempts left, else a failed result with
        the dead worker's last output (if this node's logs have it) in its run.log."""
        died = (ray.exceptions.WorkerCrashedError, ray.exceptions.ActorDiedError)
        said = crashes.last_output(run.run_id) if isinstance(e, died) else None
        if self.queue.lost(run, data_ref, attempt):
            log.warning("run %s lost (%s); retrying, attempt %d%s", run.run_id, type(e).__name__, attempt + 1,
                        f"; its worker's last output:\n{said}" if said else "")
            return None
        error = f"{type(e).__name__}: {e}"
        killed_by = crashes.cause(said)
        if killed_by:  # the first line: what killed it and where in the study (runs that died alike group)
            error = (f"{type(e).__name__}: the worker died while fitting the run: {killed_by}; its stack is in "
                     f"the run's run.log")
        elif said:  # the first line is the same for every such run: the summary gives it once
            lines = said.splitlines()
            error = (f"{type(e).__name__}: the worker died while fitting the run; the end of its output is in its "
                     f"run.log\nrun {run.run_id}, the last line it printed: {lines[-2] if len(lines) > 1 else '(none)'}")
        return RunOutcome.failed(attempt, error, log=said or "")

    def _finish(self, run, outcome: RunOutcome) -> None:
        """The run's record (the plan's run, its outcome, its dataset's sha256) to the saver."""
        meta = self.datasets.meta.get(run.data_key)
        self.saver.run(RunRecord.of(run, outcome, meta["sha256"] if meta else None), outcome)
        if not any(r.data_key == run.data_key for r, _, _ in self.queue.retry):  # a lost run may still need it
            self.datasets.forget(run.data_key)
        self.counts[outcome.status] += 1
        self.bar.update(1)
        self.bar.set_postfix(ok=self.counts["ok"], failed=self.counts["failed"], refresh=False)


ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")


def in_the_study_s_words(e: RayTaskError) -> str:
    """A task error as the study raised it: the innermost task's traceback, without Ray's task headers
    ("ray::simulate_dataset() (pid=..., ip=...)", "At least one of the input arguments ...") and colour codes."""
    innermost = ANSI_CODES.sub("", str(e)).rsplit("ray::", 1)[-1]
    body = innermost.split("\n", 1)[1] if "\n" in innermost else innermost
    return "Traceback (most recent call last):\n" + body.strip("\n")


def timed_out(attempt: int, allowed: float) -> RunOutcome:
    """A run cancelled past its time limit: failed, not retried (`retries` is for lost workers and nodes)."""
    return RunOutcome.failed(attempt, f"TimeoutError: timed out after {allowed:g} s (the spec's timeout_s); "
                             "the run was cancelled")


def runs_at_once(resources: dict) -> int:
    """How many runs asking `resources` the cluster runs at the same time (at least 1)."""
    have = ray.cluster_resources()
    fits = [int(have.get(name, 0) // resources[key]) for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU"))
            if resources.get(key)]
    return max(min(fits, default=1), 1)


def make_executor(how: HowToRun, study_ref, n_runs: int, options: dict) -> Executor:
    """Tasks, or a pool of warm actors (`executor: actor`); each task or actor asks the spec's resources and gets
    `options` (the study's runtime_env)."""
    opts = {**{k: v for k, v in how.resources.asked().items() if v}, **options}
    if how.executor == "actor":
        from sweeper.execution.actors import ActorExecutor

        return ActorExecutor(how, study_ref, n_runs, opts)
    return TaskExecutor(how, study_ref, opts)
