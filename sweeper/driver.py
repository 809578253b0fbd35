"""The driver: load the spec, plan, lock the sweep directory, schedule the runs, gather, report: each step
handed what the one before it made."""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time

import numpy as np
import ray

from sweeper.errors import ClusterError, OutputFailed, SpecError, SweepFailed
from sweeper.execution import connect, shipping
from sweeper.execution.scheduler import Scheduler
from sweeper.execution.slurm import note_job
from sweeper.report.build import build_report
from sweeper.report.provenance import provenance
from sweeper.results.sweep_result import SweepResult
from sweeper.columns import key_of
from sweeper.spec import precision
from sweeper.spec.plan import expand
from sweeper.spec.resolved import Spec, load_spec
from sweeper.store.prepare import prepare, sweep_store
from sweeper.store.sweep_store import SweepStore

log = logging.getLogger("sweeper")


def ray_address(address=None) -> str:
    """Which Ray a sweep uses: `address` (`--address`) if given, else RAY_ADDRESS if set, else "local": a Ray of
    its own, whatever other cluster runs (or once ran) on this machine."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


@contextlib.contextmanager
def ray_session(address=None):
    """Use the Ray session already running in this process, else start (and later stop) one at
    ray_address(address)."""
    if ray.is_initialized():
        yield
        return
    address = ray_address(address)
    connect.probe(address)  # nothing there, or a refused token: one line in seconds, not Ray's retries
    # worker output goes to each run's run.log and failures into results; the console keeps the progress bar
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def run(spec, overrides=(), out="outputs", address=None, max_in_flight=None, progress=True,
        report=True, max_runs=None, precision: dict | None = None) -> SweepResult:
    """Run (or resume) a sweep and return its SweepResult. Bad specs (and plans over `max_runs`, default
    plan.MAX_RUNS) fail before any Ray work. `precision`: the spec's precision section ({metric, half_width,
    max_repeats, min_repeats}), repeats added until each configuration's interval is that tight."""
    if precision is not None:
        overrides = [*overrides, f"precision={json.dumps(precision)}"]
    spec = load_spec(spec, overrides)
    plan = expand(spec, max_runs)
    store = sweep_store(spec, out)
    store.lock.check_free()
    ids = plan.run_ids()
    work = len(store.completed(ids)) < len(ids) if store.has_results() else bool(ids)
    started = time.time()
    with contextlib.ExitStack() as stack:
        need_ray = RayOnDemand(spec, address, stack, shipping.study_paths(spec.study) if work else [])
        if work:  # before anything is written
            shipping.check_size(spec, need_ray.study_paths)
            need_ray.check_resources()
        store.lock.acquire()
        try:
            note_job(store)
            if spec.precision:
                result = execute_to_precision(spec, plan, store, max_in_flight, progress, started, need_ray)
            else:
                result = execute(spec, plan, store, max_in_flight, progress, started, prepare(store, spec, plan),
                                 need_ray)
            if report:
                write_reports(result, spec)
            check_infrastructure(result)
        finally:
            store.lock.release()
    return result


class RayOnDemand:
    """Ray, started when a run is first handed to the scheduler (a finished sweep, or a finished precision
    sweep replaying its rounds, never starts it) and stopped with the sweep."""

    def __init__(self, spec: Spec, address, stack: contextlib.ExitStack, study_paths: list):
        self.spec, self.address, self.stack, self.ready = spec, address, stack, False
        self.study_paths = study_paths  # the study's code for the workers (sweeper.execution.shipping)
        self.options: dict = {}         # what every task and actor of the sweep gets: the study's runtime_env

    def check_resources(self) -> None:
        """The spec's resources against the Ray this process runs in, this machine for a local Ray (not
        started for it), or the nodes of a cluster at an address (connected to for it)."""
        if ray.is_initialized():
            check_resources(self.spec, cluster_known=self.address is None)
        elif ray_address(self.address) == "local":
            check_resources(self.spec, cluster_known=True, nodes=[machine_resources()])
        else:
            self()
            check_resources(self.spec, cluster_known=False)

    def __call__(self) -> None:
        """Join or start Ray, and send the study's code to it (once for the sweep, every precision round)."""
        if not self.ready:
            self.stack.enter_context(ray_session(self.address))
            env = shipping.runtime_env(self.study_paths)
            self.options = {"runtime_env": env} if env else {}
            self.ready = True


