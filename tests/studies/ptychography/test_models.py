"""The Keras physics layer agrees with the kernels; the overlap constraint is exact for consistent patches."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")


from kernels import diffraction, objects, probe, scan  # noqa: E402
from studies.ptychography.models import physics  # noqa: E402
from studies.ptychography import training  # noqa: E402


def test_physics_layer_equals_kernels_forward():
    rng = np.random.default_rng(0)
    obj = objects.lines_object(96, 40, rng, phase=0.7)
    pr = probe.disk_probe(32, 8)
    pos = scan.random_positions(16, obj.shape, 32, rng)
    patches = diffraction.extract_patches(obj, pos, 32)
    expect = np.abs(diffraction.far_field(patches, pr)) ** 2 * 123.0
    layer = physics.DiffractionPhysics(pr.real, pr.imag, 123.0)
    amp = np.abs(patches)[..., None].astype(np.float32)
    phase = np.angle(patches)[..., None].astype(np.float32)
    got = np.asarray(layer(amp, phase))[..., 0]
    rel = np.abs(got - expect).max() / np.abs(expect).max()
    assert rel < 1e-4


def _gs2_dataset(N=32, object_size=128, n_train=96):
    from studies.ptychography import pipeline as P

    radius = N / 4
    return P.simulate_on({"N": N, "object_size": object_size, "n_lines": 60, "probe_radius": radius,
                          "probe_defocus": 3.0, "n_train": n_train, "test_step": radius, "gridsize": 2}, 3)


def _true_group_patches(d, groups):
    """(G, C, N, N) true object patches of the groups' members and the groups' offsets (G, C, 2)."""

    return d["train_patches"][groups], training.group_offsets(d["train_positions"], groups)


def _counts_error(d, groups, offsets, patches):
    """Relative L1 error, per pattern, of the gridsize-2 physics on `patches` against the simulator's expected
    counts of each member's pattern."""
    N = d["probe"].shape[-1]
    expected, _ = diffraction.expected_intensity(d["object"], d["probe"], d["train_positions"][groups].reshape(-1, 2),
                                                 1e9, scale=float(d["scale"]))
    expected = expected.reshape(len(groups), -1, N, N)
    layer = physics.DiffractionPhysics(d["probe"].real, d["probe"].imag, float(d["scale"]), 2, int(d["pad"]))
    amp = np.transpose(np.abs(patches), (0, 2, 3, 1)).astype(np.float32)
    phase = np.transpose(np.angle(patches), (0, 2, 3, 1)).astype(np.float32)
    got = np.transpose(np.asarray(layer(amp, phase, offsets)), (0, 3, 1, 2))
    return np.abs(got - expected).sum(axis=(-2, -1)) / expected.sum(axis=(-2, -1))


@pytest.mark.parametrize("N, object_size", [(32, 128), (64, 256)])
def test_gridsize_two_physics_on_true_patches_reproduces_every_members_counts(N, object_size):
    d = _gs2_dataset(N, object_size)
    groups = d["train_groups"][:48]
    patches, offsets = _true_group_patches(d, groups)
    assert np.abs(offsets).max() > 2 and np.any(offsets % 1 != 0)  # real, sub-pixel overlaps
    err = _counts_error(d, groups, offsets, patches)
    assert err.shape == (48, 4) and err.max() < 0.01  # measured: 0.19% (N=32), 0.01% (N=64) at worst
    # the offsets' sign and axis order are part of the physics: flipped or transposed, the counts disagree
    assert np.median(_counts_error(d, groups, -offsets, patches)) > 0.05
    assert np.median(_counts_error(d, groups, offsets[..., ::-1], patches)) > 0.05


def test_group_offsets_are_member_centres_minus_the_group_mean_in_row_col_order():

    pos = np.array([[10.0, 20.0], [12.0, 20.0], [10.0, 23.0], [14.0, 25.0]])
    off = training.group_offsets(pos, np.array([[0, 1, 2, 3]]))
    np.testing.assert_allclose(off[0], pos - pos.mean(axis=0))
    d = _gs2_dataset()
    groups = d["train_groups"]
    assert (groups[:, 0] == np.arange(len(groups))).all()  # every position heads its own group
    dist = np.linalg.norm(d["train_positions"][groups[:, 1:]] - d["train_positions"][groups[:, :1]], axis=-1)
    # the others come from the k=7 nearest neighbours: no farther than the 7th nearest point
    from scipy.spatial import cKDTree

    tree = cKDTree(d["train_positions"])
    seventh = tree.query(d["train_positions"], k=7)[0][:, -1]
    assert (dist <= seventh[:, None] + 1e-9).all()
    # drawn from the 6, not always the 3 nearest (PtychoPINN's K=7, C=4)
    nearest3 = tree.query(d["train_positions"], k=4)[1][:, 1:]
    drawn_farther = [not set(g[1:]) <= set(n) for g, n in zip(groups, nearest3)]
    assert np.mean(drawn_farther) > 0.5  # 19 in 20 when 3 of the 6 are drawn at random


