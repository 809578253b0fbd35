"""CuPy results equal NumPy's (float32 tolerances) for every kernel."""
import numpy as np
import pytest

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

from kernels import diffraction, metrics, objects, probe, scan, stitch  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    r = np.random.default_rng(0)
    obj = objects.lines_object(128, 60, r, phase=0.5)
    p = probe.disk_probe(32, 8)
    pos = scan.random_positions(300, obj.shape, 32, r)
    return obj, p, pos


def test_extract_far_field_stitch_match(setup):
    obj, p, pos = setup
    g = diffraction.extract_patches(cp.asarray(obj), cp.asarray(pos), 32)
    c = diffraction.extract_patches(obj, pos, 32)
    np.testing.assert_allclose(cp.asnumpy(g), c, atol=1e-5)
    np.testing.assert_allclose(cp.asnumpy(diffraction.far_field(g, cp.asarray(p))),
                               diffraction.far_field(c, p), atol=1e-5)
    np.testing.assert_allclose(cp.asnumpy(stitch.stitch(g, cp.asarray(pos), obj.shape)),
                               stitch.stitch(c, pos, obj.shape), atol=1e-4)


def test_fused_exit_waves_match_the_numpy_composition(setup):
    from kernels import fused

    obj, p, pos = setup
    g = fused.exit_waves(cp.asarray(obj), cp.asarray(p), cp.asarray(pos))
    np.testing.assert_allclose(cp.asnumpy(g), diffraction.exit_waves(obj, p, pos), atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        fused.exit_waves(cp.asarray(obj), cp.asarray(p), cp.asarray([[5.0, 5.0]]))


def test_expected_intensity_and_simulate_match(setup):
    obj, p, pos = setup
    lg, sg = diffraction.expected_intensity(cp.asarray(obj), cp.asarray(p), cp.asarray(pos), 1e6)
    lc, sc = diffraction.expected_intensity(obj, p, pos, 1e6)
    assert sg == pytest.approx(sc, rel=1e-5)
    np.testing.assert_allclose(cp.asnumpy(lg), lc, rtol=1e-3, atol=1e-2)
    d = diffraction.simulate(cp.asarray(obj), cp.asarray(p), cp.asarray(pos), 1e6, np.random.default_rng(1))
    counts = cp.asnumpy(d.amplitudes).astype(np.float64) ** 2
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(1e6, rel=1e-3)


def test_metrics_match(setup):
    obj, _, _ = setup
    a = np.abs(obj)
    b = a + 0.05 * np.random.default_rng(2).standard_normal(a.shape)
    ga, gb = cp.asarray(a), cp.asarray(b)
    assert metrics.psnr(ga, gb, 1.0) == pytest.approx(metrics.psnr(a, b, 1.0), rel=1e-6)
    assert metrics.ssim(ga, gb, 1.0) == pytest.approx(metrics.ssim(a, b, 1.0), rel=1e-6)
    np.testing.assert_allclose(metrics.frc(ga, gb).corr, metrics.frc(a, b).corr, atol=1e-6)


def test_epie_runs_on_cupy_and_agrees_with_numpy():
    pytest.importorskip("keras")
    from studies.ptychography import pipeline as P

    d = P.simulate_on({"N": 32, "object_size": 96, "n_lines": 40, "probe_radius": 8.0, "probe_defocus": 3.0,
                       "n_train": 32, "test_step": 8.0, "nphotons": 1e6}, 1)
    f = P.FitParams.model_validate({"model": "epie", "epie_iterations": 30}).model_dump()
    on_cpu, on_gpu = P.epie_on(d, f, np), P.epie_on(d, f, cp)
    assert on_cpu["device"] == "numpy:cpu" and on_gpu["device"] == "cupy:gpu"
    assert on_gpu["metrics"]["psnr"] == pytest.approx(on_cpu["metrics"]["psnr"], abs=0.05)
    np.testing.assert_allclose(on_gpu["history"]["fourier_error"], on_cpu["history"]["fourier_error"], rtol=1e-3)
