"""report.html: the one page a scientist opens: the question, the best configuration, every configuration
with its CI, failed runs with links to their logs, the figures and the provenance (jinja2 template)."""
from __future__ import annotations

import math
from pathlib import Path

import jinja2

from sweeper.columns import run_command
from sweeper.records import ONE_DATASET
from sweeper.report.figures import fmt
from sweeper.report.provenance import versions
from sweeper.store.atomic import write_text

SHOWN_METRICS = 6


def _cell(row, name) -> str:
    """A configuration's mean of a metric with its interval (or fitting SD), as a table cell."""
    s = row.stat(name)
    nan = f" ({s.n_nan} NaN left out)" if s.n_nan else ""
    nan += f" ({s.n_missing} run(s) lack it)" if s.n_missing else ""
    if row.n == 0 or s.mean is None or not math.isfinite(s.mean):
        return "–" + nan
    if s.unit == ONE_DATASET:
        return f"{fmt(s.mean)} (fitting SD {fmt(s.sd)})" + nan
    ci = f" [{fmt(s.low)}, {fmt(s.high)}]" if s.has_interval else ""
    split = f"; data {s.share_data:.0%} of the variance" if math.isfinite(s.share_data) else ""
    return fmt(s.mean) + ci + split + nan


def _provenance(result) -> list:
    info = result.provenance()
    nodes = result.table.column("node").to_pylist() if "node" in result.table.column_names else []
    hosts = sorted({str(h).split("@")[-1] for h in nodes if h})  # results.parquet has them: no record read
    rows = [("started", info.get("started")), ("finished", info.get("finished")),
            ("wall time", f"{info['wall_s']:.1f} s" if "wall_s" in info else None),
            ("hosts", ", ".join(hosts) or None), ("git commit", info.get("git_commit")),
            ("spec file", info.get("spec_path")),
            ("versions", ", ".join(f"{k} {v}" for k, v in (info.get("versions") or versions()).items()))]
    return [(k, v) for k, v in rows if v]


def render(result, report=None, spec_path: str | None = None, findings=()) -> Path:
    """Write report.html into the sweep directory and return its path; links are relative to it."""
    paths = result.paths
    metric = report.metric if report else None
    configs = report.configs if report else [(None, r) for r in result.configs()]
    names = [m.removeprefix("metrics.") for m in result.metrics]
    if metric:
        names = [metric.removeprefix("metrics."), *[n for n in names if f"metrics.{n}" != metric]]
    best = report.best if report else None
    files = _figures(paths)
    errors = [{**e, "logs": [paths.relative(result.log_path(r)) for r in e["run_ids"][:5]]} for e in result.errors()]
    env = jinja2.Environment(loader=jinja2.PackageLoader("sweeper.report", "templates"), autoescape=True)
    spec = result.spec
    page = env.get_template("report.html").render(
        name=spec.get("name", paths.root.parent.name), sweep_id=paths.root.name, study=spec.get("study"),
        directory=str(paths.root), description=spec.get("description"), counts=result.counts(),
        n_planned=result.plan.num_rows, n_configs=len(configs), data_mode=spec.get("data_mode", "shared"),
        seeds=spec.get("seeds", "paired"), best=best, axes=result.axes, configs=configs, ci=0.95,
        metric=metric if report is not None and report.maximize is not None else None,  # None: nothing ranked
        best_command=run_command(spec_path or paths.spec, best["overrides"]) if best else None,
        metric_names=names[:SHOWN_METRICS], hidden_metrics=max(len(names) - SHOWN_METRICS, 0),
        any_clustered=any(r.ci_unit == "datasets" for _, r in configs),
        any_one_dataset=any(r.ci_unit == ONE_DATASET for _, r in configs),
        best_text=best["interval"].words() if best else None,
        summary_csv=paths.relative(paths.sweep_figures / "summary.csv")
        if (paths.sweep_figures / "summary.csv").is_file() else None, errors=errors,
        figures=[paths.relative(p) for p in files if p.suffix == ".png"],
        tables=[paths.relative(p) for p in files if p.suffix == ".csv"],
        provenance=_provenance(result), spec_text=result.spec_text(), fmt=fmt, cell=_cell,
        precision=result.precision_rounds(),
        findings=list(findings))
    write_text(paths.report_html, page)
    return paths.report_html


def _figures(paths) -> list:
    """The study's figures first, then the generic sweep report's."""
    own = sorted(p for p in paths.figures.glob("*") if p.is_file()) if paths.figures.is_dir() else []
    sweep = sorted(p for p in paths.sweep_figures.glob("*") if p.is_file()) if paths.sweep_figures.is_dir() else []
    return own + sweep
