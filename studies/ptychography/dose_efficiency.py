"""Dose efficiency: how much more dose one arm needs to reach the quality another reaches at a reference dose.

Quality curves are means over repeats at each dose, piecewise linear in log10(dose). The reference arm's
quality at `ref_dose` is the target; the test arm's dose is where its curve first reaches the target, going
up in dose. The ratio is that dose over `ref_dose` (> 1: the test arm needs more dose). Its interval is a
percentile bootstrap over repeats, one index draw shared by every dose and both arms (paired repeats).
"""
from __future__ import annotations

import numpy as np


def crossing_log_dose(log_doses: np.ndarray, curve: np.ndarray, target: float) -> float:
    """log10 dose where `curve` (over ascending log_doses) first reaches `target`; -inf if it already does
    at the lowest dose, +inf if it never does (the crossing lies outside the doses measured)."""
    if curve[0] >= target:
        return -np.inf
    for i in range(len(curve) - 1):
        lo, hi = curve[i], curve[i + 1]
        if lo < target <= hi:
            return float(log_doses[i] + (target - lo) / (hi - lo) * (log_doses[i + 1] - log_doses[i]))
    return np.inf


def ratio_of(log_doses, ref: np.ndarray, test: np.ndarray, log_ref_dose: float) -> float:
    """The dose ratio from mean curves (repeats along axis 1)."""
    target = float(np.interp(log_ref_dose, log_doses, ref.mean(axis=1)))
    return float(10.0 ** (crossing_log_dose(log_doses, test.mean(axis=1), target) - log_ref_dose))


def dose_efficiency(doses, ref, test, ref_dose: float = 1e4, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> dict:
    """The ratio, its bootstrap interval and what it rests on.

    doses: (D,) doses; ref, test: (D, R) quality of each arm at each dose and repeat (higher is better).
    Censored draws (the test arm never reaches the target, or already does at the lowest dose) count as
    +inf / 0 in the percentiles, so the interval says "beyond the doses measured" rather than guess.
    """
    order = np.argsort(doses)
    log_doses = np.log10(np.asarray(doses, dtype=float)[order])
    ref, test = np.asarray(ref, float)[order], np.asarray(test, float)[order]
    if ref.shape != test.shape or ref.ndim != 2 or ref.shape[0] != len(log_doses):
        raise ValueError(f"ref and test must be (doses, repeats) alike, got {ref.shape} and {test.shape}")
    point = ratio_of(log_doses, ref, test, np.log10(ref_dose))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, ref.shape[1], size=(n_boot, ref.shape[1]))
    boot = np.array([ratio_of(log_doses, ref[:, d], test[:, d], np.log10(ref_dose)) for d in draws])
    with np.errstate(invalid="ignore"):  # censored draws are +inf
        low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"ratio": point, "ci_low": float(low), "ci_high": float(high), "level": level,
            "n_repeats": int(ref.shape[1]), "n_doses": int(len(log_doses)), "n_boot": int(n_boot),
            "censored_fraction": float(np.mean((boot == 0) | np.isinf(boot))),
            "ref_dose": float(ref_dose), "doses_measured": [float(10 ** x) for x in log_doses]}