def execute(spec: Spec, plan, store: SweepStore, max_in_flight, progress, started, plan_table, need_ray,
            first_round=True) -> SweepResult:
    """The runs still to do through the scheduler (`need_ray()` first), then the gather; the result is built
    from what the driver holds (spec, plan), not read back."""
    ids = plan.run_ids()
    store.adopt_legacy_results()
    done = store.completed(ids)
    todo = plan.take([i for i, rid in enumerate(ids) if rid not in done])  # its Runs made as they are submitted
    if done and first_round:
        log.info("resuming %s: %d of %d runs already done", store.root, len(done), len(ids))
    failure = None
    try:
        if todo:
            need_ray()
            how = spec.how.model_copy(update={"max_in_flight": max_in_flight or spec.how.max_in_flight})
            Scheduler(spec.study, how, store, todo, spec.name if progress else None, need_ray.options).run()
    except OSError as e:  # the sweep directory could not be written: the scheduler stopped at it
        failure = e
    finally:
        try:
            table = store.gather(ids)
            store.write_json(store.paths.provenance, provenance(spec.path, started))
        except OSError as e:
            failure = failure or e
    if failure is not None:
        raise output_failed(failure, store, ids)
    return SweepResult(store, table, study=spec.study, plan=plan_table, spec=spec.to_dict())


def output_failed(e: OSError, store: SweepStore, ids: list) -> OutputFailed:
    """The one line of a sweep stopped by a failed write: the path, the cause, what is saved, what to do."""
    saved = len(store.completed(ids))
    cause = (e.strerror or str(e)).lower()
    return OutputFailed(f"{cause} writing {e.filename or store.root} (the {saved} of {len(ids)} runs done are "
                        "saved; free space and run the same command again)")


def execute_to_precision(spec: Spec, plan, store: SweepStore, max_in_flight, progress, started,
                         need_ray) -> SweepResult:
    """Rounds of `execute`: spec.precision's first stage (min_repeats) of every configuration, then the total
    its SD fixes (sweeper.spec.precision: Stein's two-stage procedure). Each round's plan is the rows below
    their configuration's count, so a re-run replays the same rounds from the results it finds."""
    p = precision.target(spec.precision, spec.study.findings)
    _, config = np.unique(plan.point, return_inverse=True)  # plan order is point order
    counts = np.full(int(config.max()) + 1 if len(config) else 0, p["min_repeats"], dtype=np.int64)
    stages, repeat = precision.Stages(), plan.repeat()
    for round_ in itertools.count(1):
        this = plan.take(np.nonzero(repeat < counts[config])[0])
        result = execute(spec, this, store, max_in_flight, progress, started, prepare(store, spec, this), need_ray,
                         round_ == 1)
        units = _precision_units(result, p, spec)
        grown = precision.next_counts(counts, units, p, stages)
        if (grown == counts).all():
            break
        log.info("precision round %d: %d of %d configurations need more units of %s for +-%g; adding %d runs",
                 round_, int((grown > counts).sum()), len(counts), p["metric"], p["half_width"],
                 int(np.sum((repeat >= counts[config]) & (repeat < grown[config]))))
        counts = grown
    summary = precision.summary_rows(counts, units, p, stages)
    what = "configurations" if p.get("finding") is None else "comparisons"
    store.write_json(store.paths.precision, {**p, "rounds": round_, "configurations": summary})
    log.info("precision: %d of %d %s reached +-%g on %s in %d round(s)", sum(r["met"] for r in summary),
             len(summary), what, p["half_width"], p["metric"], round_)
    return result


