"""`sweep`: run, plan, status, report and config of a study spec."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import LockError, SpecError
from .values import override_text, run_command


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweep", description="Ray-distributed scientific parameter sweeps.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run or resume a sweep; prints the study directory")
    r.add_argument("spec")
    r.add_argument("overrides", nargs="*", help="key=value (dotted keys, YAML values); +key=value adds a key")
    r.add_argument("--out", default="outputs")
    r.add_argument("--address", default=None, help="Ray cluster address, e.g. auto")
    r.add_argument("--max-in-flight", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")
    pl = sub.add_parser("plan", help="the run table, without running anything")
    pl.add_argument("spec")
    pl.add_argument("overrides", nargs="*")
    st = sub.add_parser("status", help="ok / failed / pending counts of a study directory (or of every sweep of a "
                                       "study name)")
    st.add_argument("dir", type=Path)
    rp = sub.add_parser("report", help="the study's figures and the sweep summary: runs ranked by a metric, "
                                       "heatmap, lines, best configuration")
    rp.add_argument("dir")
    rp.add_argument("--metric", default=None, help="e.g. metrics.psnr (default: the spec's report.metric)")
    order = rp.add_mutually_exclusive_group()
    order.add_argument("--maximize", action="store_true", default=None, help="higher is better")
    order.add_argument("--minimize", dest="maximize", action="store_false", help="lower is better (default)")
    rp.add_argument("--axes", nargs=2, default=None, metavar=("X", "Y"), help="the heatmap's two sweep axes")
    rp.add_argument("--top", type=int, default=20, help="rows of the ranked table to print")
    c = sub.add_parser("config", help="the resolved spec; --origin says which file and line set each key")
    c.add_argument("spec")
    c.add_argument("overrides", nargs="*")
    c.add_argument("--origin", action="store_true")
    return p


def _cmd_run(a) -> int:
    from .driver import run

    res = run(a.spec, a.overrides, out=a.out, address=a.address, max_in_flight=a.max_in_flight,
              progress=not a.no_progress)
    print(outcome(res), file=sys.stderr)
    print(res.dir)
    return 0 if res.counts()["failed"] == 0 else 1


def outcome(result) -> str:
    """The counts, then each distinct error's line with how many runs it hit, and where the page is."""
    c = result.counts()
    lines = [f"{c['ok']} ok, {c['failed']} failed, {c['pending']} pending"]
    for e in result.errors():
        lines.append(f"  {e['n']} run(s) failed with: {e['error']}  (e.g. {result.sd.run_log_path(e['run_ids'][0])})")
    if result.sd.report_html.is_file():
        lines.append(f"report: {result.sd.report_html}")
    return "\n".join(lines)


def _cmd_plan(a) -> int:
    from .plan import expand
    from .report import text_table
    from .spec import load_spec

    plan = expand(load_spec(a.spec, a.overrides))
    axes = list(plan.runs[0].axes) if plan.runs else []
    head = ["run_id", "data_key", "repeat_data", "repeat_fit", *axes]
    rows = [[r.run_id, r.data_key, str(r.repeat_data), str(r.repeat_fit),
             *(override_text(r.axes[k]) for k in axes)] for r in plan.runs]
    print(text_table(head, rows))
    print(f"{len(plan.runs)} runs, {len(plan.data_keys)} datasets ({plan.spec.data_mode} data)")
    return 0


def _cmd_status(a) -> int:
    """Counts of a sweep; on a study-name directory (OUT/<name>), of every sweep inside."""
    from .results import load
    from .store import StudyDir

    inside = [] if StudyDir(a.dir).plan_path.is_file() else StudyDir.sweeps_in(a.dir)
    for sd in inside or [StudyDir.open(a.dir)]:
        res = load(sd.root)
        c = res.counts()
        print(f"{c['ok']} ok, {c['failed']} failed, {c['pending']} pending of {res.plan.num_rows} runs in {res.dir}"
              + (f"  ({res.spec.get('description')})" if inside and res.spec.get("description") else ""))
    return 0


def direction(a, spec_report: dict) -> tuple[str | None, bool]:
    """(metric, maximize): the flags win; the spec's direction holds only for the spec's own metric."""
    metric = a.metric or spec_report.get("metric")
    if a.maximize is not None:
        return metric, a.maximize
    same = lambda m: m and m.removeprefix("metrics.")  # noqa: E731
    if metric and a.metric and same(a.metric) != same(spec_report.get("metric")):
        raise SpecError(f"say --maximize or --minimize for {a.metric} (the spec's report direction is for "
                        f"{spec_report.get('metric') or 'no metric'})", key="--metric")
    return metric, bool(spec_report.get("maximize", False))


def _cmd_report(a) -> int:
    from .driver import draw_report
    from .html import render
    from .report import sweep_report
    from .results import load

    res = load(a.dir)
    spec_report = res.spec.get("report") or {}
    metric, maximize = direction(a, spec_report)
    axes = a.axes or ([x for x in spec_report.get("axes", []) if x in res.axes] if metric else None)
    try:
        rep = sweep_report(res, metric=metric, maximize=maximize, axes=axes)
    except ValueError as e:
        raise SpecError(str(e), where=str(res.dir), key="--metric" if "metric" in str(e) else "--axes") from None
    figures = draw_report(res.study if res.study is not None else _study_or_none(res), res) + rep.paths
    for p in [*figures, render(res, rep)]:
        print(p)
    print()
    print(rep.table_text(a.top))
    if rep.best:
        b = rep.best
        print(f"\nbest {b['metric']}: {b['mean']:.4g}, 95% CI [{b['ci_low']:.4g}, {b['ci_high']:.4g}], "
              f"n={b['n']}; to run it alone:")
        print("  " + run_command(res.sd.spec_path, b["overrides"]))
    return 0


def _study_or_none(res):
    """The study named in spec.yaml if it imports here; else None (a study defined in a script)."""
    from .study import resolve

    try:
        return resolve(res.spec.get("study"))
    except SpecError:
        logging.getLogger("sweeper").warning("study %s cannot be imported here; its own report is skipped",
                                             res.spec.get("study"))
        return None


def _cmd_config(a) -> int:
    from .spec import load_spec
    from .store import dump_yaml

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
                "config": _cmd_config}[a.command](a)
    except SpecError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    except LockError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("sweep: interrupted; finished runs are saved, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
