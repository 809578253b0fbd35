"""Physics of the forward model: probe, objects, scans, extraction, far field, simulation, stitching."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import diffraction, objects, probe, scan, stitch
from kernels.shift import fourier_shift


def rng(seed=0):
    return np.random.default_rng(seed)


def test_disk_probe_is_normalised_disk():
    p = probe.disk_probe(64, 12, smooth=1.0)
    assert p.shape == (64, 64) and p.dtype == np.complex64
    assert np.sum(np.abs(p) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert abs(p[32, 32]) > 100 * abs(p[2, 2])  # bright centre, dark corners
    with pytest.raises(ValueError):
        probe.disk_probe(32, 20)


def test_lines_object_range_phase_and_seed(tmp_path):
    a = objects.lines_object(128, 50, rng(1))
    assert a.dtype == np.complex64 and np.all(a.imag == 0)
    assert np.abs(a).min() == pytest.approx(0.5) and np.abs(a).max() == pytest.approx(1.5)
    assert np.array_equal(a, objects.lines_object(128, 50, rng(1)))
    assert not np.array_equal(a, objects.lines_object(128, 50, rng(2)))
    b = objects.lines_object(128, 50, rng(1), phase=0.8)
    assert np.abs(np.angle(b)).max() == pytest.approx(0.8, rel=1e-3)
    assert np.allclose(np.abs(b), np.abs(a), atol=1e-6)
    np.savez(tmp_path / "o.npz", object=b)
    assert np.array_equal(objects.load_object(tmp_path / "o.npz"), b)
    np.savez(tmp_path / "bad.npz", other=b)
    with pytest.raises(KeyError, match="object"):
        objects.load_object(tmp_path / "bad.npz")


def test_positions_keep_patches_inside_and_follow_the_seed():
    pos = scan.random_positions(2000, (100, 120), 32, rng(3))
    assert pos.shape == (2000, 2)
    top = np.floor(pos) - 16
    assert top.min() >= 0 and (top[:, 0] + 32).max() < 100 and (top[:, 1] + 32).max() < 120
    assert np.array_equal(pos, scan.random_positions(2000, (100, 120), 32, rng(3)))
    assert not np.array_equal(pos, scan.random_positions(2000, (100, 120), 32, rng(4)))
    grid = scan.raster_positions((100, 100), 32, step=8)
    assert len(grid) == len(np.unique(grid, axis=0)) and np.floor(grid).min() - 16 >= 0
    with pytest.raises(ValueError, match="no room"):
        scan.random_positions(5, (20, 20), 32, rng())


def test_group_neighbors_draws_local_groups():
    pos = scan.random_positions(300, (200, 200), 32, rng(5))
    groups = scan.group_neighbors(pos, 2, 7, rng(6))
    assert groups.shape == (300, 4)
    assert np.array_equal(groups[:, 0], np.arange(300))
    assert all(len(set(g)) == 4 for g in groups)
    # every member is among the 7 nearest of its group's first point
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    seventh = np.sort(d, axis=1)[:, 6]
    assert np.all(d[np.arange(300)[:, None], groups] <= seventh[:, None] + 1e-9)
    assert np.array_equal(groups, scan.group_neighbors(pos, 2, 7, rng(6)))
    assert scan.group_neighbors(pos, 1, 7, rng(6)).shape == (300, 1)


def test_far_field_keeps_energy_parseval():
    obj = objects.lines_object(96, 30, rng(7), phase=1.0)
    p = probe.disk_probe(32, 8)
    patches = diffraction.extract_patches(obj, scan.random_positions(50, obj.shape, 32, rng(8)), 32)
    ff = diffraction.far_field(patches, p)
    assert ff.dtype == np.complex64
    e_in = np.sum(np.abs(p * patches) ** 2, axis=(1, 2))
    e_out = np.sum(np.abs(ff) ** 2, axis=(1, 2))
    np.testing.assert_allclose(e_out, e_in, rtol=1e-5)
    # the zero frequency sits at the centre after the shift
    flat = diffraction.far_field(np.ones((1, 32, 32), np.complex64), p)
    assert np.unravel_index(np.argmax(np.abs(flat[0])), (32, 32)) == (16, 16)


def test_integer_positions_are_exact_crops():
    obj = objects.lines_object(64, 20, rng(9), phase=0.5)
    patches = diffraction.extract_patches(obj, np.array([[20.0, 30.0], [16.0, 16.0]]), 16)
    assert np.array_equal(patches[0], obj[12:28, 22:38])
    assert np.array_equal(patches[1], obj[8:24, 8:24])


def test_subpixel_extraction_obeys_the_shift_theorem():
    # a plane wave periodic over the padded window is shifted exactly by the Fourier theorem
    N, pad = 16, 8
    m = N + 2 * pad
    ky, kx = 3 / m, 5 / m
    yy, xx = np.mgrid[0:80, 0:80]
    wave = np.exp(2j * np.pi * (ky * yy + kx * xx)).astype(np.complex64)
    pos = np.array([[40.3, 37.75], [30.5, 44.1]])
    patches = diffraction.extract_patches(wave, pos, N, pad=pad)
    for p, (r, c) in zip(patches, pos):
        i, j = np.mgrid[0:N, 0:N]
        expect = np.exp(2j * np.pi * (ky * (np.floor(r) - N // 2 + i + r % 1) + kx * (np.floor(c) - N // 2 + j + c % 1)))
        np.testing.assert_allclose(p, expect, atol=2e-5)
    # and a smooth blob is sampled where the sub-pixel centre says
    blob = np.exp(-((yy - 40.0) ** 2 + (xx - 40.0) ** 2) / (2 * 6.0**2)).astype(np.complex64)
    p = diffraction.extract_patches(blob, np.array([[40.4, 39.7]]), 32)[0]
    i, j = np.mgrid[0:32, 0:32]
    expect = np.exp(-((24 + i + 0.4 - 40) ** 2 + (23 + j + 0.7 - 40) ** 2) / (2 * 36.0))
    np.testing.assert_allclose(p.real, expect, atol=2e-3)


def test_fourier_shift_round_trip_and_real_input():
    r = rng(10)
    x = (r.standard_normal((3, 16, 16)) + 1j * r.standard_normal((3, 16, 16))).astype(np.complex64)
    s = rng(11).uniform(-2, 2, (3, 2))
    back = fourier_shift(fourier_shift(x, s), -s)
    np.testing.assert_allclose(back, x, atol=1e-4)
    # a real image with no Nyquist content stays real and comes back too
    yy, xx = np.mgrid[0:16, 0:16]
    smooth = np.cos(2 * np.pi * (2 * yy + 3 * xx) / 16)[None].astype(np.float32)
    back = fourier_shift(fourier_shift(smooth, s[:1]), -s[:1])
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, smooth, atol=1e-4)
    np.testing.assert_allclose(fourier_shift(smooth, np.array([[1.0, 0.0]]))[0], np.roll(smooth[0], -1, axis=0),
                               atol=1e-5)


def test_moving_the_probe_gives_the_intensity_of_moving_the_object():
    obj = objects.lines_object(128, 60, rng(12), phase=0.5)
    p = probe.disk_probe(32, 8)
    pos = scan.random_positions(64, obj.shape, 32, rng(13))
    lam, scale = diffraction.expected_intensity(obj, p, pos, 1e6)
    direct = np.abs(diffraction.far_field(diffraction.extract_patches(obj, pos, 32), p)) ** 2 * scale
    assert np.abs(lam - direct).sum() / direct.sum() < 1e-3


def test_expected_intensity_totals_equal_nphotons():
    obj = objects.lines_object(96, 30, rng(14))
    p = probe.disk_probe(32, 8)
    pos = scan.random_positions(200, obj.shape, 32, rng(15))
    lam, scale = diffraction.expected_intensity(obj, p, pos, 1e5)
    assert lam.sum(axis=(1, 2)).mean() == pytest.approx(1e5, rel=1e-4)
    again, s2 = diffraction.expected_intensity(obj, p, pos[:10], 1.0, scale=scale)
    assert s2 == scale and np.allclose(again, lam[:10], rtol=1e-5)


def test_simulated_counts_are_poisson():
    obj = objects.lines_object(96, 30, rng(16))
    p = probe.disk_probe(32, 8)
    one = scan.random_positions(1, obj.shape, 32, rng(17))
    pos = np.repeat(one, 3000, axis=0)  # 3000 draws of one pattern
    d = diffraction.simulate(obj, p, pos, 2e3, rng(18))
    assert d.amplitudes.dtype == np.float32 and d.amplitudes.shape == (3000, 32, 32)
    counts = d.amplitudes.astype(np.float64) ** 2
    assert np.allclose(counts, np.round(counts), atol=1e-3)  # amplitudes are sqrt of integers
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(2e3, rel=5e-3)
    lam, _ = diffraction.expected_intensity(obj, p, one, 2e3)
    bright = lam[0] > 5
    assert bright.sum() > 20
    np.testing.assert_allclose(counts.mean(0)[bright], lam[0][bright], rtol=0.1)
    ratio = counts.var(0)[bright] / counts.mean(0)[bright]
    assert ratio.mean() == pytest.approx(1.0, abs=0.05)


def test_simulation_seed_and_thread_count():
    obj = objects.lines_object(96, 30, rng(19))
    p = probe.disk_probe(32, 8)
    pos = scan.random_positions(700, obj.shape, 32, rng(20))  # several chunks
    a = diffraction.simulate(obj, p, pos, 1e4, rng(21), workers=1)
    b = diffraction.simulate(obj, p, pos, 1e4, rng(21), workers=2)
    c = diffraction.simulate(obj, p, pos, 1e4, rng(22), workers=2)
    assert np.array_equal(a.amplitudes, b.amplitudes) and a.scale == b.scale
    assert not np.array_equal(a.amplitudes, c.amplitudes)
    with pytest.raises(ValueError, match="nphotons"):
        diffraction.simulate(obj, p, pos, -1, rng())


def test_high_and_low_dose_amplitudes_scale_as_sqrt_of_photons():
    obj = objects.lines_object(96, 30, rng(23))
    p = probe.disk_probe(32, 8)
    pos = scan.random_positions(200, obj.shape, 32, rng(24))
    hi = diffraction.simulate(obj, p, pos, 1e9, rng(25)).amplitudes.mean()
    lo = diffraction.simulate(obj, p, pos, 1e4, rng(25)).amplitudes.mean()
    # sqrt(counts) is biased low at low dose (many zero pixels), so only the order is checked tightly
    assert 200 < hi / lo < 600


def test_stitch_recovers_the_object_where_covered():
    obj = objects.lines_object(128, 60, rng(26), blur=2.0, phase=0.5)
    pos = scan.random_positions(400, obj.shape, 32, rng(27))
    out = stitch.stitch(diffraction.extract_patches(obj, pos, 32), pos, obj.shape)
    covered = np.isfinite(out)
    assert 0.8 < covered.mean() < 1.0 and not covered[0, 0]
    err = np.abs(out[covered] - obj[covered])
    assert err.mean() < 5e-3 and err.max() < 0.1
    ipos = np.round(pos)
    exact = stitch.stitch(diffraction.extract_patches(obj, ipos, 32), ipos, obj.shape)
    m = np.isfinite(exact)
    np.testing.assert_allclose(exact[m], obj[m], atol=1e-5)


def test_stitch_weights_mark_uncovered_pixels():
    patches = np.ones((1, 16, 16), np.complex64) * 2
    w = np.zeros((16, 16), np.float32)
    w[4:12, 4:12] = 1
    out = stitch.stitch(patches, np.array([[20.0, 20.0]]), (40, 40), weights=w)
    assert np.isfinite(out).sum() == 64 and np.allclose(out[np.isfinite(out)], 2)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(8, 40), st.integers(8, 40)), min_size=1, max_size=12))
def test_stitch_of_integer_crops_is_exact(centres):
    obj = objects.lines_object(56, 10, rng(28), phase=0.3)
    pos = np.array(centres, dtype=float)
    out = stitch.stitch(diffraction.extract_patches(obj, pos, 16), pos, obj.shape)
    m = np.isfinite(out)
    assert m.sum() >= 256
    np.testing.assert_allclose(out[m], obj[m], atol=1e-5)
