"""`sweep`: run, plan, status, report and config of a study spec."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sweeper.columns import override_text, run_command
from sweeper.errors import ClusterError, LockError, SpecError, SweepFailed

MAX_RUNS_HELP = "refuse a plan of more runs than this (default 1,000,000: a bigger grid is likely a typo)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweep", description="Ray-distributed scientific parameter sweeps.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run or resume a sweep; prints the sweep directory")
    r.add_argument("spec")
    r.add_argument("overrides", nargs="*", help="key=value (dotted keys, YAML values); +key=value adds a key")
    r.add_argument("--out", default="outputs")
    r.add_argument("--address", default=None, help="Ray cluster address, e.g. auto")
    r.add_argument("--max-in-flight", type=int, default=None,
                   help="Ray tasks in flight at once (a task holds one run, or several cheap runs of one dataset); "
                        "default max(64, 16 x CPUs)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--no-report", action="store_true", help="no figures or report.html at the end (`sweep report` "
                   "makes them later)")
    r.add_argument("--max-runs", type=int, default=None, help=MAX_RUNS_HELP)
    pl = sub.add_parser("plan", help="the run table (a summary past 50 runs), without running anything")
    pl.add_argument("spec")
    pl.add_argument("overrides", nargs="*")
    pl.add_argument("--max-runs", type=int, default=None, help=MAX_RUNS_HELP)
    pl.add_argument("--all", action="store_true", help="every row, however many")
    st = sub.add_parser("status", help="ok / failed / pending counts of a sweep directory (or of every sweep of a "
                                       "study name)")
    st.add_argument("dir", type=Path)
    rp = sub.add_parser("report", help="the study's figures and the sweep summary: runs ranked by a metric, "
                                       "heatmap, lines, best configuration")
    rp.add_argument("dir")
    rp.add_argument("--metric", default=None, help="e.g. metrics.psnr (default: the spec's report.metric)")
    order = rp.add_mutually_exclusive_group()
    order.add_argument("--maximize", action="store_true", default=None, help="higher is better")
    order.add_argument("--minimize", dest="maximize", action="store_false", help="lower is better (default)")
    order.add_argument("--direction", choices=["none"], default=None,
                       help="none: no better direction (a recovered parameter): rank nothing, show the table")
    rp.add_argument("--axes", nargs=2, default=None, metavar=("X", "Y"), help="the heatmap's two sweep axes")
    rp.add_argument("--top", type=int, default=20, help="rows of the ranked table to print")
    _slurm_parser(sub)
    sp = sub.add_parser("stop", help="ask the sweep(s) running from a sweep directory on this node to save what "
                                     "finished and stop (SIGUSR1, as before a SLURM time limit)")
    sp.add_argument("dir", type=Path, help="a sweep directory, or OUT/<name> for every sweep of that study")
    c = sub.add_parser("config", help="the resolved spec; --origin says which file and line set each key")
    c.add_argument("spec")
    c.add_argument("overrides", nargs="*")
    c.add_argument("--origin", action="store_true")
    return p


def _slurm_parser(sub) -> None:
    s = sub.add_parser("slurm", help="write an sbatch script that runs the sweep on a SLURM allocation (Ray "
                                     "across its nodes); --submit also submits it")
    s.add_argument("spec")
    s.add_argument("overrides", nargs="*", help="key=value, as for `sweep run`")
    s.add_argument("--out", default="outputs")
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("--gpus-per-node", type=int, default=None)
    s.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per node for Ray (default: all)")
    s.add_argument("--mem", default=None, help="memory per node, e.g. 64G")
    s.add_argument("--time", default=None, help="time limit, e.g. 1:30:00 or 2-00:00:00")
    s.add_argument("--partition", default=None)
    s.add_argument("--account", default=None)
    s.add_argument("--setup", default=None, help='a shell line that activates the environment on the nodes, '
                                                  'e.g. "module load python; source ~/venv/bin/activate"')
    s.add_argument("--warn", dest="warn_s", type=int, default=None,
                   help="seconds before the time limit to save and stop (default 300, or a tenth of a short limit)")
    s.add_argument("--classic", action="store_true", help="ray start --head / srun ray start (Ray < 2.49) "
                                                          "instead of ray symmetric-run")
    s.add_argument("--port", type=int, default=6379, help="the Ray head's port")
    s.add_argument("--submit", action="store_true", help="run sbatch and print the job id")
    s.add_argument("--max-runs", type=int, default=None, help=MAX_RUNS_HELP)


def _cmd_slurm(a) -> int:
    from sweeper.execution.slurm import SlurmOptions, submit, write_job

    fields = {f: getattr(a, f) for f in SlurmOptions.__dataclass_fields__}
    store = write_job(a.spec, a.overrides, a.out, SlurmOptions(**fields), a.max_runs)
    print(store.paths.sbatch)
    if a.submit:
        job_id = submit(store)
        print(f"submitted job {job_id}; its output: {store.paths.slurm_logs(job_id)[0]}; "
              f"`sweep status {store.root}` shows its state", file=sys.stderr)
        print(job_id)
    else:
        print(f"submit with: sbatch {store.paths.sbatch}", file=sys.stderr)
    return 0


def _cmd_stop(a) -> int:
    """SIGUSR1 to every live driver on this node of a sweep directory (or of every sweep of a study name)."""
    import os
    import signal
    import socket

    from sweeper.store.lock import DirLock
    from sweeper.store.paths import SweepPaths

    sweeps = [SweepPaths(a.dir)] if SweepPaths(a.dir).lock.exists() else SweepPaths.sweeps_in(a.dir)
    asked = 0
    for paths in sweeps:
        holder = DirLock(paths.lock).holder()
        if holder is None or holder.get("host") != socket.gethostname():
            continue
        os.kill(int(holder["pid"]), signal.SIGUSR1)
        print(f"asked the sweep in {paths.root} (pid {holder['pid']}) to save and stop")
        asked += 1
    if not asked:
        print(f"no sweep is running from {a.dir} on this node", file=sys.stderr)
    return 0 if asked else 1


def _stop_on_signals() -> None:
    """SIGTERM (scancel) and SIGUSR1 (`sweep stop`, a SLURM time-limit warning) stop like Ctrl-C: runs that
    finished are saved, the lock is released, the exit status is 128 + the signal."""
    import signal

    from sweeper.errors import Stopped

    def stop(signum, frame):
        raise Stopped(signum)

    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, stop)


def _cmd_run(a) -> int:
    from sweeper.spec.resolved import load_spec
    from sweeper.store.prepare import sweep_store

    spec = load_spec(a.spec, a.overrides)
    sweep_store(spec, a.out).lock.check_free()  # a second driver is refused before Ray is even imported
    from sweeper.driver import run

    _stop_on_signals()
    res = run(spec, out=a.out, address=a.address, max_in_flight=a.max_in_flight,
              progress=not a.no_progress, report=not a.no_report, max_runs=a.max_runs)
    print(outcome(res), file=sys.stderr)
    print(res.dir)
    return 0 if res.counts()["failed"] == 0 else 1


def outcome(result) -> str:
    """The counts, then each distinct error's line with how many runs it hit, and where the page is."""
    c = result.counts()
    lines = [f"{c['ok']} ok, {c['failed']} failed, {c['pending']} pending"]
    for e in result.errors():
        lines.append(f"  {e['n']} run(s) failed with: {e['error']}  (e.g. {result.log_path(e['run_ids'][0])})")
    if result.paths.report_html.is_file():
        lines.append(f"report: {result.paths.report_html}")
    return "\n".join(lines)


