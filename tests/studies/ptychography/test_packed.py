"""Packed runs (issue 23): several PINN runs trained as one JAX program give each run what its solo run gives,
within float tolerance. Runs only where Keras's backend is JAX (test_jax_backend.py runs it so on CI)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("packed training is the JAX backend's", allow_module_level=True)

from studies.ptychography import packed  # noqa: E402
from studies.ptychography import pipeline as P  # noqa: E402

pytestmark = pytest.mark.slow  # trains networks

DATA = {"N": 16, "object_size": 48, "n_lines": 12, "probe_radius": 4.0, "probe_defocus": 3.0, "n_train": 40,
        "test_step": 6.0, "nphotons": 1e6}
FIT = {"model": "pinn", "epochs": 4, "batch_size": 8, "width": 4, "depth": 2, "validation_fraction": 0.2,
       "save_model": False}


def solo_and_packed(gridsize, fits, data_seeds=(1, 2), fit_seeds=(11, 12)):
    datasets = [P.simulate({**DATA, "gridsize": gridsize}, s) for s in data_seeds]
    solo = [P.fit(d, f, s) for d, f, s in zip(datasets, fits, fit_seeds)]
    return solo, P.fit_packed(datasets, fits, list(fit_seeds))


def test_a_packed_run_equals_its_solo_run():
    """At gridsize 2 (offsets as a second input: the harder path; gridsize 1 is in the schedule test)."""
    fits = [{**FIT, "loss": "nll"}, {**FIT, "loss": "mae"}]  # the two losses of the dose study, in one program
    solo, pack = solo_and_packed(2, fits)
    for s, p in zip(solo, pack):
        # float32 training, the same ops in a different batching: agreement to ~1e-5 relative after 4 epochs;
        # a different seed, data or loss changes these by 1e-2 or more
        np.testing.assert_allclose(p["history"]["train_loss"], s["history"]["train_loss"], rtol=2e-4)
        np.testing.assert_allclose(p["history"]["val_loss"], s["history"]["val_loss"], rtol=2e-4)
        for m in ("psnr", "ssim", "mae"):
            assert p["metrics"][m] == pytest.approx(s["metrics"][m], rel=1e-3), m
        assert p["device"].endswith("(packed 2)") and "packed" not in s["device"]
    assert solo[0]["metrics"]["psnr"] != pytest.approx(solo[1]["metrics"]["psnr"], rel=1e-3)


def test_the_schedule_stops_each_run_on_its_own_and_keeps_its_best_epoch():
    fits = [{**FIT, "loss": "nll", "epochs": 6, "schedule": "plateau", "patience": 1, "learning_rate": 0.05}] * 2
    solo, pack = solo_and_packed(1, fits)
    assert [len(s["history"]["train_loss"]) for s in solo] == [4, 3]  # each run stopped on its own, early
    for s, p in zip(solo, pack):
        assert len(p["history"]["train_loss"]) == len(s["history"]["train_loss"])
        # at 50x the default learning rate (so that runs stop early) float reordering grows to ~2e-3
        np.testing.assert_allclose(p["history"]["val_loss"], s["history"]["val_loss"], rtol=5e-3)
        assert p["metrics"]["psnr"] == pytest.approx(s["metrics"]["psnr"], rel=5e-3)


def test_runs_pack_by_their_data_and_fit_but_not_their_loss():
    key = lambda data, fit: packed.pack_key({**DATA, **data}, {**FIT, **fit})  # noqa: E731
    assert key({}, {"loss": "nll"}) == key({}, {"loss": "mae", "mae_weight": 2.0})
    assert key({}, {}) != key({"nphotons": 1e4}, {}) and key({}, {}) != key({}, {"learning_rate": 0.01})
    assert key({}, {"model": "epie"}) is None
    with pytest.raises(ValueError, match="same probe, intensity scale"):
        packed.check_compatible([P.simulate(DATA, 1), P.simulate({**DATA, "nphotons": 1e4}, 1)])