def test_the_canvas_holds_the_object_on_its_grid_and_pads_every_member():
    d = _gs2_dataset()
    groups = d["train_groups"][:16]
    patches, offsets = _true_group_patches(d, groups)
    N, pad = d["probe"].shape[-1], int(d["pad"])
    weight = physics.overlap_weight(d["probe"].real, d["probe"].imag)
    re, im = physics.overlap_canvas(patches.real.astype(np.float32), patches.imag.astype(np.float32), offsets,
                                    weight, pad)
    canvas = np.asarray(re) + 1j * np.asarray(im)
    assert canvas.shape == (16, N + 2 * pad, N + 2 * pad)
    assert (np.floor(offsets) + pad >= 0).all() and (np.floor(offsets) + pad + N <= N + 2 * pad).all()
    # canvas pixel m is the object at (group mean - frac(offset of any member) - N//2 - pad + m) ... on the
    # grid of the integer offsets: its window at member c is the object patch at that member's centre - frac
    whole, frac = np.floor(offsets), offsets - np.floor(offsets)
    ey, ex = physics.placement(whole, N, pad)
    windows = np.asarray(physics.cut(re, ey, ex)) + 1j * np.asarray(physics.cut(im, ey, ex))
    truth = diffraction.extract_patches(d["object"], (d["train_positions"][groups] - frac).reshape(-1, 2), N)
    lit = weight > 0.5
    err = np.abs(windows - truth.reshape(windows.shape))[..., lit]
    assert err.max() < 0.03 and np.median(err) < 0.005


def test_place_and_cut_are_adjoint():
    rng = np.random.default_rng(4)
    whole = rng.integers(-3, 4, size=(2, 4, 2)).astype(np.float32)
    p = rng.normal(size=(2, 4, 8, 8)).astype(np.float32)
    c = rng.normal(size=(2, 16, 16)).astype(np.float32)
    ey, ex = physics.placement(whole, 8, 4)
    lhs = np.sum(np.asarray(physics.place(p, ey, ex)) * c)
    rhs = np.sum(p * np.asarray(physics.cut(c, ey, ex)))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_fourier_shift_matches_the_kernel():
    from kernels.shift import fourier_shift

    rng = np.random.default_rng(5)
    x = (rng.normal(size=(2, 3, 16, 16)) + 1j * rng.normal(size=(2, 3, 16, 16))).astype(np.complex64)
    s = rng.uniform(-2, 2, size=(2, 3, 2)).astype(np.float32)
    re, im = physics.fourier_shift(x.real, x.imag, s)
    want = fourier_shift(x.reshape(-1, 16, 16), s.reshape(-1, 2)).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(re) + 1j * np.asarray(im), want, atol=2e-5)


def test_overlap_weights_each_pixel_by_the_patterns_that_lit_it():
    d = _gs2_dataset()
    N, pad = d["probe"].shape[-1], 12
    weight = physics.overlap_weight(d["probe"].real, d["probe"].imag)
    offsets = np.array([[[0, 0], [0, 6], [5, 0], [-4, -3]]], dtype=np.float32)
    rng = np.random.default_rng(6)
    patches = np.ones((1, 4, N, N), np.float32)
    unlit = weight < 1e-6
    # garbage in every patch's unlit border changes nothing that any probe lights
    noisy = patches + 50 * rng.normal(size=patches.shape).astype(np.float32) * unlit
    for p in (patches, noisy):
        w, _ = physics.merged_windows(p, np.zeros_like(p), offsets, weight, pad)
        np.testing.assert_allclose(np.asarray(w)[..., weight > 0.5], 1.0, atol=1e-4)
    # two patches at one place merge to their mean
    two = np.stack([np.ones((N, N)), 3 * np.ones((N, N))])[None].astype(np.float32)
    avg, _ = physics.merged_windows(two, np.zeros_like(two), np.zeros((1, 2, 2), np.float32), weight, 2)
    np.testing.assert_allclose(np.asarray(avg)[..., weight > 0.5], 2.0, atol=1e-4)


