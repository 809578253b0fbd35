"""The driver: spec -> plan -> Ray tasks (simulate once per data key, fit per run) -> store, with resume."""
from __future__ import annotations

import collections
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ray
from ray.exceptions import RayTaskError
from tqdm.auto import tqdm

from .errors import SpecError
from .hashing import short_hash
from .plan import expand
from .results import SweepResult
from .spec import Spec, load_spec
from .store import StudyDir
from .worker import StudyRef, execute_run, simulate_dataset

log = logging.getLogger("sweeper")


@contextlib.contextmanager
def ray_session(address=None):
    """Use the Ray session already running in this process, else start (and later stop) one."""
    if ray.is_initialized():
        yield
        return
    # worker output goes to each run's run.log and failures into results; the console keeps the progress bar
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


class TaskExecutor:
    """Each run is one Ray task with the spec's resources."""

    def __init__(self, spec: Spec, study_ref):
        opts = {k: v for k, v in spec.resources.items() if v}
        self._fit = ray.remote(execute_run).options(max_retries=0, **opts)
        self.study_ref = study_ref

    def capacity(self, default: int) -> int:
        return default

    def submit(self, run, data_ref, attempt: int):
        return self._fit.remote(self.study_ref, data_ref, run.fit, run.seed_fit, attempt)

    def ready(self) -> bool:
        return True

    def wait_ready(self, timeout: float) -> None:
        pass

    def done(self, ref, lost: bool = False) -> None:
        pass

    def shutdown(self) -> None:
        pass


def make_executor(spec: Spec, study_ref, n_runs: int):
    if spec.executor == "actor":
        from .actors import ActorExecutor

        return ActorExecutor(spec, study_ref, n_runs)
    return TaskExecutor(spec, study_ref)


def study_dir(spec: Spec, out) -> StudyDir:
    return StudyDir(Path(out) / spec.name / spec.sweep_id())


def run(spec, overrides=(), out="outputs", address=None, max_in_flight=None, progress=True,
        report=True) -> SweepResult:
    """Run (or resume) a sweep and return its SweepResult. Bad specs fail before any Ray work."""
    spec = load_spec(spec, overrides)
    plan = expand(spec)
    sd = study_dir(spec, out)
    ids = [r.run_id for r in plan.runs]
    sd.check_free()
    work = len(sd.completed(ids)) < len(ids) if sd.runs.is_dir() else bool(ids)
    started = time.time()
    with ray_session(address) if work else contextlib.nullcontext():
        if work:
            check_resources(spec, cluster_known=address is None)  # before anything is written
        sd.lock()
        try:
            sd.write_spec(spec.to_dict(), spec.origins, None if spec.study.ref else SCRIPT_NOTE)
            sd.write_plan(plan.table())
            record_code(sd, spec)
            done = sd.completed(ids)
            todo = [r for r in plan.runs if r.run_id not in done]
            if done:
                log.info("resuming %s: %d of %d runs already done", sd.root, len(done), len(ids))
            try:
                if todo:
                    _execute(spec, sd, todo, max_in_flight or spec.max_in_flight, progress)
            finally:
                table = sd.gather(ids)
                sd.write_provenance(provenance(spec, started))
            result = SweepResult(sd, table, study=spec.study)
            if report:
                write_reports(result, spec)
        finally:
            sd.unlock()
    return result


SCRIPT_NOTE = ("the study was defined in a script or notebook, not an importable module: `sweep run` cannot "
               "re-run this spec; run it through sweeper.run(...) with the same Study")


def record_code(sd: StudyDir, spec: Spec) -> None:
    """code.json: the study's code hash (part of the sweep id). An earlier sweep of the same spec whose code
    differs is named in the log, so nobody wonders where the old results went."""
    plan_hash = short_hash(spec.plan_inputs(), 16)
    sd.write_code({"study": spec.study_ref, "plan_hash": plan_hash, **spec.code})
    for other in sd.siblings():
        old = other.read_code()
        if old.get("plan_hash") == plan_hash and old.get("sha256") != spec.code.get("sha256"):
            changed = sorted(k for k in {**old.get("parts", {}), **spec.code.get("parts", {})}
                             if old.get("parts", {}).get(k) != spec.code.get("parts", {}).get(k))
            log.warning("the code of study %s changed since %s was run (%s): these results go to %s, the old "
                        "ones stay where they are", spec.study_name, other.root, ", ".join(changed), sd.root)


