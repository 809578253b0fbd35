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
    metric: str
    half_width: float = pydantic.Field(gt=0)
    max_repeats: int = pydantic.Field(ge=2)
    min_repeats: int = pydantic.Field(DEFAULT_MIN, ge=2)
    ci: float = pydantic.Field(0.95, gt=0, lt=1)

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
        raise SpecError("expected a mapping {metric, half_width, max_repeats, min_repeats}", where=where,
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
    if not p.metric.startswith("metrics."):
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


def _units(row: dict, name: str) -> tuple[int, float]:
    """(n, SD) of a configs row in its interval's unit: datasets where they are the unit, else runs."""
    sd = row.get(f"{name}_sd")
    return int(row["n_datasets"] if row["ci_unit"] == "datasets" else row["n"]), math.nan if sd is None else float(sd)


class Stages:
    """Each configuration's first stage once it is complete: its units (`first_n`, 0 while the first stage
    runs), their SD (`first_sd`) and the total it fixes (`total`)."""

    def __init__(self, configurations: int):
        self.first_n = np.zeros(configurations, dtype=np.int64)
        self.first_sd = np.full(configurations, math.nan)
        self.total = np.zeros(configurations, dtype=np.int64)

    def close_first(self, c: int, n: int, sd: float, precision: dict) -> None:
        self.first_n[c], self.first_sd[c] = n, sd
        self.total[c] = min(precision["max_repeats"], stein_total(sd, n, precision["half_width"], precision["ci"]))


def next_counts(counts: np.ndarray, stats_rows: list, precision: dict, stages: Stages) -> np.ndarray:
    """Each configuration's repeat count for the next round, from this round's `configs` rows (one per
    configuration, in plan order). While a first stage lacks two ok units it grows to make them up; once it
    has them its SD fixes the total (`stages`), and the count grows by the units still missing (failed ones
    made up) until the total is reached or the count is at max_repeats."""
    name = precision["metric"].removeprefix("metrics.")
    out = counts.copy()
    for c, row in enumerate(stats_rows):
        n, sd = _units(row, name)
        if n == 0 or counts[c] >= precision["max_repeats"]:
            continue  # nothing ran ok (no estimate to improve), or at the cap
        if stages.first_n[c] == 0:
            if n < 2 or not math.isfinite(sd):  # the first stage lost units: make them up first
                out[c] = min(precision["max_repeats"], counts[c] + max(1, precision["min_repeats"] - n))
                continue
            stages.close_first(c, n, sd, precision)
        if n < stages.total[c]:
            out[c] = min(precision["max_repeats"], counts[c] + stages.total[c] - n)
    return out


def summary_rows(counts: np.ndarray, stats_rows: list, axes: list, precision: dict, stages: Stages) -> list[dict]:
    """Per configuration: its axis values, the repeats it used, its first stage (units and SD), the two-stage
    half-width reached and whether it met the target (report.html, precision.json, `configs()`)."""
    name = precision["metric"].removeprefix("metrics.")
    rows = []
    for c, row in enumerate(stats_rows):
        n, _ = _units(row, name)
        reached = stein_half_width(stages.first_sd[c], int(stages.first_n[c]), n, precision["ci"])
        rows.append({**{a: row[a] for a in axes}, "repeats": int(counts[c]), "n_units": n,
                     "unit": row["ci_unit"], "mean": row.get(f"{name}_mean"),
                     "first_stage_units": int(stages.first_n[c]),
                     "first_stage_sd": float(stages.first_sd[c]) if math.isfinite(stages.first_sd[c]) else None,
                     "half_width": reached if math.isfinite(reached) else None,
                     "met": bool(reached <= precision["half_width"])})
    return rows