def _cmd_plan(a) -> int:
    from sweeper.report.sweep_report import text_table
    from sweeper.spec.plan import expand
    from sweeper.spec.resolved import load_spec

    plan = expand(load_spec(a.spec, a.overrides), a.max_runs)
    n, axes = len(plan), list(plan.axes)
    head = ["run_id", "data_key", "repeat_data", "repeat_fit", *axes]

    def rows(at) -> list:
        ids, keys = plan.run_id.take(at).to_pylist(), plan.data_key.take(at).to_pylist()
        values = [[override_text(v) for v in plan.axis_values(k, at)] for k in axes]
        return [[ids[j], keys[j], str(plan.repeat_data[i]), str(plan.repeat_fit[i]), *(v[j] for v in values)]
                for j, i in enumerate(at)]

    if a.all or n <= 50:
        print(text_table(head, rows(list(range(n)))))
    else:
        for k in axes:
            values = plan.axes[k][0]  # distinct: equal values on one axis are refused when the spec loads
            print(f"{k}: {len(values)} values ({override_text(values[0])} ... {override_text(values[-1])})")
        print(f"\nfirst 5 and last 5 of {n} runs (--all for every row):")
        print(text_table(head, rows(list(range(5))) + [["..."] * len(head)] + rows(list(range(n - 5, n)))))
    print(f"{n} runs, {len(plan.data_keys)} datasets ({plan.spec.data_mode} data)")
    p = plan.spec.precision
    if p:
        print(f"precision: these are the most runs it may use; it runs {p['min_repeats']} repeats of each "
              f"configuration first, then more only where the {p['ci']:.0%} interval of {p['metric']} is wider "
              f"than +-{p['half_width']:g} (up to {p['max_repeats']})")
    return 0


