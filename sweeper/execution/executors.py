"""Executors: how a run reaches a Ray worker. The scheduler talks to this interface only."""
from __future__ import annotations

from abc import ABC, abstractmethod

import ray

from sweeper.execution.worker import execute_batch, execute_packed, fit_items, simulate_and_fit


class Executor(ABC):
    """Runs go in with submit() and come back as ObjectRefs; done() hands each back (lost: its worker died)."""

    reserved_cpus: float = 0  # CPUs held for the executor's whole life (a warm actor pool)
    batches: bool = False     # whether submit() takes several runs at once
    fuses: bool = False       # whether submit_fused() simulates and fits single-user datasets in one task

    def capacity(self, default: int) -> int:
        """How many runs may be in flight at once."""
        return default

    @abstractmethod
    def submit(self, runs: list, data_ref):
        """Start runs [(run, attempt), ...] (one unless `batches`) on the dataset behind data_ref, one after
        the other in one task; an ObjectRef of their results, a list in the same order."""

    def submit_packed(self, runs: list, data_refs: list):
        """Start runs [(run, attempt), ...], each on its own dataset, as one program (the study's fit_packed);
        an ObjectRef of their results, a list in the same order."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether a run can be submitted now."""
        return True

    def wait_ready(self, timeout: float) -> None:
        """Block up to timeout for ready() (e.g. while actors restart)."""

    def done(self, ref, lost: bool = False) -> None:
        """The run behind ref came back (or was lost with its worker)."""

    def cancel(self, ref) -> None:
        """Stop the task behind ref now (past its time limit): it comes back as an error."""
        ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Free what the executor holds."""


class TaskExecutor(Executor):
    """Runs go as Ray tasks with the spec's resources; cheap runs of one dataset several to a task."""

    batches = True

    def __init__(self, how, study_ref, opts: dict):
        """`opts`: the Ray options of every task (resources, runtime_env)."""
        self._fit = ray.remote(execute_batch).options(max_retries=0, **opts)
        # simulate and fit together only where they ask for the same resources
        self._fused = ray.remote(simulate_and_fit).options(max_retries=0, **opts)
        self._packed = ray.remote(execute_packed).options(max_retries=0, **opts)
        self.fuses = not how.simulate.asked()
        self.study_ref = study_ref

    def submit(self, runs: list, data_ref):
        return self._fit.remote(self.study_ref, data_ref, fit_items(runs))

    def submit_packed(self, runs: list, data_refs: list):
        return self._packed.remote(self.study_ref, fit_items(runs), *data_refs)

    def submit_fused(self, runs: list, keep_data: bool):
        """Runs [(run, attempt), ...] whose datasets have no other user: simulate and fit each in one task."""
        items = [(run.run_id, run.data, run.seed_data, run.fit, run.seed_fit, attempt) for run, attempt in runs]
        return self._fused.remote(self.study_ref, items, keep_data)
