"""The unit of a comparison (sweeper.results.stats.difference): simulated crossed studies with a dataset
effect and fitting noise, where the truth is known."""
import math

import numpy as np
import pytest

from sweeper.results.stats import ONE_DATASET, difference

ALPHA, CI = 0.05, 0.95


def crossed_arms(rng, effect: float, shared_datasets: bool, datasets=30, fits=4, data_sd=1.0, fit_sd=0.3):
    """Records of two arms, `datasets` x `fits` each, independent fit seeds; the arm's datasets are the
    baseline's (a fit axis compared) or its own (a data axis compared)."""
    def arm(tag, shift, effects):
        return [{"data_key": f"{'' if shared_datasets else tag}{d}", "seed_fit": f"{tag}{d}.{f}", "repeat_data": d,
                 "repeat_fit": f, "m": effects[d] + shift + fit_sd * rng.standard_normal()}
                for d in range(datasets) for f in range(fits)]
    base_effects = data_sd * rng.standard_normal(datasets)
    arm_effects = base_effects if shared_datasets else data_sd * rng.standard_normal(datasets)
    return arm("b", 0.0, base_effects), arm("a", effect, arm_effects)


@pytest.mark.parametrize("shared_datasets", [False, True])
def test_no_difference_is_found_at_the_nominal_rate(shared_datasets):
    """200 crossed studies with no true difference: the false-positive rate stays inside the binomial band
    around alpha (runs as units would find the dataset effect 'significant' far more often)."""
    rng = np.random.default_rng(20261130)
    p = [difference(*crossed_arms(rng, 0.0, shared_datasets), "m", ["repeat_data", "repeat_fit"], CI)["p_value"]
         for _ in range(200)]
    band = 3 * math.sqrt(ALPHA * (1 - ALPHA) / 200)
    assert abs(np.mean(np.array(p) < ALPHA) - ALPHA) <= band


@pytest.mark.parametrize("shared_datasets", [False, True])
def test_a_planted_effect_is_covered(shared_datasets):
    rng = np.random.default_rng(7)
    rows = [difference(*crossed_arms(rng, 0.5, shared_datasets), "m", ["repeat_data", "repeat_fit"], CI)
            for _ in range(200)]
    assert np.mean([r["ci_low"] <= 0.5 <= r["ci_high"] for r in rows]) >= 0.90
    assert {r["ci_unit"] for r in rows} == {"datasets"} and {r["n"] for r in rows} <= {30, 60}


def test_arms_on_one_dataset_give_the_difference_and_the_fitting_spread_only():
    rng = np.random.default_rng(1)
    base, arm = crossed_arms(rng, 1e-10, True, datasets=1, fits=20)
    row = difference(base, arm, "m", ["repeat_data", "repeat_fit"], CI)
    assert row["ci_unit"] == ONE_DATASET and math.isnan(row["p_value"]) and math.isnan(row["ci_low"])
    assert row["fit_sd"] == pytest.approx(np.std([r["m"] for r in arm], ddof=1))
    paired = [{**r, "seed_fit": r["seed_fit"][1:]} for r in base], [{**r, "seed_fit": r["seed_fit"][1:]} for r in arm]
    row = difference(*paired, "m", ["repeat_data", "repeat_fit"], CI)  # shared seeds: paired, still one dataset
    assert row["ci_unit"] == ONE_DATASET and math.isnan(row["p_value"]) and row["n"] == 20


def test_holm_matches_its_definition():
    """Holm: the i-th smallest of m p values times (m - i), made monotone and capped at 1; NaN untouched."""
    from sweeper.results.stats import holm

    got = holm([0.01, 0.04, float("nan"), 0.03, 0.5])
    assert got[0] == pytest.approx(0.04) and got[3] == pytest.approx(0.09) and got[1] == pytest.approx(0.09)
    assert got[4] == pytest.approx(0.5) and math.isnan(got[2])
    assert holm([0.3, 0.4]) == [0.6, 0.6]