def provenance(spec: Spec, started: float) -> dict:
    """When, where from and with which versions this sweep (or its last resume) ran."""
    from .html import git_commit, versions

    where = Path(spec.path).parent if spec.path else Path.cwd()
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))  # noqa: E731
    return {"started": stamp(started), "finished": stamp(time.time()), "wall_s": time.time() - started,
            "spec_path": spec.path, "git_commit": git_commit(where), "versions": versions()}


def write_reports(result: SweepResult, spec: Spec) -> None:
    """The study's report, the sweep report (when the spec has `report:`) and report.html. The results are
    saved first: an unknown report.metric is then a SpecError naming the metrics that exist."""
    from .html import render

    result.figures = draw_report(spec.study, result)
    rep, problem = None, None
    if spec.report.get("metric"):
        try:
            rep = draw_sweep_report(result, **spec.report)
        except ValueError as e:
            problem = e
    render(result, rep, spec.path)
    if problem:
        raise SpecError(f"{problem} (the results are saved in {result.dir})",
                        where=spec.origins.get("report.metric", spec.path), key="report.metric")


def check_resources(spec: Spec, cluster_known: bool) -> None:
    """A run asking more CPUs, GPUs or memory than any node has would wait for ever: say so before starting.

    On a cluster Ray was started for here (`cluster_known`), that is an error; on an existing cluster
    (`--address`), whose autoscaler may still add such a node, a warning.
    """
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for key, name in names.items():
        want = spec.resources.get(key) or 0
        have = max((n.get(name, 0) for n in nodes), default=0)
        if want > have:
            msg = (f"each run asks for {want} {name}, but the largest node has {have:g} "
                   f"({len(nodes)} node(s): {', '.join(f'{n.get(name, 0):g}' for n in nodes)}); no run could start")
            if cluster_known:
                raise SpecError(msg, where=spec.origins.get(f"resources.{key}", spec.path), key=f"resources.{key}")
            log.warning("%s -- waiting for the autoscaler to add a node that has it", msg)


def draw_report(study, result: SweepResult) -> list:
    """The study's report(result, figures_dir), or every metric against each axis; a failing report is
    logged and never loses the sweep. `study`: a Study, or None when it cannot be imported here."""
    from . import report as generic

    result.sd.figures.mkdir(parents=True, exist_ok=True)
    try:
        if study is not None and study.report is not None:
            return list(study.report(result, result.sd.figures) or [])
        return generic.metrics_by_axis(result, result.sd.figures)
    except Exception:
        log.exception("the report step failed; the results are saved in %s", result.dir)
        return []


def draw_sweep_report(result: SweepResult, metric=None, maximize=False, axes=None):
    """The generic sweep report (figures/sweep/); a ValueError for an unknown metric or axis."""
    from .report import sweep_report

    rep = sweep_report(result, metric=metric, maximize=maximize, axes=axes)
    result.figures += rep.paths
    if rep.best:
        b = rep.best
        log.info("best by %s: %.4g, 95%% CI [%.4g, %.4g], n=%d: %s", b["metric"], b["mean"], b["ci_low"],
                 b["ci_high"], b["n"], " ".join(b["overrides"]))
    return rep


def _default_limits() -> tuple[int, int]:
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


