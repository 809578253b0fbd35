"""Report orchestration, the one place both `sweep run` and `sweep report` call: the study's figures (or every
metric against each axis), the generic sweep report when a metric is named, then report.html."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sweeper.report.findings import findings
from sweeper.report.page import render
from sweeper.report.sweep_report import SweepReport, metrics_by_axis, sweep_report

log = logging.getLogger("sweeper")


@dataclass
class Built:
    """What a report made: the figures and tables (study's first), the sweep report, report.html, and the
    problem with the asked metric or axes if there was one (the page is written anyway)."""

    figures: list
    sweep: SweepReport | None
    page: object
    problem: ValueError | None = None


def build_report(result, study, metric=None, maximize=False, axes=None, spec_path=None) -> Built:
    """Draw the study's report, the sweep report for `metric` (if any) and report.html."""
    result.figures = study_figures(study, result)
    sweep, problem = None, None
    if metric:
        try:
            sweep = sweep_report(result, metric=metric, maximize=maximize, axes=axes)
            result.figures += sweep.paths
        except ValueError as e:
            problem = e
    if sweep and sweep.best:
        b = sweep.best
        log.info("best by %s: %s: %s", b["metric"], b["interval"].words(), " ".join(b["overrides"]))
    words = stated_findings(result, study, metric if sweep else None, maximize)
    for line in words:
        log.info("finding: %s", line)
    return Built(result.figures, sweep, render(result, sweep, spec_path, words), problem)


def stated_findings(result, study, metric, maximize) -> list:
    """The findings in words; a failure is logged and never loses the report."""
    try:
        return findings(result, study, metric, maximize)
    except Exception:
        log.exception("the findings could not be computed; the rest of the report follows")
        return []


def study_figures(study, result) -> list:
    """The study's report(result, figures_dir), or every metric against each axis; a failing report is
    logged and never loses the sweep. `study`: a Study, or None when it cannot be imported here."""
    out = result.paths.figures
    out.mkdir(parents=True, exist_ok=True)
    try:
        if study is not None and study.report is not None:
            return list(study.report(result, out) or [])
        return metrics_by_axis(result, out)
    except Exception:
        log.exception("the report step failed; the results are saved in %s", result.dir)
        return []