def _precision_units(result: SweepResult, p: dict, spec: Spec) -> list:
    """This round's units of the precision rule: each configuration's interval of the metric, or each paired
    comparison of the targeted Finding (sweeper.spec.precision)."""
    if p["metric"] not in result.metrics and result.counts()["ok"]:
        raise SpecError(f"precision.metric {p['metric']} is not a metric of the study (it gives "
                        f"{', '.join(result.metrics) or 'none'})", where=spec.origins.get("precision.metric", spec.path),
                        key="precision.metric")
    if p["metric"] not in result.metrics:  # nothing ran ok: no interval to narrow
        return [{"key": c, "members": [c], "n": 0} for c in range(len(result.configurations()))]
    if p.get("finding") is None:
        return precision.config_units(result.configs(p["metric"], ci=p["ci"]).to_pylist(), p, result.axes)
    f = spec.study.findings[p["finding"]]
    index = {tuple(key_of(c["axes"][a]) for a in result.axes): i for i, c in enumerate(result.configurations())}
    config_of = lambda at: index[tuple(key_of(at[a]) for a in result.axes)]  # noqa: E731
    rows = [d for d in result.compare(f.metric, f.axis, f.baseline, ci=p["ci"], pair_by=f.pair_by)
            if all(key_of(d.at.get(k, v)) == key_of(v) for k, v in f.where.items())]
    unpaired = next((d for d in rows if not d.test.startswith("paired")), None)
    if unpaired is not None:
        raise SpecError(f"precision.finding {p['finding']}: its arms are not paired ({unpaired.test}); the rule "
                        "repeats paired differences (arms on shared datasets, or Finding(pair_by='repeat'))",
                        where=spec.origins.get("precision", spec.path), key="precision.finding")
    members = [[config_of({**d.at, f.axis: d.level}), config_of({**d.at, f.axis: f.baseline})] for d in rows]
    return precision.difference_units(rows, members, f.axis, p["ci"])


INFRASTRUCTURE = {  # Ray's errors that say the machinery failed, not the study, and their likely causes
    "OwnerDiedError": "the driver process that owned the data died, or the sweep joined a Ray cluster started "
                      "from another environment (run without --address and with RAY_ADDRESS unset: a local Ray)",
    "WorkerCrashedError": "the worker processes died (out of memory, a crash in native code, or a study that "
                          "kills its process); each run's run.log holds what it printed",
    "NodeDiedError": "the node the runs were on died or left the cluster",
    "LocalRayletDiedError": "this machine's Ray died (out of memory, or stopped by `ray stop`)",
    "ObjectLostError": "the data of the runs was lost with the node that held it",
    "ActorDiedError": "the warm actors died (out of memory, or a crash in native code)",
}


def check_infrastructure(result: SweepResult) -> None:
    """A SweepFailed when every run failed with one of Ray's infrastructure errors (the results are kept)."""
    counts, errors = result.counts(), result.errors()
    if counts["ok"] or not counts["failed"] or len(errors) != 1:
        return
    first = errors[0]["error"].splitlines()[0]
    name = first.split(":")[0].strip()
    if name in INFRASTRUCTURE:  # what killed the workers where the scheduler found it (crashes.cause), else why
        said = first if first.startswith(f"{name}: the worker died while fitting the run: ") else \
            f"{name}: {INFRASTRUCTURE[name]}"
        raise SweepFailed(f"all {counts['failed']} runs failed with {said} (the results are saved in {result.dir})")


def write_reports(result: SweepResult, spec: Spec) -> None:
    """The reports of `sweep run` (sweeper.report.build). The results are saved first: an unknown
    report.metric is then a SpecError naming the metrics that exist."""
    built = build_report(result, spec.study, spec_path=spec.path, **spec.report)
    if built.problem:
        raise SpecError(f"{built.problem} (the results are saved in {result.dir})",
                        where=spec.origins.get("report.metric", spec.path), key="report.metric")


def machine_resources() -> dict:
    """What a local Ray started on this machine would have, as Ray itself counts it (the cgroup's CPUs, the
    GPUs, the memory left beside the object store), found without starting Ray."""
    from ray._private.resource_and_label_spec import ResourceAndLabelSpec  # checked against Ray 2.60

    have = ResourceAndLabelSpec().resolve(is_head=True, node_ip_address="127.0.0.1").to_resource_dict()
    return {name: float(have.get(name, 0)) for name in ("CPU", "GPU", "memory")}


def check_resources(spec: Spec, cluster_known: bool, nodes: list | None = None) -> None:
    """A run (or simulate task) asking more CPUs, GPUs or memory than any node (`nodes`: each node's
    resources; default the live nodes of the Ray this process is connected to) has would wait for ever: say
    so before starting.

    On this machine or a cluster Ray was started for here (`cluster_known`), that is an error; on an
    existing cluster (`--address`), whose autoscaler may still add such a node, a warning.
    """
    if nodes is None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for prefix, asked, who in (("resources", spec.how.resources.asked(), "each run"),
                               ("resources.simulate", spec.how.simulate.asked(), "each simulate task")):
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
