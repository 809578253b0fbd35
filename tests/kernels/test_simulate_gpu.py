"""The ptychography simulate on CuPy (resources.simulate.num_gpus): the same object, probe, scan and scale as
on NumPy; Poisson counts drawn on the GPU that differ draw by draw but follow the same distribution."""
import numpy as np
import pytest

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

from kernels import diffraction  # noqa: E402
from studies.ptychography import pipeline as P  # noqa: E402

DATA = {"N": 32, "object_size": 128, "n_lines": 40, "probe_radius": 8.0, "probe_defocus": 3.0, "n_train": 2048,
        "test_step": 8.0, "nphotons": 1e5}


@pytest.fixture(scope="module")
def both():
    return P.simulate_on(DATA, 7, np), P.simulate_on(DATA, 7, cp)


def test_everything_but_the_noise_is_identical(both):
    cpu, gpu = both
    assert all(isinstance(v, (np.ndarray, np.generic)) for v in gpu.values())  # host arrays for the object store
    for k in ("object", "probe", "train_positions", "test_positions", "train_groups", "test_groups", "pad"):
        np.testing.assert_array_equal(gpu[k], cpu[k])
    np.testing.assert_allclose(gpu["train_patches"], cpu["train_patches"], atol=1e-5)
    assert gpu["scale"] == pytest.approx(cpu["scale"], rel=1e-5)
    assert not np.array_equal(gpu["train_amplitudes"], cpu["train_amplitudes"])  # separate draws


def test_gpu_and_cpu_counts_follow_the_same_poisson_law(both):
    cpu, gpu = both
    lam, _ = diffraction.expected_intensity(cpu["object"], cpu["probe"], cpu["train_positions"], DATA["nphotons"],
                                            scale=float(cpu["scale"]))
    bright = lam > 20
    for ds in (cpu, gpu):
        counts = ds["train_amplitudes"].astype(np.float64) ** 2
        z = (counts[bright] - lam[bright]) / np.sqrt(lam[bright])
        assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 0.02
    totals = [(ds["train_amplitudes"].astype(np.float64) ** 2).sum(axis=(1, 2)) for ds in (cpu, gpu)]
    se = np.sqrt(totals[0].var() / totals[0].size + totals[1].var() / totals[1].size)
    assert abs(totals[0].mean() - totals[1].mean()) < 4 * se
