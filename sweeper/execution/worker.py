"""What runs on a Ray worker: simulate a dataset, fit one run; both plain functions, no Ray state."""
from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import io
import socket
import sys
import time
import traceback
from dataclasses import dataclass

from sweeper.execution import crashes
from sweeper.hashing import arrays_sha256
from sweeper.records import FitResult, InvalidFitResult, RunOutcome, RunStatus


@dataclass(frozen=True)
class StudyRef:
    """How a worker finds the study: its reference ("module:ATTR"), importable there because its code travels
    with the sweep (sweeper.execution.shipping: every code version in workers of its own, so a worker never
    holds two), or the Study itself (a study defined in a script travels by value)."""

    ref: str | None = None
    obj: object = None

    @classmethod
    def of(cls, study) -> "StudyRef":
        return cls(ref=study.ref) if study.ref else cls(obj=study)

    def load(self):
        """The Study (resolved once per process)."""
        if self.obj is not None:
            return self.obj
        if self.ref not in _LOADED:
            from sweeper.study import resolve

            _LOADED[self.ref] = resolve(self.ref)
        return _LOADED[self.ref]


_LOADED: dict = {}
_SET_UP: set = set()


def set_up(study) -> None:
    """The study's setup(), once per worker process (a task worker or a warm actor). A crash in native code
    prints the Python stack to the worker's stderr (faulthandler), where a dead run's log is found."""
    if not faulthandler.is_enabled():
        faulthandler.enable()
    key = (study.name, study.ref)
    if study.setup is not None and key not in _SET_UP:
        study.setup()
    _SET_UP.add(key)


def _where() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()[:12] + "@" + socket.gethostname()
    except Exception:
        pass
    return socket.gethostname()


def assigned_gpus() -> list:
    """The GPUs Ray assigned to the task or actor running this code ([] outside Ray, or with none). Ray also
    sets CUDA_VISIBLE_DEVICES to them, so CuPy's device 0 is the first. A study's simulate or fit asks this
    to decide where to compute (resources.simulate.num_gpus, resources.num_gpus)."""
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:
        return []


def _device() -> str:
    ids = assigned_gpus()
    return f"gpu:{','.join(str(i) for i in ids)}" if ids else "cpu"


def simulate_dataset(study_ref: StudyRef, data_params: dict, seed: int):
    """(dataset, meta): the study's simulate output and its sha256, seed, duration and node."""
    t0 = time.perf_counter()
    try:
        data = study_ref.load().simulate(data_params, seed)
    except SystemExit as e:  # not a dead worker: the study's own way of failing
        raise RuntimeError(f"simulate called sys.exit({e.code!r})") from None
    problem = check_dataset(data)
    if problem:
        raise TypeError(problem)
    nbytes = sum(getattr(v, "nbytes", 8) for v in data.values())
    meta = {"sha256": arrays_sha256(data), "nbytes": int(nbytes), "seed": seed, "params": data_params,
            "duration_s": time.perf_counter() - t0, "node": _where(), "device": _device()}
    return data, meta


def simulate_and_fit(study_ref: StudyRef, items: list, keep_data: bool) -> list:
    """Runs whose dataset has no other user, each simulated and fitted here, in turn: one task for several
    cheap runs. items: [(data params, data seed, fit params, fit seed, attempt), ...]; each gives
    {"meta", "data" (kept only to be saved), "result"}; a failing simulate is that run's failed outcome."""
    out = []
    for run_id, data_params, seed_data, fit_params, seed_fit, attempt in items:
        try:
            data, meta = simulate_dataset(study_ref, data_params, seed_data)
        except Exception:
            out.append({"meta": None, "data": None,
                        "result": RunOutcome.failed(attempt, traceback.format_exc(), node=_where())})
            continue
        out.append({"meta": meta, "data": data if keep_data else None,
                    "result": execute_run(study_ref, data, fit_params, seed_fit, attempt, run_id)})
    return out


def check_dataset(data) -> str | None:
    """Why simulate's return value is not a dataset (a non-empty dict of host arrays and numbers), or None."""
    if not isinstance(data, dict) or not data:
        return f"simulate must return a non-empty dict of arrays and scalars, got {type(data).__name__}"
    import numpy as np

    for name, v in data.items():
        try:
            kind = np.asarray(v).dtype
        except Exception:  # e.g. a CuPy array, which does not convert implicitly
            kind = None
        if kind is None or kind == object:
            return (f"simulate's {name!r} is a {type(v).__name__}, not an array or number (datasets are saved as "
                    "NPZ and shared as NumPy arrays)")
    return None


