"""Parameter recovery: the confidence likelihood's integral, recovery near the truth, data modes, specs."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sweeper
from sweeper.spec.plan import expand
from sweeper.spec.resolved import load_spec
from studies.recovery import parameter_recovery as pr
from tests import REPO

SPECS = REPO / "studies" / "recovery" / "specs"


def test_rating_probabilities_match_monte_carlo():
    levels, crit = pr.stimulus_levels(0.25), [0.3, 0.6, 0.9]
    p = pr.rating_probabilities(0.1, 0.5, 0.2, levels, crit)
    assert p.shape == (9, 2, 4) and np.allclose(p.sum(axis=2), 1.0)
    rng = np.random.default_rng(0)
    for i in (0, 4, 7):
        dv = levels[i] + 0.1 + 0.5 * rng.standard_normal(200_000)
        k = np.searchsorted(crit, np.abs(dv) + 0.2 * rng.standard_normal(dv.size))
        for r in (0, 1):
            freq = np.bincount(k[(dv > 0) == r], minlength=4) / ((dv > 0) == r).sum()
            assert np.abs(freq - p[i, r]).max() < 0.012


@pytest.mark.parametrize("noise_meta", [0.005, 0.05, 0.5])
def test_confidence_integral_converges_for_small_and_large_noise(noise_meta):
    """The piecewise quadrature must not depend on the node count, even when Q_k(a) is nearly a step."""
    levels = pr.stimulus_levels(0.25)
    coarse = pr.rating_probabilities(-0.2, 0.3, noise_meta, levels, [0.3, 0.6, 0.9], nodes=24)
    fine = pr.rating_probabilities(-0.2, 0.3, noise_meta, levels, [0.3, 0.6, 0.9], nodes=400)
    assert np.abs(coarse - fine).max() < 1e-8


@pytest.mark.parametrize("truth", [(0.1, 0.5, 0.2), (-0.3, 0.3, 0.4)])
def test_recovery_on_a_large_dataset_lands_near_the_truth(truth):
    data = dict(zip(pr.PARAMS, truth), nsamples=20_000)
    m = pr.fit(pr.simulate(data, 11), {}, seed=5)["metrics"]
    assert m["converged"] == 1.0
    assert abs(m["bias_sens_error"]) < 0.02
    assert abs(m["noise_sens_error"]) < 0.02
    assert abs(m["noise_meta_error"]) < 0.06
    assert m["nll"] == pytest.approx(m["nll_type1"] + m["nll_meta"])


def test_fits_from_different_starts_agree_and_the_start_comes_from_the_seed():
    ds = pr.simulate({"nsamples": 500}, 3)
    a, b, a2 = pr.fit(ds, {}, 1)["metrics"], pr.fit(ds, {}, 2)["metrics"], pr.fit(ds, {}, 1)["metrics"]
    assert a == a2
    assert a["bias_sens_start"] != b["bias_sens_start"]
    assert a["bias_sens"] == pytest.approx(b["bias_sens"], abs=1e-5)


def test_declared_params_reject_what_the_model_cannot_take():
    import pydantic

    for data, fit in [({"stimuli_stepsize": 0.3}, {}), ({"nsamples": 0}, {}), ({"noise_sens": -1.0}, {}),
                      ({"confidence_criteria": [0.6, 0.3]}, {}), ({}, {"method": "sgd"}), ({"nope": 1}, {})]:
        with pytest.raises(pydantic.ValidationError):
            pr.DataParams.model_validate(data)
            pr.FitParams.model_validate(fit)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("mode,hashes", [("shared", 1), ("independent", 3)])
def test_shared_datasets_are_identical_by_hash_independent_differ(tmp_path, mode, hashes):
    res = sweeper.run({"study": "studies.recovery.parameter_recovery", "name": mode, "seed": 2,
                       "data": {"nsamples": 200}, "fit": {}, "data_mode": mode, "repeats": 3},
                      out=tmp_path, progress=False)
    t = res.table.to_pandas()
    assert len(t) == 3 and (t.status == "ok").all()
    assert t.data_sha256.nunique() == hashes
    assert len(list((res.dir / "datasets").glob("*.npz"))) == hashes
    # fits on one shared dataset differ only by their start: the spread is tiny
    if mode == "shared":
        assert t["metrics.bias_sens"].std() < 1e-4


@pytest.mark.parametrize("name,runs,datasets", [("parameter_recovery_shared", 100, 1),
                                                ("parameter_recovery_independent", 180, 180),
                                                ("parameter_recovery_crossed", 200, 20)])
def test_recovery_specs_plan_their_modes(name, runs, datasets):
    plan = expand(load_spec(SPECS / f"{name}.yaml"))
    assert len(plan.runs) == runs and len(plan.data_keys) == datasets


@pytest.mark.usefixtures("ray_session")
def test_crossed_cli_run_writes_the_report(tmp_path, capsys):
    from sweeper.cli import main

    rc = main(["run", str(SPECS / "parameter_recovery_crossed.yaml"), "sweep.data.nsamples=[300]",
               "repeats={data: 4, fit: 3}", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    root = Path(capsys.readouterr().out.strip().splitlines()[-1])
    figs = {p.name for p in (root / "figures").iterdir()}
    assert {"recovery_scatter.png", "recovery_summary.csv", "variance_decomposition.png"} <= figs
    summary = pd.read_csv(root / "figures" / "recovery_summary.csv")
    assert len(summary) == 2 * 3 and set(summary.parameter) == set(pr.PARAMS)
    assert (summary.datasets == 4).all() and (summary.n == 12).all()
    lbfgs = summary[summary["fit.method"] == "L-BFGS-B"]
    assert (lbfgs.var_fit < 1e-3 * lbfgs.var_data).all()  # fitting variance is far below data variance
