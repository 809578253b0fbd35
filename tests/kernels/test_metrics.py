"""Metrics agree with scikit-image and behave as FRC and phase alignment should."""
import numpy as np
import pytest
import skimage.metrics as skm

from kernels import metrics


def images(seed, shape=(64, 64)):
    r = np.random.default_rng(seed)
    a = r.random(shape)
    return a, np.clip(a + 0.1 * r.standard_normal(shape), 0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_ssim_mse_match_scikit_image(seed):
    a, b = images(seed)
    assert metrics.mse(a, b) == pytest.approx(skm.mean_squared_error(a, b), rel=1e-10)
    assert metrics.mae(a, b) == pytest.approx(np.mean(np.abs(a - b)), rel=1e-10)
    assert metrics.psnr(a, b, data_range=1.0) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=1.0),
                                                               rel=1e-10)
    assert metrics.ssim(a, b, data_range=1.0) == pytest.approx(skm.structural_similarity(a, b, data_range=1.0),
                                                               rel=1e-7)
    rng = a.max() - a.min()
    assert metrics.psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=rng), rel=1e-10)


def test_metrics_ignore_uncovered_pixels():
    a, b = images(3)
    c = b.copy()
    c[:5] = np.nan
    assert metrics.mse(a, c) == pytest.approx(skm.mean_squared_error(a[5:], b[5:]))
    assert metrics.ssim(a, a, 1.0) == pytest.approx(1.0)


def test_frc_of_an_image_with_itself_is_one():
    a, _ = images(4, (64, 64))
    curve = metrics.frc(a, a)
    freq, corr = curve
    assert len(freq) == 33 and freq[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(corr, 1.0, atol=1e-12)
    assert metrics.frc_resolution(curve) == pytest.approx(0.5)


def test_frc_of_independent_noise_is_near_zero():
    r = np.random.default_rng(5)
    curve = metrics.frc(r.standard_normal((128, 128)), r.standard_normal((128, 128)), window=None)
    outer = slice(4, None)  # inner rings hold too few pixels to average out
    assert np.all(np.abs(curve.corr[outer]) < 4 / np.sqrt(curve.npix[outer]))
    assert abs(curve.corr[outer].mean()) < 0.02


def test_frc_resolution_falls_with_blur():
    import scipy.ndimage as ndi

    r = np.random.default_rng(6)
    truth = r.standard_normal((128, 128))
    res = []
    for sigma in (1.0, 2.5):
        a = ndi.gaussian_filter(truth, sigma) + 0.1 * r.standard_normal(truth.shape)
        b = ndi.gaussian_filter(truth, sigma) + 0.1 * r.standard_normal(truth.shape)
        res.append(metrics.frc_resolution(metrics.frc(a, b), "half-bit"))
    assert res[1] < res[0] < 0.5
    assert metrics.half_bit(np.array([1e8]))[0] == pytest.approx(0.2071 / 1.2071, rel=1e-3)


@pytest.mark.parametrize("noise_to_signal", [0.01, 0.1])
def test_frc50_against_the_truth_measures_a_known_gaussian_blur(noise_to_signal):
    """The truth: white noise; the reconstruction: it blurred by a Gaussian of SD sigma px, plus white noise of
    `noise_to_signal` times its power. Per ring FRC = G / sqrt(G^2 + r) with G = exp(-2 pi^2 sigma^2 k^2), so
    FRC50 falls at k = sqrt(ln(3 / r)) / (2 pi sigma): the resolution 1/k grows linearly with the blur, and
    the measured one lands within 10% of it."""
    r = np.random.default_rng(9)
    truth = r.standard_normal((256, 256))
    ky, kx = np.fft.fftfreq(256)[:, None], np.fft.fftfreq(256)[None, :]
    measured, analytic = [], []
    for sigma in (0.8, 1.2, 1.6, 2.4, 3.2):
        gain = np.exp(-2 * np.pi ** 2 * sigma ** 2 * (kx ** 2 + ky ** 2))
        blurred = np.fft.ifft2(np.fft.fft2(truth) * gain).real
        recon = blurred + np.sqrt(noise_to_signal) * r.standard_normal(truth.shape)
        measured.append(1 / metrics.frc_resolution(metrics.frc(truth, recon), 0.5))
        analytic.append(2 * np.pi * sigma / np.sqrt(np.log(3 / noise_to_signal)))
    assert all(b > a for a, b in zip(measured, measured[1:]))  # monotonic in the blur
    np.testing.assert_allclose(measured, analytic, rtol=0.10)


def test_the_window_keeps_a_cut_out_s_edges_from_holding_the_outer_rings_up():
    """A cut-out of a smooth image against a noisy copy: raw, the edges' high-frequency cross is common to both
    and the outer rings stay correlated (FRC50 reads the pixel limit); tapered, they fall off."""
    import scipy.ndimage as ndi

    r = np.random.default_rng(10)
    smooth = 10 * ndi.gaussian_filter(r.standard_normal((300, 300)), 3)[:100, :100]  # SD about 1
    noisy = smooth + 0.1 * r.standard_normal(smooth.shape)
    raw = metrics.frc_resolution(metrics.frc(smooth, noisy, window=None), 0.5)
    tapered = metrics.frc_resolution(metrics.frc(smooth, noisy), 0.5)
    assert raw == 0.5 and tapered < 0.25  # cycles/px: 2 px (the limit) raw, over 4 px tapered
    with pytest.raises(ValueError, match="hann"):
        metrics.frc(smooth, noisy, window="hamming")


def test_remove_phase_offset():
    a, _ = images(7)
    ref = a * np.exp(1j * a)
    off = ref * np.exp(1j * 2.3)
    np.testing.assert_allclose(metrics.remove_phase_offset(ref, off), ref, atol=1e-12)


def test_covered_box_cuts_a_nan_free_rectangle():
    img = np.ones((20, 30))
    img[:3] = np.nan
    img[:, -2:] = np.nan
    img[10, 0] = np.nan
    rs, cs = metrics.covered_box(img)
    assert np.isfinite(img[rs, cs]).all()
    assert img[rs, cs].size >= 15 * 27


def test_frc_resolution_is_finite_when_nothing_correlates():
    """A collapsed reconstruction (a flat image) or pure noise gives the coarsest ring, not -inf."""
    r = np.random.default_rng(8)
    a = r.random((64, 64))
    for b in (np.full((64, 64), 0.5), r.standard_normal((64, 64))):
        curve = metrics.frc(a - a.mean(), b - b.mean())
        f = metrics.frc_resolution(curve)
        assert np.isfinite(f) and 0 < f <= 0.5
