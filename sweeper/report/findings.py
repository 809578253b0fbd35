"""Findings in words: the sentences report.html opens with, each computed by the results API and stating its
n, interval and test. A study's declared comparisons (`Study.findings`) come first; without them, the best
configuration by the report's metric against the runner-up. The p values of the page are Holm-adjusted over
every test it states (several arms or doses are tested at once), and the page says so."""
from __future__ import annotations

import logging
import math

from sweeper.columns import key_of
from sweeper.records import ONE_DATASET, Difference
from sweeper.report.figures import fmt
from sweeper.results.stats import holm

log = logging.getLogger("sweeper")
UNITS = {"pairs": "pairs", "datasets": "datasets", "runs": "runs"}


def findings(result, study, metric=None, maximize=False, ci: float = 0.95) -> list[str]:
    """The sentences: the study's declared comparisons, else best against runner-up by `metric`."""
    rows = _declared(result, study, ci) if study is not None and study.findings else []
    if not rows and metric and maximize is not None:  # no better direction: no best to state
        rows = _best_against_runner_up(result, metric, maximize, ci)
    adjusted = holm([r.p_value if isinstance(r, Difference) else math.nan for _, r in rows])
    tests = sum(math.isfinite(q) for q in adjusted)
    return [_sentence(context, r, q, tests, ci) for (context, r), q in zip(rows, adjusted)]


def _declared(result, study, ci) -> list:
    """(context words, Difference or words of a mean) for every row of every declared finding that applies to
    this sweep; a finding that names what the sweep does not have is said in the log, never dropped silently."""
    out = []
    for f in study.findings:
        if not _applies(result, f):
            continue
        if f.axis is None:
            out += _means(result, f, ci)
            continue
        for r in result.compare(f.metric, f.axis, f.baseline, ci=ci, pair_by=f.pair_by):
            if any(k in r.at and key_of(r.at[k]) != key_of(v) for k, v in f.where.items()) or not math.isfinite(r.diff):
                continue
            context = ", ".join(f"{a} = {fmt(r.at[a])}" for a in result.axes if a != f.axis)
            what = f"{_name(f.metric)}, {f.axis} {fmt(r.level)} − {fmt(f.baseline)}"
            out.append((f"At {context}: {what}" if context else what, r))
    return out


def _applies(result, f) -> bool:
    """Whether a finding can be stated on this sweep. Its axis pinned (fit.loss=nll), its baseline not among the
    axis's one value (a zip that keeps fit.loss: [nll]), its `where` not what a pinned key holds: not here,
    quietly. A metric, axis, baseline or `where` key the sweep does not know at all: not here, and said."""
    if f.metric not in result.metrics:
        if result.counts()["ok"]:
            log.warning("finding on %s not stated: the results have no such metric (%s)", f.metric,
                        ", ".join(result.metrics) or "none")
        return False
    for key, value in f.where.items():
        if key not in result.axes and not _pinned_to(result, key, value):
            return False
    if f.axis is None:
        return True
    if f.axis not in result.axes:
        if _setting(result, f.axis) is _MISSING:
            log.warning("finding on %s not stated: %s is not a key of this sweep", f.metric, f.axis)
        return False
    if not result.has_level(f.axis, f.baseline):
        if len(result.levels(f.axis)) > 1:
            log.warning("finding on %s not stated: %r is not a value of %s (its values: %s)", f.metric, f.baseline,
                        f.axis, ", ".join(map(repr, result.levels(f.axis))))
        return False
    return True


_MISSING = object()


def _setting(result, key: str):
    """The value a pinned (not swept) dotted key holds in the spec, or _MISSING."""
    node = result.spec
    for part in key.split(".", 1):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _pinned_to(result, key: str, value) -> bool:
    held = _setting(result, key)
    if held is _MISSING:
        log.warning("finding `where` names %s, which is not a key of this sweep: not stated", key)
        return False
    return key_of(held) == key_of(value)


def _means(result, f, ci) -> list:
    """(context, words) per configuration of `f.by` (and the `where` axes, kept so that `where` selects rather
    than pools): the mean of the metric with its interval (no test)."""
    by = [a for a in (result.axes if f.by is None else f.by) if a in result.axes]
    by += [a for a in f.where if a in result.axes and a not in by]
    name, pooled = _name(f.metric), [a for a in result.axes if a not in by]
    out = []
    for c in result.configs(f.metric, ci, by=by):
        if not c.n or any(k in c.axes and key_of(c.axes[k]) != key_of(v) for k, v in f.where.items()):
            continue
        context = ", ".join(f"{a} = {fmt(c.axes[a])}" for a in by)
        over = f", averaged over {', '.join(pooled)}" if pooled else ""
        out.append((f"At {context}: " if context else "", f"{name} = {c.stat(f.metric).words()}{over}"))
    return out


def _best_against_runner_up(result, metric, maximize, ci) -> list:
    name = _name(metric)
    configs = [c for c in result.configs(metric, ci) if c.n and math.isfinite(c.stat(metric).mean)]
    if len(configs) < 2:
        return []
    configs.sort(key=lambda c: c.stat(metric).mean, reverse=maximize)
    best, second = (c.axes for c in configs[:2])
    differ = [a for a in result.axes if key_of(best[a]) != key_of(second[a])]
    words = [c.stat(metric).words() for c in configs[:2]]
    row = result.contrast(metric, best, second, ci)
    label = ", ".join(f"{a} = {fmt(best[a])}" for a in result.axes)
    other = ", ".join(f"{a} = {fmt(second[a])}" for a in differ)
    context = (f"{'Highest' if maximize else 'Lowest'} mean {name}: {label} ({words[0]}); the runner-up: {other} "
               f"({words[1]}); best − runner-up")
    return [(context, row)]


def _num(x: float, spec: str) -> str:
    return format(x, spec).replace("-", "−")


def _name(metric: str) -> str:
    return metric.removeprefix("metrics.")


def _sentence(context: str, r, q: float, tests: int, ci: float) -> str:
    """One finding: a Difference, its interval and unit, the test and its p (raw and Holm-adjusted); or a
    configuration's mean in words."""
    if isinstance(r, str):
        return f"{context}{r}."
    diff = _num(r.diff, "+.3g")
    if r.ci_unit == ONE_DATASET:
        spread = (f"fitting SD {fmt(r.fit_sd)} over {r.n} fits on one dataset" if r.n > 1
                  else "one fit each on one dataset")
        return f"{context} = {diff} ({spread}; no interval and no p: one dataset says nothing of other datasets)."
    if not math.isfinite(r.ci_low):
        n = "one run each" if r.n_value == r.n_baseline == 1 else f"n = {r.n}"
        return f"{context} = {diff} ({n}: no interval)."
    unit = UNITS.get(r.ci_unit, r.ci_unit)
    if r.ci_low == r.ci_high:
        return f"{context} = {diff} on each of the {r.n} {unit} (no spread, no test)."
    p = f"p = {r.p_value:.2g}" if math.isfinite(r.p_value) else "no p (no spread)"
    held = f", Holm-adjusted over {tests} tests p = {q:.2g}" if tests > 1 and math.isfinite(q) else ""
    return (f"{context} = {diff} [{_num(r.ci_low, '.2g')}, {_num(r.ci_high, '.2g')}] ({ci:.0%} CI; {r.test} over "
            f"{r.n} {unit}; {p}{held}).")
