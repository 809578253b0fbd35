"""The ptychography forward model: object patches -> exit waves -> far-field diffraction counts."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from . import fused
from .backend import array_module, fft2, is_numpy
from .shift import fourier_shift, shifted_copies, split_positions

CHUNK = 256  # patterns per Poisson stream: fixed, so results do not depend on the thread count


class Diffraction(NamedTuple):
    amplitudes: object  # (B, N, N) float32, sqrt(counts)
    scale: float        # counts per unit of |far_field|^2
    positions: object   # (B, 2) patch centres (row, col)


def extract_patches(obj, positions, N: int, pad: int = 8, workers: int = -1):
    """(B, N, N) patches centred at `positions`; sub-pixel centres by Fourier-shift interpolation.

    The patch at centre c covers rows floor(c) - N//2 + frac ... ; integer centres are exact crops.
    `pad` extra pixels around each window keep the periodic shift's edge effects out of the patch.
    """
    xp = array_module(obj)
    base, frac = split_positions(positions, xp)
    if base.ndim != 2 or base.shape[1] != 2:
        raise ValueError(f"positions must be (B, 2), got {tuple(base.shape)}")
    top = base - N // 2
    h, w = obj.shape[-2:]
    if base.shape[0] and (int(top.min()) < 0 or int(top[:, 0].max()) + N > h or int(top[:, 1].max()) + N > w):
        raise ValueError(f"some {N}x{N} patches fall outside the {h}x{w} object")
    sub = xp.any(frac != 0, axis=1)
    m = N + 2 * pad if bool(sub.any()) else N
    off = (m - N) // 2
    objp = xp.pad(obj, off, mode="edge") if off else obj
    ar = xp.arange(m)
    windows = objp[top[:, 0, None, None] + ar[None, :, None], top[:, 1, None, None] + ar[None, None, :]]
    if off:
        idx = xp.nonzero(sub)[0]
        windows[idx] = fourier_shift(windows[idx], frac[idx], workers=workers)
        windows = windows[:, off:off + N, off:off + N]
    return xp.ascontiguousarray(windows)


def far_field(patches, probe, workers: int = -1):
    """fftshift(fft2(probe * patches, norm="ortho")) over the last two axes."""
    xp = array_module(patches, probe)
    return xp.fft.fftshift(fft2(probe * patches, xp, workers=workers), axes=(-2, -1))


def exit_waves(obj, probe, positions, workers: int = -1):
    """probe x object patch at each position, (B, N, N).

    The sub-pixel part of each position moves the probe (one FFT pair of the probe's size) rather
    than the object (an FFT pair of a padded window): the exit wave is then the same wave translated
    by under a pixel, which leaves its far-field intensity unchanged, at about half the work.
    """
    xp = array_module(obj, probe)
    base, frac = split_positions(positions, xp)
    crops = extract_patches(obj, base, probe.shape[-1])
    if not bool(xp.any(frac != 0)):
        return probe * crops
    return shifted_copies(probe, -frac, workers=workers) * crops


def _intensity_scale(waves, nphotons: float, xp) -> float:
    # Parseval: the ortho FFT keeps sum |.|^2, so totals can be taken before the FFT
    totals = xp.sum(xp.abs(waves) ** 2, axis=(-2, -1))
    return float(nphotons / float(xp.mean(totals)))


def expected_intensity(obj, probe, positions, nphotons: float, scale: float | None = None):
    """Expected counts (B, N, N), scaled so that mean total counts per pattern == nphotons; and the scale.

    Pass `scale` to reuse another set's scale (a test set measured like its training set).
    """
    xp = array_module(obj, probe)
    if not is_numpy(xp):
        return _expected_counts_fused(obj, probe, positions, nphotons, scale)
    waves = exit_waves(obj, probe, positions)
    if scale is None:
        scale = _intensity_scale(waves, nphotons, xp)
    return xp.abs(far_field(waves, 1)) ** 2 * xp.float32(scale), scale


def _expected_counts_fused(obj, probe, positions, nphotons: float, scale: float | None):
    """The CuPy path of `expected_intensity`: the same arithmetic in fused passes (float64 counts)."""
    waves = fused.exit_waves(obj, probe, positions)
    if scale is None:
        scale = _intensity_scale(waves, nphotons, array_module(waves))
    return fused.expected_counts(waves, scale), scale


def _check_photons(nphotons):
    if not np.isfinite(nphotons) or nphotons <= 0:
        raise ValueError(f"nphotons must be a finite number > 0, got {nphotons}")


def simulate(obj, probe, positions, nphotons: float, rng: np.random.Generator,
             scale: float | None = None, workers: int | None = None) -> Diffraction:
    """Poisson-noisy diffraction: amplitudes sqrt(counts) (float32), the intensity scale, the positions.

    On the CPU the batch is cut into fixed chunks, each with its own generator spawned from `rng`,
    and the chunks run on `workers` threads (default: all cores); the result is the same for any
    number of threads. On CuPy the draw runs on the GPU from a seed taken from `rng`.
    """
    _check_photons(nphotons)
    xp = array_module(obj, probe)
    if not is_numpy(xp):
        intensity, scale = _expected_counts_fused(obj, probe, positions, nphotons, scale)
        gpu_rng = xp.random.default_rng(int(rng.integers(2**63)))
        return Diffraction(fused.sqrt_counts(gpu_rng.poisson(intensity)), scale, positions)

    N = probe.shape[-1]
    positions = np.asarray(positions, dtype=np.float64)
    starts = range(0, len(positions), CHUNK)
    streams = rng.spawn(len(starts))
    waves = np.empty((len(positions), N, N), dtype=np.result_type(obj.dtype, probe.dtype, np.complex64))
    totals = np.empty(len(positions), dtype=np.float64)
    out = np.empty((len(positions), N, N), dtype=np.float32)

    def exit_chunk(s):
        w = waves[s:s + CHUNK]
        w[...] = exit_waves(obj, probe, positions[s:s + CHUNK], workers=1)
        totals[s:s + CHUNK] = np.sum(w.real**2 + w.imag**2, axis=(-2, -1))

    def count_chunk(item):
        s, stream = item
        far = far_field(waves[s:s + CHUNK], 1, workers=1)
        lam = far.real**2
        lam += far.imag**2
        lam *= np.float32(scale)
        np.sqrt(stream.poisson(lam), out=out[s:s + CHUNK], casting="same_kind")

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        list(pool.map(exit_chunk, starts))
        if scale is None:
            scale = float(nphotons / totals.mean())  # Parseval: totals before the FFT equal those after
        list(pool.map(count_chunk, zip(starts, streams)))
    return Diffraction(out, scale, positions)
