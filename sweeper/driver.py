"""The driver: load the spec, plan, lock the study directory, schedule the runs, gather, report."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import ray

from .errors import SpecError
from .hashing import short_hash
from .plan import expand
from .results import SweepResult
from .scheduler import Scheduler
from .spec import Spec, load_spec
from .store import StudyDir

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


def study_dir(spec: Spec, out) -> StudyDir:
    return StudyDir(Path(out) / spec.name / spec.sweep_id())


def run(spec, overrides=(), out="outputs", address=None, max_in_flight=None, progress=True,
        report=True, max_runs=None) -> SweepResult:
    """Run (or resume) a sweep and return its SweepResult. Bad specs (and plans over `max_runs`, default
    plan.MAX_RUNS) fail before any Ray work."""
    spec = load_spec(spec, overrides)
    plan = expand(spec, max_runs)
    sd = study_dir(spec, out)
    ids = [r.run_id for r in plan.runs]
    sd.check_free()
    work = len(sd.completed(ids)) < len(ids) if sd.has_results() else bool(ids)
    started = time.time()
    with ray_session(address) if work else contextlib.nullcontext():
        if work:
            check_resources(spec, cluster_known=address is None)  # before anything is written
        sd.lock()
        try:
            prepare(sd, spec, plan)
            note_slurm_job(sd)
            sd.adopt_legacy_results()
            done = sd.completed(ids)
            todo = [r for r in plan.runs if r.run_id not in done]
            if done:
                log.info("resuming %s: %d of %d runs already done", sd.root, len(done), len(ids))
            try:
                if todo:
                    Scheduler(spec, sd, todo, max_in_flight or spec.max_in_flight, progress).run()
            finally:
                table = sd.gather(ids)
                sd.write_provenance(provenance(spec, started))
            result = SweepResult(sd, table, study=spec.study)
            if report:
                write_reports(result, spec)
        finally:
            sd.unlock()
    return result


def prepare(sd: StudyDir, spec: Spec, plan) -> None:
    """spec.yaml, plan.parquet and code.json: what the sweep will run, readable before any run starts."""
    sd.write_spec(spec.to_dict(), spec.origins, None if spec.study.ref else SCRIPT_NOTE)
    sd.write_plan(plan.table())
    record_code(sd, spec)


def note_slurm_job(sd: StudyDir) -> None:
    """Inside a SLURM job (however it was submitted), list the job for `sweep status`."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if job_id and job_id not in {j["job_id"] for j in sd.slurm_jobs()}:
        sd.add_slurm_job(job_id, "started")


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
    """A run (or simulate task) asking more CPUs, GPUs or memory than any node has would wait for ever: say
    so before starting.

    On a cluster Ray was started for here (`cluster_known`), that is an error; on an existing cluster
    (`--address`), whose autoscaler may still add such a node, a warning.
    """
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for prefix, asked, who in (("resources", spec.resources, "each run"),
                               ("resources.simulate", spec.simulate_resources, "each simulate task")):
        for key, name in names.items():
            want = asked.get(key) or 0
            have = max((n.get(name, 0) for n in nodes), default=0)
            if want <= have:
                continue
            msg = (f"{who} asks for {want} {name}, but the largest node has {have:g} ({len(nodes)} node(s): "
                   f"{', '.join(f'{n.get(name, 0):g}' for n in nodes)}); it could never start")
            if cluster_known:
                raise SpecError(msg, where=spec.origins.get(f"{prefix}.{key}", spec.path), key=f"{prefix}.{key}")
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
