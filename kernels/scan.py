"""Scan trajectories: patch centres (row, col) that keep every NxN patch inside the object."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def centre_range(object_shape, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest (row, col) centre whose patch, plus one pixel for sub-pixel shifts, fits."""
    shape = np.asarray(object_shape[-2:], dtype=np.float64)
    low = np.full(2, N // 2, dtype=np.float64)
    high = shape - (N - N // 2) - 1
    if np.any(high < low):
        raise ValueError(f"an object of shape {tuple(object_shape)} has no room for {N}x{N} patches")
    return low, high


def random_positions(n: int, object_shape, N: int, rng: np.random.Generator) -> np.ndarray:
    """n centres drawn uniformly (sub-pixel) over the object; (n, 2) float64."""
    low, high = centre_range(object_shape, N)
    return rng.uniform(low, high, size=(n, 2))


def raster_positions(object_shape, N: int, step: float, jitter: float = 0.0,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """A raster of centres `step` pixels apart covering the object, optionally jittered (needs rng)."""
    if step <= 0:
        raise ValueError(f"raster step must be > 0, got {step}")
    low, high = centre_range(object_shape, N)
    rows = np.arange(low[0], high[0] + 1e-9, step)
    cols = np.arange(low[1], high[1] + 1e-9, step)
    pos = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    if jitter:
        if rng is None:
            raise ValueError("raster_positions with jitter needs an explicit rng")
        pos = np.clip(pos + rng.uniform(-jitter, jitter, size=pos.shape), low, high)
    return pos


def group_neighbors(positions, gridsize: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """One group per point: the point plus gridsize**2 - 1 others drawn from its k nearest neighbours.

    Returns (n, gridsize**2) int indices ("solution regions"); gridsize 1 gives each point alone.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n, c = len(positions), gridsize * gridsize
    if c == 1:
        return np.arange(n)[:, None]
    if k < c:
        raise ValueError(f"group_neighbors needs k >= gridsize**2 = {c}, got k={k}")
    if n < k:
        raise ValueError(f"group_neighbors needs at least k={k} positions, got {n}")
    _, nearest = cKDTree(positions).query(positions, k=k)
    nearest = np.asarray(nearest)
    # nearest[:, 0] is the point itself; pick c-1 of the other k-1 at random, per row
    picks = np.argsort(rng.random((n, k - 1)), axis=1)[:, : c - 1] + 1
    others = np.take_along_axis(nearest, picks, axis=1)
    return np.concatenate([nearest[:, :1], others], axis=1)
