"""report.html: the one page a scientist opens: the question, the best configuration, every configuration
with its CI, failed runs with links to their logs, the figures and the provenance (jinja2 template)."""
from __future__ import annotations

import math
from pathlib import Path

import jinja2

from sweeper.columns import run_command, to_rows
from sweeper.report.figures import fmt
from sweeper.report.provenance import versions
from sweeper.results.stats import ONE_DATASET, interval_words
from sweeper.store.atomic import write_text

SHOWN_METRICS = 6


def _cell(row, name) -> str:
    mean, low, high = (row.get(f"{name}_{s}") for s in ("mean", "ci_low", "ci_high"))
    nan = f" ({row[f'{name}_nan']} NaN left out)" if row.get(f"{name}_nan") else ""
    if row["n"] == 0 or mean is None or not math.isfinite(mean):
        return "–" + nan
    if row.get("ci_unit") == ONE_DATASET:
        return f"{fmt(mean)} (fitting SD {fmt(row.get(f'{name}_sd'))})" + nan
    ci = f" [{fmt(low)}, {fmt(high)}]" if low is not None and math.isfinite(low) else ""
    return fmt(mean) + ci + nan


def _provenance(result) -> list:
    info = result.store.read_json(result.paths.provenance)
    hosts = sorted({str(h).split("@")[-1] for h in result.table.column("node").to_pylist() if h}) \
        if "node" in result.table.column_names else []
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
    configs = report.configs if report else to_rows(result.configs())
    names = [m.removeprefix("metrics.") for m in result.metrics]
    if metric:
        names = [metric.removeprefix("metrics."), *[n for n in names if f"metrics.{n}" != metric]]
    best = report.best if report else None
    files = _figures(paths)
    errors = [{**e, "logs": [paths.relative(paths.run_log(r)) for r in e["run_ids"][:5]]} for e in result.errors()]
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
        any_clustered=any(r.get("ci_unit") == "datasets" for r in configs),
        any_one_dataset=any(r.get("ci_unit") == ONE_DATASET for r in configs),
        best_text=interval_words(best["mean"], best["sd"], best["ci_low"], best["ci_high"], best["n"],
                                 best["n_datasets"], best["ci_unit"], best["ci"]) if best else None,
        summary_csv=paths.relative(paths.sweep_figures / "summary.csv")
        if (paths.sweep_figures / "summary.csv").is_file() else None, errors=errors,
        figures=[paths.relative(p) for p in files if p.suffix == ".png"],
        tables=[paths.relative(p) for p in files if p.suffix == ".csv"],
        provenance=_provenance(result), spec_text=result.store.read_spec_text(), fmt=fmt, cell=_cell,
        precision=result.store.read_json(paths.precision) if paths.precision.is_file() else None,
        findings=list(findings))
    write_text(paths.report_html, page)
    return paths.report_html


def _figures(paths) -> list:
    """The study's figures first, then the generic sweep report's."""
    own = sorted(p for p in paths.figures.glob("*") if p.is_file()) if paths.figures.is_dir() else []
    sweep = sorted(p for p in paths.sweep_figures.glob("*") if p.is_file()) if paths.sweep_figures.is_dir() else []
    return own + sweep
