"""Precision-targeted repeats by Stein's two-stage procedure: every configuration first runs `min_repeats`
units; their SD s0 (over the n1 of them that ran ok) fixes the total N = max(n1, ceil((t_{n1-1} s0 / h)^2)),
capped at `max_repeats`; the rest are run (failed units made up), and the interval reported is the mean of all
N units +- t_{n1-1} s0 / sqrt(N). For normal units (x_N - mu) sqrt(N) / s0 is exactly t with n1-1 degrees of
freedom whatever N, because N depends on s0 alone: the interval covers at its nominal rate and is no wider
than h. Stopping the first time an observed interval is narrow enough (the rule before) does not: it stops on
the low SDs and covered 0.91 at a nominal 0.95.

The repeats are ordinary plan rows (the plan is expanded to `max_repeats`; a round runs the rows whose repeat
is below its configuration's count), so run ids, resume and the results mean what they mean without it. The
repeat that grows is the data mode's unit: a dataset (independent, crossed) or a fit on the one dataset
(shared), and the units are those `SweepResult.configs` counts.
"""
from __future__ import annotations

import difflib
import json
import math

import numpy as np
import pydantic

from sweeper.errors import SpecError

# The first stage. Its SD sets the total, so the total over the oracle's (z sigma / h)^2 is on average
# (t_{n1-1} / z)^2: 2.0x at 5 units, 1.46x at 8, 1.33x at 10, 1.17x at 20. 10 keeps that cost a third and the
# SD's own error (its relative SE is about 1 / sqrt(2 (n1 - 1)) = 24%) moderate.
DEFAULT_MIN = 10


class Precision(pydantic.BaseModel):
    """The spec's `precision` section (and `sweeper.run(precision=...)`)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    metric: str | None = None
    finding: int | None = pydantic.Field(None, ge=0)  # a declared Finding (its index): its paired differences
    half_width: float = pydantic.Field(gt=0)
    max_repeats: int = pydantic.Field(ge=2)
    min_repeats: int = pydantic.Field(DEFAULT_MIN, ge=2)
    ci: float = pydantic.Field(0.95, gt=0, lt=1)

    @pydantic.model_validator(mode="after")
    def _one_target(self):
        if (self.metric is None) == (self.finding is None):
            raise ValueError("give either metric (each configuration's mean) or finding (a declared comparison)")
        return self

    @pydantic.model_validator(mode="after")
    def _ordered(self):
        if self.min_repeats > self.max_repeats:
            raise ValueError(f"min_repeats ({self.min_repeats}) is above max_repeats ({self.max_repeats})")
        return self


def parse(values: dict, origins: dict, path) -> dict:
    """The validated `precision` mapping ({} when the spec has none); a SpecError names the key."""
    given = values.get("precision")
    if not given:
        return {}
    where = origins.get("precision", path)
    if not isinstance(given, dict):
        raise SpecError("expected a mapping {metric or finding, half_width, max_repeats, min_repeats}", where=where,
                        key="precision")
    unknown = sorted(set(given) - set(Precision.model_fields))
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), list(Precision.model_fields), n=1)
        hint = f"did you mean precision.{near[0]}? " if near else ""
        raise SpecError(f"unknown key ({hint}expected {', '.join(Precision.model_fields)})",
                        where=origins.get(f"precision.{unknown[0]}", where), key=f"precision.{unknown[0]}")
    try:
        p = Precision.model_validate(given)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        key = ".".join(["precision", *map(str, err["loc"])]) if err["loc"] else "precision"
        raise SpecError(err["msg"], where=origins.get(key, where), key=key) from None
    if p.metric is not None and not p.metric.startswith("metrics."):
        raise SpecError(f"expected a metric name such as metrics.ssim, got {p.metric!r}",
                        where=origins.get("precision.metric", where), key="precision.metric")
    return p.model_dump()


def stein_total(sd: float, n1: int, target: float, ci: float) -> int:
    """Stein's total: the units whose two-stage interval t_{n1-1} sd / sqrt(N) is no wider than `target`."""
    if sd == 0:
        return n1
    from scipy import stats

    return max(n1, math.ceil((float(stats.t.ppf(0.5 + ci / 2, n1 - 1)) * sd / target) ** 2))


def stein_half_width(first_sd: float, first_n: int, n: int, ci: float) -> float:
    """The two-stage interval's half-width over `n` units, from the first stage's SD over `first_n` units."""
    if first_n < 2 or n < 1 or not math.isfinite(first_sd):
        return math.inf
    from scipy import stats

    return float(stats.t.ppf(0.5 + ci / 2, first_n - 1)) * first_sd / math.sqrt(n)