class _Oracle:
    """A stand-in network that predicts each test group's true patches (amplitude, phase), (G, N, N, C)."""

    def __init__(self, d, split="test"):
        patches = diffraction.extract_patches(d["object"], d[f"{split}_positions"], d["probe"].shape[-1])
        self.patches = np.transpose(patches[d[f"{split}_groups"]], (0, 2, 3, 1))

    def predict(self, x, verbose=0, batch_size=None):
        assert len(x) == len(self.patches)
        return np.abs(self.patches), np.angle(self.patches)


class _Bfloat16Oracle(_Oracle):
    """The oracle's patches as a network built under Keras's mixed_bfloat16 policy returns them."""

    def predict(self, x, verbose=0, batch_size=None):
        import ml_dtypes

        return tuple(a.astype(ml_dtypes.bfloat16) for a in super().predict(x))


def test_reconstruct_reads_bfloat16_outputs_as_float32():
    from studies.ptychography import pipeline as P

    d = P.simulate_on({"N": 32, "object_size": 96, "n_lines": 40, "probe_radius": 8.0, "probe_defocus": 3.0,
                       "n_train": 64, "test_step": 8.0, "gridsize": 1}, 2)
    m = P.score(d["object"], P.reconstruct(_Bfloat16Oracle(d), d, "test"))
    assert m["covered_fraction"] > 0.45 and m["ssim"] > 0.97, m  # bfloat16's 8 bits of mantissa, not a hole


@pytest.mark.parametrize("gridsize", [1, 2])
def test_reconstruct_stitches_each_test_position_once_and_recovers_true_patches(gridsize, monkeypatch):
    from kernels import stitch
    from studies.ptychography import pipeline as P

    d = P.simulate_on({"N": 32, "object_size": 96, "n_lines": 40, "probe_radius": 8.0, "probe_defocus": 3.0,
                       "n_train": 64, "test_step": 8.0, "gridsize": gridsize}, 2)
    seen = {}
    real_stitch = stitch.stitch
    monkeypatch.setattr(stitch, "stitch", lambda p, pos, *a, **k: seen.update(pos=pos) or real_stitch(p, pos, *a, **k))
    recon = P.reconstruct(_Oracle(d), d, "test")
    stitched, test = seen["pos"], d["test_positions"]
    # none missing, none twice: the stitched centres are the test positions, each exactly once
    assert len(stitched) == len(test)
    np.testing.assert_array_equal(np.sort(stitched.view("f8,f8"), axis=0), np.sort(test.view("f8,f8"), axis=0))
    m = P.score(d["object"], recon)
    assert m["covered_fraction"] > 0.45 and m["psnr"] > 35 and m["ssim"] > 0.99, m


def test_gridsize_one_and_two_share_one_intensity_scale_for_inputs_and_physics():
    from studies.ptychography import pipeline as P

    base = {"N": 32, "object_size": 96, "n_lines": 40, "probe_radius": 8.0, "n_train": 64, "test_step": 8.0}
    d1, d2 = (P.simulate_on({**base, "gridsize": g}, 5) for g in (1, 2))
    assert d1["scale"] == d2["scale"] and d1["input_norm"] == d2["input_norm"]
    np.testing.assert_array_equal(d1["train_amplitudes"], d2["train_amplitudes"])
    x, counts, _ = P.grouped_inputs(d2, "train")
    members = d2["train_amplitudes"][d2["train_groups"]]  # (G, C, N, N)
    np.testing.assert_allclose(np.transpose(x, (0, 3, 1, 2)), members / d2["input_norm"], rtol=1e-6)
    np.testing.assert_allclose(np.transpose(counts, (0, 3, 1, 2)), members.astype(np.float32) ** 2, rtol=1e-6)
    for d in (d1, d2):
        model, _ = P.build(d, P.FitParams.model_validate({}).model_dump())
        assert model.get_layer("physics").count_scale == float(d["scale"])


def test_a_test_scan_with_holes_is_named_when_scoring_fails():
    from studies.ptychography import pipeline as P

    d = P.simulate_on({"N": 32, "object_size": 128, "probe_radius": 8.0, "n_train": 64, "test_step": 16.0,
                       "gridsize": 2}, 1)  # positions 16 px apart under a probe of radius 8: holes between them
    with pytest.raises(ValueError, match=r"covers only a \d+ x \d+ px rectangle.*test_step is too large"):
        P.score(d["object"], P.reconstruct(_Oracle(d), d, "test"))
