"""Patches back into an object: place each at its centre and average the overlaps."""
from __future__ import annotations

from .backend import array_module, to_numpy
from .shift import fourier_shift, split_positions


def stitch(patches, positions, object_shape, weights=None, min_weight: float = 1e-3,
           pad: int = 8):
    """Average (B, N, N) patches placed at their centres into an `object_shape` image.

    The inverse of `extract_patches`: sub-pixel centres are shifted back by Fourier interpolation.
    `weights` ((N, N) or (B, N, N), e.g. |probe|**2) makes it a weighted average; pixels whose
    summed weight is below `min_weight` x the largest weight are not covered and come back NaN.
    """
    xp = array_module(patches)
    patches = xp.asarray(patches)
    B, N = patches.shape[0], patches.shape[-1]
    base, frac = split_positions(positions, xp)
    sub = xp.any(frac != 0, axis=1)
    if bool(sub.any()):
        patches = patches.copy()
        idx = xp.nonzero(sub)[0]
        padded = xp.pad(patches[idx], ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        patches[idx] = fourier_shift(padded, -frac[idx])[:, pad:pad + N, pad:pad + N]
    if weights is None:
        weights = xp.ones((N, N), dtype=xp.float32)
    weights = xp.broadcast_to(xp.asarray(weights, dtype=xp.float32), (B, N, N))
    if bool(sub.any()):
        # a patch starting at top + frac holds no sample of row/col `top`: that edge is extrapolated
        weights = weights.copy()
        weights[:, 0, :] *= (frac[:, 0] == 0)[:, None]
        weights[:, :, 0] *= (frac[:, 1] == 0)[:, None]
    canvas = xp.zeros(tuple(object_shape), dtype=patches.dtype)
    total = xp.zeros(tuple(object_shape), dtype=xp.float32)
    top = to_numpy(base - N // 2).tolist()
    for b, (r, c) in enumerate(top):
        canvas[r:r + N, c:c + N] += weights[b] * patches[b]
        total[r:r + N, c:c + N] += weights[b]
    covered = total > min_weight * float(weights.max())
    out = xp.where(covered, canvas / xp.where(covered, total, 1), xp.nan)
    return out.astype(patches.dtype)