def config_units(stats_rows: list, precision: dict, axes: list = ()) -> list[dict]:
    """The units of the rule where it targets a metric: each configuration (a `configs` row, in plan order),
    its n and SD in its interval's unit (datasets where they are the unit, else runs)."""
    name = precision["metric"].removeprefix("metrics.")
    out = []
    for c, row in enumerate(stats_rows):
        sd = row.get(f"{name}_sd")
        out.append({"key": c, "members": [c], "n": int(row["n_datasets"] if row["ci_unit"] == "datasets" else row["n"]),
                    "sd": math.nan if sd is None else float(sd), "mean": row.get(f"{name}_mean"),
                    "unit": row["ci_unit"], "axes": {a: row[a] for a in axes}})
    return out


def difference_units(differences: list, members: list, axis: str, ci: float) -> list[dict]:
    """The units of the rule where it targets a finding: each paired comparison (a `compare` Difference), its
    pairs and the SD of their differences (from its t interval), and the two configurations it grows."""
    from scipy import stats

    out = []
    for d, both in zip(differences, members):
        t = float(stats.t.ppf(0.5 + ci / 2, d.n - 1)) if d.n > 1 else math.nan
        sd = (d.ci_high - d.ci_low) / 2 * math.sqrt(d.n) / t if d.n > 1 and math.isfinite(d.ci_high) else math.nan
        out.append({"key": (json.dumps(d.at, sort_keys=True, default=str), str(d.level)), "members": both,
                    "n": d.n, "sd": sd, "mean": d.diff, "unit": d.ci_unit, "axes": {**d.at, axis: d.level}})
    return out


class Stages:
    """Each unit's first stage once it is complete: its units (`first_n`; absent while the first stage runs),
    their SD (`first_sd`) and the total it fixes (`total`), by the unit's key."""

    def __init__(self):
        self.first_n: dict = {}
        self.first_sd: dict = {}
        self.total: dict = {}

    def close_first(self, key, n: int, sd: float, precision: dict) -> None:
        self.first_n[key], self.first_sd[key] = n, sd
        self.total[key] = min(precision["max_repeats"], stein_total(sd, n, precision["half_width"], precision["ci"]))


def next_counts(counts: np.ndarray, units: list, precision: dict, stages: Stages) -> np.ndarray:
    """Each configuration's repeat count for the next round, from this round's units (`config_units` or
    `difference_units`). While a unit's first stage lacks two ok units it grows to make them up; once it has
    them its SD fixes the total (`stages`), and its configurations grow by the units still missing (failed
    ones made up) until the total is reached or they are at max_repeats."""
    most = precision["max_repeats"]
    out = counts.copy()
    for u in units:
        at = min(int(counts[c]) for c in u["members"])
        if u["n"] == 0 or at >= most:
            continue  # nothing ran ok (no estimate to improve), or at the cap
        if u["key"] not in stages.first_n:
            if u["n"] < 2 or not math.isfinite(u["sd"]):  # the first stage lost units: make them up first
                lacking = max(1, precision["min_repeats"] - u["n"])
                for c in u["members"]:
                    out[c] = max(out[c], min(most, counts[c] + lacking))
                continue
            stages.close_first(u["key"], u["n"], u["sd"], precision)
        for c in u["members"]:
            if u["n"] < stages.total[u["key"]]:
                out[c] = max(out[c], min(most, counts[c] + stages.total[u["key"]] - u["n"]))
    return out


def summary_rows(counts: np.ndarray, units: list, precision: dict, stages: Stages) -> list[dict]:
    """Per unit: its axis values, the repeats it used, its first stage (units and SD), the two-stage
    half-width reached and whether it met the target (report.html, precision.json, `configs()`)."""
    rows = []
    for u in units:
        first_n, first_sd = stages.first_n.get(u["key"], 0), stages.first_sd.get(u["key"], math.nan)
        reached = stein_half_width(first_sd, first_n, u["n"], precision["ci"])
        rows.append({**u["axes"], "repeats": max(int(counts[c]) for c in u["members"]), "n_units": u["n"],
                     "unit": u["unit"], "mean": u["mean"], "first_stage_units": first_n,
                     "first_stage_sd": first_sd if math.isfinite(first_sd) else None,
                     "half_width": reached if math.isfinite(reached) else None,
                     "met": bool(reached <= precision["half_width"])})
    return rows


def target(p: dict, findings: tuple) -> dict:
    """`p` with what the rule repeats for: the metric (the targeted Finding's, with its axis and baseline)."""
    if p.get("finding") is None:
        return p
    f = findings[p["finding"]]
    return {**p, "metric": f.metric, "axis": f.axis, "baseline": f.baseline}


def check_finding(p: dict, findings: tuple, where) -> dict:
    """`p`, checked: the Finding it targets is declared and is a comparison (it has an axis)."""
    if not p or p.get("finding") is None:
        return p
    if p["finding"] >= len(findings):
        raise SpecError(f"the study declares {len(findings)} finding(s); finding is their index (0 to "
                        f"{len(findings) - 1})", where=where, key="precision.finding")
    f = findings[p["finding"]]
    if f.axis is None:
        raise SpecError(f"finding {p['finding']} ({f.metric}) is a mean, not a comparison: target it with "
                        "precision.metric", where=where, key="precision.finding")
    return p
