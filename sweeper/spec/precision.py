"""Precision-targeted repeats: run `min_repeats`, then add repeats only to the configurations whose interval of
`metric` is still wider than `half_width`, until each is tight enough or has `max_repeats`.

The repeats are ordinary plan rows (the plan is expanded to `max_repeats`; a round runs the rows whose repeat
is below its configuration's count), so run ids, resume and the results mean what they mean without it. The
repeat that grows is the data mode's unit: a dataset (independent, crossed) or a fit on the one dataset
(shared), and the interval is the one `SweepResult.configs` gives over that unit.
"""
from __future__ import annotations

import difflib
import math

import numpy as np
import pydantic

from sweeper.errors import SpecError

DEFAULT_MIN = 3


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


def half_width(sd: float, n: int, ci: float) -> float:
    """Half-width of the Student-t interval of a mean of n units with sample SD sd (inf when n < 2)."""
    if n < 2 or not math.isfinite(sd):
        return math.inf
    from scipy import stats

    return float(stats.t.ppf(0.5 + ci / 2, n - 1)) * sd / math.sqrt(n)


def units_needed(sd: float, n: int, target: float, ci: float, most: int) -> int:
    """The fewest units (>= n, <= most) whose t interval would be no wider than `target` at this SD: the
    formula n = (t_{n-1} sd / h)^2, solved for n since t depends on it."""
    if n >= 2 and math.isfinite(sd) and sd == 0:
        return n
    k = max(n, 2)
    while k < most and half_width(sd if math.isfinite(sd) else math.inf, k, ci) > target:
        k += 1
    return k


def _units(row: dict, name: str) -> tuple[int, float]:
    """(n, SD) of a configs row in its interval's unit: datasets where they are the unit, else runs."""
    sd = row.get(f"{name}_sd")
    return int(row["n_datasets"] if row["ci_unit"] == "datasets" else row["n"]), math.nan if sd is None else float(sd)


def next_counts(counts: np.ndarray, stats_rows: list, precision: dict) -> np.ndarray:
    """Each configuration's repeat count for the next round, from this round's `configs` rows (one per
    configuration, in plan order). A configuration grows by the units its interval still lacks at this SD (at
    least one), at most doubling in a round (an SD from a few units is rough: a high one would overshoot), never
    past max_repeats; failed runs count as missing units."""
    name = precision["metric"].removeprefix("metrics.")
    out = counts.copy()
    for c, row in enumerate(stats_rows):
        n, sd = _units(row, name)
        if n == 0 or counts[c] >= precision["max_repeats"] or half_width(sd, n, precision["ci"]) <= precision["half_width"]:
            continue  # nothing ran (no estimate to improve), at the cap, or tight enough
        if math.isfinite(sd):
            wanted = units_needed(sd, n, precision["half_width"], precision["ci"], precision["max_repeats"])
            lacking = min(wanted - n, n)
        else:  # one unit left (the rest failed): no SD yet, so make up min_repeats first
            lacking = precision["min_repeats"] - n
        out[c] = min(precision["max_repeats"], counts[c] + max(1, lacking))
    return out


def summary_rows(counts: np.ndarray, stats_rows: list, axes: list, precision: dict) -> list[dict]:
    """Per configuration: its axis values, the repeats it used, the half-width reached and whether it met the
    target (report.html and precision.json)."""
    name = precision["metric"].removeprefix("metrics.")
    rows = []
    for c, row in enumerate(stats_rows):
        n, sd = _units(row, name)
        reached = half_width(sd, n, precision["ci"])
        rows.append({**{a: row[a] for a in axes}, "repeats": int(counts[c]), "n_units": n,
                     "unit": row["ci_unit"], "mean": row.get(f"{name}_mean"),
                     "half_width": reached if math.isfinite(reached) else None,
                     "met": bool(reached <= precision["half_width"])})
    return rows