def _execute(spec: Spec, sd: StudyDir, todo: list, max_in_flight, progress: bool) -> None:
    study_ref = StudyRef.of(spec.study, spec.code)
    if study_ref.obj is not None:
        study_ref = ray.put(study_ref)  # an object study (functions by value) is pickled once, not per task
    executor = make_executor(spec, study_ref, len(todo))
    sim_cpus = spec.resources.get("num_cpus", 1) or 1
    free = ray.cluster_resources().get("CPU", 0) - getattr(executor, "reserved_cpus", 0)
    if free < sim_cpus:  # an actor pool holds every CPU: simulate anyway rather than wait for ever
        log.info("the actor pool holds the CPUs; datasets are simulated beside it (num_cpus=0)")
        sim_cpus = 0
    simulate = ray.remote(simulate_dataset).options(num_returns=2, max_retries=max(spec.retries, 1),
                                                    num_cpus=sim_cpus)
    default_runs, max_datasets = _default_limits()
    sized = False  # max_datasets follows the first dataset's size once it is known
    limit = executor.capacity(max_in_flight or default_runs)
    remaining = collections.Counter(r.data_key for r in todo)
    in_flight = collections.Counter()  # data key -> runs submitted and not yet back
    datasets: dict = {}      # data key -> ObjectRef, while runs still need submitting
    metas: dict = {}         # meta ObjectRef -> (data key, dataset ref), until saved
    meta_of: dict = {}       # data key -> meta dict once known
    pending: dict = {}       # fit ObjectRef -> (run, dataset ref, attempt)
    order = {k: i for i, k in enumerate(dict.fromkeys(r.data_key for r in todo))}
    queue = collections.deque(sorted(todo, key=lambda r: order[r.data_key]))  # a dataset's runs together
    counts = collections.Counter()
    bar = tqdm(total=len(todo), desc=spec.name, unit="run", disable=not progress, smoothing=0.05)

    on_disk = {p.stem for p in sd.datasets.glob("*.npz")} if spec.save_datasets and sd.datasets.is_dir() else set()

    def dataset_ref(run):
        if run.data_key not in datasets:
            saved = sd.load_dataset(run.data_key) if run.data_key in on_disk else None
            if saved is not None:
                datasets[run.data_key] = ray.put(saved[0])
                meta_of[run.data_key] = saved[1]
            else:
                data_ref, meta_ref = simulate.remote(study_ref, run.data, run.seed_data)
                datasets[run.data_key] = data_ref
                metas[meta_ref] = (run.data_key, data_ref)
        ref = datasets[run.data_key]
        remaining[run.data_key] -= 1
        if remaining[run.data_key] == 0:
            del datasets[run.data_key]  # in-flight runs keep it alive; Ray frees it after them
        return ref

    # runs are written on one background thread, so the driver keeps Ray busy while files are written
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-store")
    writes = []

    def finish(run, result):
        if run.data_key in meta_of:
            result["data_sha256"] = meta_of[run.data_key]["sha256"]
        writes.append(writer.submit(sd.write_run, run, result))
        counts[result["status"]] += 1
        bar.update(1)
        bar.set_postfix(ok=counts["ok"], failed=counts["failed"], refresh=False)

    retry = collections.deque()  # (run, dataset ref, attempt) lost to a dead worker, node or actor
    try:
        while queue or pending or retry:
            while retry and len(pending) < limit and executor.ready():
                run, ref, attempt = retry.popleft()
                in_flight[run.data_key] += 1
                pending[executor.submit(run, ref, attempt)] = (run, ref, attempt)
            while queue and len(pending) < limit and executor.ready():
                live = {k for k, n in in_flight.items() if n} | set(datasets)
                if queue[0].data_key not in live and len(live) >= max_datasets:
                    break
                run = queue.popleft()
                in_flight[run.data_key] += 1
                ref = dataset_ref(run)
                pending[executor.submit(run, ref, 1)] = (run, ref, 1)
            waiting = list(metas) + list(pending)
            if not waiting:  # every actor is restarting: wait for the pool
                executor.wait_ready(timeout=1.0)
                continue
            ready, rest = ray.wait(waiting, num_returns=1, timeout=1.0)
            if ready and rest:  # take every other result that is already in, in one go
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for r in ready:
                if r in metas:
                    key, data_ref = metas.pop(r)
                    try:
                        meta_of[key] = ray.get(r)
                    except ray.exceptions.RayError:
                        continue  # the runs that need it will carry the simulate error
                    if spec.save_datasets:
                        writes.append(writer.submit(sd.save_dataset, key, ray.get(data_ref), meta_of[key]))
                    if not sized:
                        max_datasets, sized = datasets_alive(meta_of[key]["nbytes"]), True
                    continue
                run, data_ref, attempt = pending.pop(r)
                in_flight[run.data_key] -= 1
                try:
                    result = ray.get(r)
                    executor.done(r)
                except RayTaskError as e:
                    executor.done(r)  # the simulate task this run depends on raised
                    result = {"status": "failed", "error": str(e), "attempt": attempt, "metrics": {}}
                except ray.exceptions.RayError as e:  # a worker or node died, or an object was lost
                    executor.done(r, lost=True)
                    if attempt <= spec.retries:
                        log.warning("run %s lost (%s); retrying, attempt %d", run.run_id, type(e).__name__,
                                    attempt + 1)
                        retry.append((run, data_ref, attempt + 1))
                        continue
                    result = {"status": "failed", "error": f"{type(e).__name__}: {e}", "attempt": attempt,
                              "metrics": {}}
                finish(run, result)
    except KeyboardInterrupt:
        for r in pending:
            ray.cancel(r, force=True)
        bar.close()
        log.warning("stopped: %d runs saved, %d not run; run the same command again to resume",
                    sum(counts.values()), len(queue) + len(pending))
        raise
    finally:
        writer.shutdown(wait=True)
        for w in writes:
            w.result()  # a failed write is an error of the sweep, not of the run
        bar.close()
        executor.shutdown()
