"""The dose-efficiency estimator on synthetic curves with a known ratio: the point estimate and a bootstrap
interval that covers it."""
import numpy as np
import pytest

from studies.ptychography.dose_efficiency import crossing_log_dose, dose_efficiency

DOSES = np.array([1e3, 1e4, 1e5, 1e6, 1e7, 1e9])


def curves(shift_decades, repeats, noise, seed):
    """Quality = 5 log10(dose) + noise; the test arm's curve is the reference's moved right by shift_decades:
    it needs 10**shift_decades times the dose for the same quality."""
    rng = np.random.default_rng(seed)
    x = np.log10(DOSES)[:, None]
    ref = 5 * x + noise * rng.standard_normal((len(DOSES), repeats))
    test = 5 * (x - shift_decades) + noise * rng.standard_normal((len(DOSES), repeats))
    return ref, test


def test_the_crossing_is_interpolated_in_log_dose():
    x = np.log10(DOSES)
    assert crossing_log_dose(x, 5 * x, 17.5) == pytest.approx(3.5)
    assert crossing_log_dose(x, 5 * x, 10.0) == -np.inf  # reached at the lowest dose already
    assert crossing_log_dose(x, 5 * x, 99.0) == np.inf   # never reached


def test_a_noiseless_known_ratio_is_recovered_exactly():
    ref, test = curves(np.log10(10.0), repeats=3, noise=0.0, seed=1)
    r = dose_efficiency(DOSES, ref, test, ref_dose=1e4, n_boot=200)
    assert r["ratio"] == pytest.approx(10.0) and r["ci_low"] == pytest.approx(10.0)
    assert r["ci_high"] == pytest.approx(10.0) and r["censored_fraction"] == 0


def test_the_interval_covers_the_true_ratio_in_most_noisy_studies():
    covered, widths = 0, []
    for seed in range(40):
        ref, test = curves(np.log10(10.0), repeats=5, noise=1.0, seed=seed)
        r = dose_efficiency(DOSES, ref, test, ref_dose=1e4, n_boot=400, seed=seed)
        covered += r["ci_low"] <= 10.0 <= r["ci_high"]
        widths.append(np.log10(r["ci_high"] / r["ci_low"]))
    assert covered >= 32  # nominal 95%; a percentile bootstrap of 5 repeats runs a little narrow
    assert 0.05 < np.median(widths) < 1.5  # a real interval, in decades


def test_equal_arms_give_a_ratio_near_one_and_an_interval_around_it():
    ref, test = curves(0.0, repeats=5, noise=0.5, seed=3)
    r = dose_efficiency(DOSES, ref, test, n_boot=400)
    assert 0.5 < r["ratio"] < 2 and r["ci_low"] < 1 < r["ci_high"]


def test_an_arm_that_never_reaches_the_target_is_censored_not_guessed():
    ref, test = curves(8.0, repeats=3, noise=0.0, seed=1)
    r = dose_efficiency(DOSES, ref, test, n_boot=100)
    assert r["ratio"] == np.inf and r["censored_fraction"] == 1.0


def test_the_dose_series_report_pairs_repeats_of_the_two_arms():
    pytest.importorskip("keras")
    from studies.ptychography.dose_series import efficiency, quality_matrix

    ref, test = curves(1.0, repeats=3, noise=0.0, seed=0)
    rows = [{"fit.model": "pinn", "fit.loss": loss, "data.nphotons": float(d), "repeat_data": r, "repeat_fit": 0,
             "metrics.ssim": float(m[i, r])}
            for loss, m in (("nll", ref), ("mae", test)) for i, d in enumerate(DOSES) for r in range(3)]
    rows = [r for r in rows if not (r["fit.loss"] == "mae" and r["repeat_data"] == 2 and r["data.nphotons"] == 1e5)]
    doses, mae = quality_matrix(rows, "pinn", "mae", "ssim")
    assert mae.shape == (6, 2)  # the repeat missing at one dose is left out everywhere
    eff = efficiency(rows, "ssim")
    assert eff["ratio"] == pytest.approx(10.0) and eff["n_repeats"] == 2 and eff["metric"] == "metrics.ssim"