def _cmd_status(a) -> int:
    """Counts of a sweep; on a study-name directory (OUT/<name>), of every sweep inside."""
    from sweeper.results.sweep_result import load
    from sweeper.store.paths import SweepPaths

    inside = [] if SweepPaths(a.dir).is_sweep() else SweepPaths.sweeps_in(a.dir)
    for root in [p.root for p in inside] or [a.dir]:
        res = load(root)
        c = res.counts()
        print(f"{c['ok']} ok, {c['failed']} failed, {c['pending']} pending of {res.plan.num_rows} runs in {res.dir}"
              + (f"  ({res.spec.get('description')})" if inside and res.spec.get("description") else ""))
        _print_slurm_jobs(res)
    return 0


def _print_slurm_jobs(result) -> None:
    """The SLURM state of the jobs `sweep slurm --submit` launched for this sweep, newest last."""
    from sweeper.execution.slurm import job_states

    listed = result.slurm_jobs()
    if listed:
        states = job_states([j["job_id"] for j in listed])
        for j in listed:
            print(f"  SLURM job {j['job_id']} ({j['when']}): {states[j['job_id']]}")
        print(f"  its output: {result.paths.slurm_logs(listed[-1]['job_id'])[0]}")


def direction(a, spec_report: dict) -> tuple[str | None, bool | None]:
    """(metric, maximize): the flags win; the spec's direction holds only for the spec's own metric;
    maximize None: no better direction (--direction none)."""
    metric = a.metric or spec_report.get("metric")
    if getattr(a, "direction", None) == "none":
        return metric, None
    if a.maximize is not None:
        return metric, a.maximize
    same = lambda m: m and m.removeprefix("metrics.")  # noqa: E731
    if metric and a.metric and same(a.metric) != same(spec_report.get("metric")):
        raise SpecError(f"say --maximize or --minimize for {a.metric} (the spec's report direction is for "
                        f"{spec_report.get('metric') or 'no metric'})", key="--metric")
    maximize = spec_report.get("maximize", False)
    return metric, None if maximize is None else bool(maximize)


def _cmd_report(a) -> int:
    from sweeper.report.build import build_report
    from sweeper.report.sweep_report import sweep_report
    from sweeper.results.sweep_result import load

    res = load(a.dir)
    try:  # what was asked is checked before anything is drawn: one line each
        res.metric_names(a.metric) if a.metric else None
        res.check_axes(a.axes or [])
    except ValueError as e:
        raise SpecError(str(e), where=str(res.dir), key="--metric" if "metric" in str(e) else "--axes") from None
    spec_report = res.spec.get("report") or {}
    metric, maximize = direction(a, spec_report)
    axes = a.axes or ([x for x in spec_report.get("axes", []) if x in res.axes] if metric else None)
    built = build_report(res, res.study if res.study is not None else _study_or_none(res), metric, maximize, axes)
    if built.problem:
        e = built.problem
        raise SpecError(str(e), where=str(res.dir), key="--metric" if "metric" in str(e) else "--axes") from None
    rep = built.sweep or sweep_report(res, axes=axes)
    for p in [*built.figures, built.page]:
        print(p)
    print()
    print(rep.table_text(a.top))
    if rep.best:
        b = rep.best
        skipped = f" ({b['skipped']} configuration(s) without a value skipped)" if b["skipped"] else ""
        print(f"\nbest {b['metric']}: {b['interval'].words()}{skipped}; to run it alone:")
        print("  " + run_command(res.paths.spec, b["overrides"]))
    return 0


def _study_or_none(res):
    """The study named in spec.yaml if it imports here; else None (a study defined in a script)."""
    try:
        return res.find_study()
    except SpecError:
        logging.getLogger("sweeper").warning("study %s cannot be imported here; its own report is skipped",
                                             res.spec.get("study"))
        return None


def _cmd_config(a) -> int:
    from sweeper.spec.resolved import load_spec
    from sweeper.yaml_dialect import dump_yaml

    spec = load_spec(a.spec, a.overrides)
    print(dump_yaml(spec.to_dict()), end="")
    if a.origin:
        print("# where each key was set:")
        for k, v in sorted(spec.origins.items()):
            print(f"{k}: {v}")
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    a = _parser().parse_args(argv)
    try:
        return {"run": _cmd_run, "plan": _cmd_plan, "status": _cmd_status, "report": _cmd_report,
                "config": _cmd_config,
                "slurm": _cmd_slurm, "stop": _cmd_stop}[a.command](a)
    except (SpecError, ClusterError) as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    except LockError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 3
    except SweepFailed as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        print(f"sweep: {'interrupted' if signum == signal.SIGINT else 'stopped by ' + signal.Signals(signum).name}; "
              "finished runs are saved, run the same command again to resume", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
