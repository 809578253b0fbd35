"""The forward model in keras.ops: object patches -> (overlap constraint) -> probe -> far-field counts.

Complex values travel as (real, imag) pairs, as keras.ops.fft2 takes them. The same physics as
kernels.diffraction, so that a network trained through it learns what the simulator did.
"""
from __future__ import annotations

import keras
from keras import ops


def cmul(a, b):
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def fftshift2(x):
    n0, n1 = x.shape[-2], x.shape[-1]
    return ops.roll(ops.roll(x, n0 // 2, axis=-2), n1 // 2, axis=-1)


def far_field(re, im, probe_re, probe_im):
    """fftshift(fft2(probe * patch, norm="ortho")) over the last two axes, as (real, imag)."""
    n = re.shape[-1] * re.shape[-2]
    er, ei = cmul((re, im), (probe_re, probe_im))
    fr, fi = ops.fft2((er, ei))
    norm = float(n) ** 0.5
    return fftshift2(fr / norm), fftshift2(fi / norm)


def interp_matrices(offsets, n: int, pad: int):
    """(.., n, n + 2 pad) linear-interpolation matrices E with out[i] = canvas[i + pad + offset].

    E^T places a patch into the padded canvas at `offset` (sub-pixel, bilinear); E takes it back out.
    """
    k = ops.floor(offsets)
    f = offsets - k
    rows = ops.arange(n, dtype="float32")[:, None]
    cols = ops.arange(n + 2 * pad, dtype="float32")[None, :]
    start = rows + pad + k[..., None, None]
    here = ops.cast(ops.equal(cols, start), "float32")
    nxt = ops.cast(ops.equal(cols, start + 1.0), "float32")
    return here * (1.0 - f[..., None, None]) + nxt * f[..., None, None]


def overlap_average(re, im, offsets, pad: int):
    """The overlap constraint: place a group's C patches (B, C, N, N) at their offsets (B, C, 2) in one
    canvas, average where they overlap, and cut each patch back out of the average."""
    n = re.shape[-1]
    ey = interp_matrices(offsets[..., 0], n, pad)  # (B, C, N, M)
    ex = interp_matrices(offsets[..., 1], n, pad)
    eyt = ops.swapaxes(ey, -1, -2)

    def place(x):
        return ops.sum(ops.matmul(ops.matmul(eyt, x), ex), axis=1)  # (B, M, M)

    weight = place(ops.ones_like(re))
    inv = 1.0 / ops.maximum(weight, 1e-6)
    avg_re, avg_im = place(re) * inv, place(im) * inv

    def extract(canvas):
        return ops.matmul(ops.matmul(ey, canvas[:, None]), ops.swapaxes(ex, -1, -2))

    return extract(avg_re), extract(avg_im)


@keras.saving.register_keras_serializable(package="sweeper_studies")
class DiffractionPhysics(keras.layers.Layer):
    """(amplitude, phase) patches (B, N, N, C) [+ offsets (B, C, 2)] -> expected counts (B, N, N, C)."""

    def __init__(self, probe_re, probe_im, count_scale: float, gridsize: int = 1, pad: int = 0, **kw):
        super().__init__(**kw)
        self.probe_re = ops.convert_to_tensor(probe_re, "float32")
        self.probe_im = ops.convert_to_tensor(probe_im, "float32")
        self.count_scale = float(count_scale)
        self.gridsize, self.pad = int(gridsize), int(pad)

    def call(self, amp, phase, offsets=None):
        amp = ops.transpose(amp, (0, 3, 1, 2))
        phase = ops.transpose(phase, (0, 3, 1, 2))
        re, im = amp * ops.cos(phase), amp * ops.sin(phase)
        if self.gridsize > 1:
            re, im = overlap_average(re, im, offsets, self.pad)
        fr, fi = far_field(re, im, self.probe_re, self.probe_im)
        counts = (fr * fr + fi * fi) * self.count_scale
        return ops.transpose(counts, (0, 2, 3, 1))

    def get_config(self):
        import numpy as np

        cfg = super().get_config()
        cfg.update(probe_re=np.asarray(ops.convert_to_numpy(self.probe_re)).tolist(),
                   probe_im=np.asarray(ops.convert_to_numpy(self.probe_im)).tolist(),
                   count_scale=self.count_scale, gridsize=self.gridsize, pad=self.pad)
        return cfg
