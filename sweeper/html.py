"""report.html: the one page a scientist opens: the question, the best configuration, every configuration
with its CI, failed runs with links to their logs, the figures and the provenance (jinja2 template)."""
from __future__ import annotations

import math
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import jinja2

from .figures import fmt
from .files import write_text
from .values import run_command, to_rows

PACKAGES = ("sweeper", "numpy", "scipy", "pyarrow", "ray", "matplotlib", "keras", "tensorflow", "jax", "cupy")
SHOWN_METRICS = 6


def versions() -> dict:
    """Python and the installed versions of the packages a sweep's numbers may depend on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: Path) -> str | None:
    """The commit (with '+dirty' for local changes) of the repository holding `path`, if any."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cell(row, name) -> str:
    mean, low, high = (row.get(f"{name}_{s}") for s in ("mean", "ci_low", "ci_high"))
    if row["n"] == 0 or mean is None or not math.isfinite(mean):
        return "–"
    ci = f" [{fmt(low)}, {fmt(high)}]" if low is not None and math.isfinite(low) else ""
    return fmt(mean) + ci


def _provenance(result) -> list:
    info = result.sd.read_provenance()
    hosts = sorted({str(h).split("@")[-1] for h in result.table.column("node").to_pylist() if h}) \
        if "node" in result.table.column_names else []
    rows = [("started", info.get("started")), ("finished", info.get("finished")),
            ("wall time", f"{info['wall_s']:.1f} s" if "wall_s" in info else None),
            ("hosts", ", ".join(hosts) or None), ("git commit", info.get("git_commit")),
            ("spec file", info.get("spec_path")),
            ("versions", ", ".join(f"{k} {v}" for k, v in (info.get("versions") or versions()).items()))]
    return [(k, v) for k, v in rows if v]


def render(result, report=None, spec_path: str | None = None) -> Path:
    """Write report.html into the study directory and return its path; links are relative to it."""
    sd = result.sd
    metric = report.metric if report else None
    configs = report.configs if report else to_rows(result.configs())
    names = [m.removeprefix("metrics.") for m in result.metrics]
    if metric:
        names = [metric.removeprefix("metrics."), *[n for n in names if f"metrics.{n}" != metric]]
    best = report.best if report else None
    files = _figures(sd)
    errors = [{**e, "logs": [sd.relative(sd.run_log_path(r)) for r in e["run_ids"][:5]]} for e in result.errors()]
    env = jinja2.Environment(loader=jinja2.PackageLoader("sweeper", "templates"), autoescape=True)
    spec = result.spec
    page = env.get_template("report.html").render(
        name=spec.get("name", sd.root.parent.name), sweep_id=sd.root.name, study=spec.get("study"),
        directory=str(sd.root), description=spec.get("description"), counts=result.counts(),
        n_planned=result.plan.num_rows, n_configs=len(configs), data_mode=spec.get("data_mode", "shared"),
        seeds=spec.get("seeds", "paired"), best=best, metric=metric, axes=result.axes, configs=configs, ci=0.95,
        best_command=run_command(spec_path or sd.spec_path, best["overrides"]) if best else None,
        metric_names=names[:SHOWN_METRICS], hidden_metrics=max(len(names) - SHOWN_METRICS, 0),
        any_clustered=any(r.get("ci_unit") == "datasets" for r in configs),
        summary_csv=sd.relative(sd.sweep_figures / "summary.csv"), errors=errors,
        figures=[sd.relative(p) for p in files if p.suffix == ".png"],
        tables=[sd.relative(p) for p in files if p.suffix == ".csv"],
        provenance=_provenance(result), spec_text=sd.read_spec_text(), fmt=fmt, cell=_cell)
    write_text(sd.report_html, page)
    return sd.report_html


def _figures(sd) -> list:
    """The study's figures first, then the generic sweep report's."""
    own = sorted(p for p in sd.figures.glob("*") if p.is_file()) if sd.figures.is_dir() else []
    sweep = sorted(p for p in sd.sweep_figures.glob("*") if p.is_file()) if sd.sweep_figures.is_dir() else []
    return own + sweep