def fit_items(runs: list) -> list:
    """What a worker needs of runs [(run, attempt), ...] to fit them: [(run id, fit params, fit seed, attempt)]."""
    return [(run.run_id, run.fit, run.seed_fit, attempt) for run, attempt in runs]


def execute_batch(study_ref: StudyRef, dataset: dict, items: list) -> list:
    """Fit several runs [(run id, fit params, seed, attempt), ...] of one dataset in turn: one result each."""
    return [execute_run(study_ref, dataset, fit, seed, attempt, run_id) for run_id, fit, seed, attempt in items]


def _fit(study, dataset: dict, fit_params: dict, seed: int):
    """study.fit; sys.exit inside it is the run's failure with its message, not a crashed worker to retry."""
    try:
        return study.fit(dataset, fit_params, seed)
    except SystemExit as e:
        raise RuntimeError(f"fit called sys.exit({e.code!r})") from None


class _Tee(io.StringIO):
    """The run's output, kept for its run.log and also passed to the worker's real stderr (which Ray keeps in
    its worker log), so that what a run printed survives a crash of its worker (sweeper.execution.crashes)."""

    def write(self, text: str) -> int:
        try:
            sys.__stderr__.write(text)
        except (AttributeError, OSError, ValueError):
            pass
        return super().write(text)


def execute_run(study_ref: StudyRef, dataset: dict, fit_params: dict, seed: int, attempt: int = 1,
                run_id: str | None = None) -> RunOutcome:
    """Fit one run; a raising fit or an invalid result is a failed outcome with the reason, never an exception."""
    t0 = time.perf_counter()
    buf = _Tee()
    crashes.mark_start(run_id)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            study = study_ref.load()
            set_up(study)
            out = _fit(study, dataset, fit_params, seed)
        outcome = run_outcome(out, attempt)
    except Exception:
        outcome = failed_outcome(attempt, traceback.format_exc())
    return dataclasses.replace(outcome, duration_s=time.perf_counter() - t0, log=buf.getvalue())


def failed_outcome(attempt: int, error: str) -> RunOutcome:
    """A run's outcome when fit raised: where it ran and why it failed."""
    return RunOutcome.failed(attempt, error, node=_where(), device=_device())


def run_outcome(out, attempt: int) -> RunOutcome:
    """A run's outcome from what fit returned: ok with its parts, or failed with why the output is invalid."""
    try:
        parts = FitResult.coerce(out)
    except InvalidFitResult as problem:
        metrics = out.get("metrics") if isinstance(out, dict) and isinstance(out.get("metrics"), dict) else {}
        return RunOutcome.failed(attempt, str(problem), metrics=metrics, node=_where(), device=_device())
    return RunOutcome(RunStatus.OK, attempt, metrics=parts.metrics, parts=parts, node=_where(),
                      device=parts.device or _device())


def execute_packed(study_ref: StudyRef, items: list, *datasets) -> list:
    """Runs [(run id, fit params, seed, attempt), ...] on their datasets (one each, in order) trained as one
    program by the study's fit_packed; each run's result as execute_run gives it. A raising fit_packed fails
    every run of the pack with its traceback; each run's duration is its share of the call."""
    t0 = time.perf_counter()
    buf = _Tee()
    for run_id, *_ in items:
        crashes.mark_start(run_id)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            study = study_ref.load()
            set_up(study)
            outs = study.fit_packed(list(datasets), [f for _, f, _, _ in items], [s for _, _, s, _ in items])
        if not isinstance(outs, list) or len(outs) != len(items):
            raise TypeError(f"fit_packed must return a list of {len(items)} results, got {type(outs).__name__}")
        outcomes = [run_outcome(out, attempt) for out, (_, _, _, attempt) in zip(outs, items)]
    except Exception:
        error = traceback.format_exc()
        outcomes = [failed_outcome(a, error) for _, _, _, a in items]
    share, log = (time.perf_counter() - t0) / len(items), buf.getvalue()
    return [dataclasses.replace(o, duration_s=share, log=log) for o in outcomes]
