"""`sweep`: run, plan, status, report and config of a study spec."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import LockError, SpecError


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
    st = sub.add_parser("status", help="ok / failed / pending counts of a study directory")
    st.add_argument("dir")
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


def _study_root(path) -> Path:
    root = Path(path)
    if not (root / "plan.parquet").is_file():
        raise SpecError("not a study directory (no plan.parquet)", where=str(root))
    return root


def _cmd_run(a) -> int:
    from .driver import run

    res = run(a.spec, a.overrides, out=a.out, address=a.address, max_in_flight=a.max_in_flight,
              progress=not a.no_progress)
    c = res.counts()
    print(f"{c['ok']} ok, {c['failed']} failed, {c['pending']} pending", file=sys.stderr)
    print(res.dir)
    return 0 if c["failed"] == 0 else 1


def _cmd_plan(a) -> int:
    from .plan import expand
    from .spec import load_spec

    from .report import text_table

    plan = expand(load_spec(a.spec, a.overrides))
    axes = list(plan.runs[0].axes) if plan.runs else []
    head = ["run_id", "data_key", "repeat_data", "repeat_fit", *axes]
    rows = [[r.run_id, r.data_key, str(r.repeat_data), str(r.repeat_fit), *(str(r.axes[k]) for k in axes)]
            for r in plan.runs]
    print(text_table(head, rows))
    print(f"{len(plan.runs)} runs, {len(plan.data_keys)} datasets ({plan.spec.data_mode} data)")
    return 0


def _cmd_status(a) -> int:
    import pyarrow.parquet as pq

    from .store import StudyDir

    root = _study_root(a.dir)
    ids = pq.read_table(root / "plan.parquet").column("run_id").to_pylist()
    sd = StudyDir(root)
    status = [(sd.read_result(i) or {}).get("status", "pending") for i in ids]
    print(f"{status.count('ok')} ok, {status.count('failed')} failed, {status.count('pending')} pending "
          f"of {len(ids)} runs in {root}")
    return 0


def _cmd_report(a) -> int:
    import yaml

    from .driver import draw_report, load_results
    from .report import sweep_report
    from .store import StudyDir

    root = _study_root(a.dir)
    spec = yaml.safe_load((root / "spec.yaml").read_text())
    defaults = spec.get("report") or {}
    metric = a.metric or defaults.get("metric")
    maximize = a.maximize if a.maximize is not None else bool(defaults.get("maximize", False))
    table = load_results(root)
    try:
        rep = sweep_report(root, metric=metric, maximize=maximize, axes=a.axes or defaults.get("axes"),
                           results=table)
    except ValueError as e:
        raise SpecError(str(e), where=str(root), key="--metric" if "column" in str(e) else "--axes") from None
    for p in draw_report(spec["study"], table, StudyDir(root)) + rep.paths:
        print(p)
    print()
    print(rep.table_text(a.top))
    if rep.best:
        b = rep.best
        print(f"\nbest {b['metric']}: {b['mean']:.4g} +- {b['std']:.2g} over {b['n']} run(s); to run it alone:")
        print(f"  sweep run {root / 'spec.yaml'} " + " ".join(b["overrides"]))
    return 0


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
