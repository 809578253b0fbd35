"""Warm trainer actors: long-lived workers that import a study once and fit run after run.

With `executor: actor` the driver sends each run to whichever actor of the pool is free. An actor
calls the study's optional `setup()` once (import a framework, size GPU memory) and its optional
`teardown()` after every run (clear a Keras session). A crashed actor is restarted by Ray and the
driver retries its run.
"""
from __future__ import annotations

import os

import ray

from sweeper.execution.executors import Executor
from sweeper.execution.worker import StudyRef, execute_packed, execute_run, fit_items, set_up
from sweeper.spec.models import HowToRun


class TrainerActor:
    def __init__(self, study_ref: StudyRef):
        self.study_ref = study_ref
        self.study = study_ref.load()
        self.runs = 0
        set_up(self.study)

    def fit(self, dataset: dict, items: list) -> list:
        """Results of runs [(run id, fit params, seed, attempt), ...], the study's teardown after each."""
        results = []
        for run_id, fit_params, seed, attempt in items:
            try:
                results.append(execute_run(self.study_ref, dataset, fit_params, seed, attempt, run_id))
            finally:
                self._ran(1)
        return results

    def fit_packed(self, items: list, *datasets) -> list:
        """Results of runs [(run id, fit params, seed, attempt), ...] on their datasets, trained as one program."""
        try:
            return execute_packed(self.study_ref, items, *datasets)
        finally:
            self._ran(len(items))

    def _ran(self, runs: int) -> None:
        """Count finished runs and tear the study down after them."""
        self.runs += runs
        if self.study.teardown is not None:
            self.study.teardown()

    def info(self) -> dict:
        return {"pid": os.getpid(), "runs": self.runs}


def pool_size(how: HowToRun, cluster: dict) -> int:
    """how.actors, else as many actors as the cluster's CPUs / GPUs fit with the spec's resources."""
    if how.actors:
        return how.actors
    gpus, cpus = how.resources.num_gpus or 0, how.resources.num_cpus or 0
    fits = []
    if gpus:
        fits.append(int(cluster.get("GPU", 0) // gpus))
    if cpus:
        # leave one CPU for the simulate tasks, which would otherwise wait forever behind the pool
        fits.append(int(max(cluster.get("CPU", 0) - 1, cpus) // cpus))
    n = min(fits) if fits else 1
    if n < 1:
        raise RuntimeError(f"no actor fits the cluster: each asks {how.resources.asked()}, the cluster has "
                           f"{ {k: cluster.get(k, 0) for k in ('CPU', 'GPU')} }")
    return n


class ActorExecutor(Executor):
    """A pool of TrainerActors; runs go to idle actors, one at a time each."""

    def __init__(self, how: HowToRun, study_ref, n_runs: int, opts: dict):
        """`opts`: the Ray options of every actor (resources, runtime_env)."""
        # an actor killed past a run's time limit is restarted for the next run, however often
        restarts = -1 if how.timeout_s else max(how.retries, 0)
        cls = ray.remote(TrainerActor).options(max_restarts=restarts, max_task_retries=0, **opts)
        n = min(pool_size(how, ray.cluster_resources()), max(n_runs, 1))
        self.actors = [cls.remote(study_ref) for _ in range(n)]
        self.reserved_cpus = n * (how.resources.num_cpus or 0)
        self.idle = list(self.actors)
        self.busy: dict = {}
        self.recovering: dict = {}  # health-check ref -> actor being restarted

    def capacity(self, default: int) -> int:
        return len(self.actors)

    def submit(self, runs: list, data_ref):
        actor = self.idle.pop()
        ref = actor.fit.remote(data_ref, fit_items(runs))
        self.busy[ref] = actor
        return ref

    def submit_packed(self, runs: list, data_refs: list):
        actor = self.idle.pop()
        ref = actor.fit_packed.remote(fit_items(runs), *data_refs)
        self.busy[ref] = actor
        return ref

    def cancel(self, ref) -> None:
        """Kill the actor running ref (past its time limit); Ray restarts it and it rejoins the pool."""
        ray.kill(self.busy[ref], no_restart=False)

    def done(self, ref, lost: bool = False) -> None:
        """Back to the pool; an actor that died with its run rejoins only once Ray has restarted it."""
        actor = self.busy.pop(ref)
        if lost:
            self.recovering[actor.info.remote()] = actor
        else:
            self.idle.append(actor)

    def ready(self) -> bool:
        if self.recovering:
            back, _ = ray.wait(list(self.recovering), num_returns=len(self.recovering), timeout=0)
            self._rejoin(back)
        return bool(self.idle)

    def wait_ready(self, timeout: float) -> None:
        if self.recovering:
            back, _ = ray.wait(list(self.recovering), num_returns=1, timeout=timeout)
            self._rejoin(back)

    def _rejoin(self, pings) -> None:
        for ping in pings:
            actor = self.recovering.pop(ping)
            try:
                ray.get(ping)
            except ray.exceptions.RayError:
                continue  # out of restarts: the pool shrinks; the runs go to the others
            self.idle.append(actor)
        if not self.idle and not self.busy and not self.recovering:
            raise RuntimeError("every trainer actor died and could not be restarted (raise `retries`)")

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
