"""The Keras physics layer agrees with the kernels; the overlap constraint is exact for consistent patches."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from kernels import diffraction, objects, probe, scan  # noqa: E402
from studies.models import physics  # noqa: E402


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


def test_overlap_average_keeps_consistent_patches_and_averages_the_rest():
    rng = np.random.default_rng(1)
    obj = objects.lines_object(64, 20, rng, phase=0.5)
    centre = np.array([32.0, 32.0])
    offsets = np.array([[0, 0], [0, 5], [4, 0], [-3, -2]], dtype=np.float32)
    patches = diffraction.extract_patches(obj, centre + offsets, 16)
    re = patches.real[None].astype(np.float32)
    im = patches.imag[None].astype(np.float32)
    out_re, out_im = physics.overlap_average(re, im, offsets[None], pad=8)
    np.testing.assert_allclose(np.asarray(out_re), re, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out_im), im, atol=1e-5)
    # two different patches at one place come back as their mean
    two = np.stack([np.ones((16, 16)), 3 * np.ones((16, 16))])[None].astype(np.float32)
    avg, _ = physics.overlap_average(two, np.zeros_like(two), np.zeros((1, 2, 2), np.float32), pad=2)
    np.testing.assert_allclose(np.asarray(avg), 2.0, atol=1e-6)


def test_subpixel_placement_interpolates_linearly():
    e = np.asarray(physics.interp_matrices(ops.convert_to_tensor(np.array([0.25], np.float32)), 4, 2))[0]
    assert e.shape == (4, 8)
    np.testing.assert_allclose(e[0, 2:4], [0.75, 0.25])
    np.testing.assert_allclose(e.sum(axis=1), 1.0)
