"""Synthetic test objects and object files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.ndimage


def _draw_lines(size: int, n_lines: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((size, size), dtype=np.float64)
    starts = rng.uniform(0, size, size=(n_lines, 2))
    angles = rng.uniform(0, np.pi, size=n_lines)
    lengths = rng.uniform(0.1 * size, 0.5 * size, size=n_lines)
    for (r0, c0), theta, length in zip(starts, angles, lengths):
        t = np.linspace(0.0, length, int(2 * length) + 2)
        rr = np.clip(np.round(r0 + t * np.sin(theta)).astype(int), 0, size - 1)
        cc = np.clip(np.round(c0 + t * np.cos(theta)).astype(int), 0, size - 1)
        img[rr, cc] = 1.0
    return img


def lines_object(size: int, n_lines: int, rng: np.random.Generator, blur: float = 1.0,
                 phase: float | bool = False) -> np.ndarray:
    """The "lines" object: random segments, Gaussian-blurred, amplitude in [0.5, 1.5] (complex64).

    `phase` (radians, or True for 1.0) adds a smooth phase map of that peak magnitude; False keeps
    the object real-valued (zero phase), which isolates amplitude effects in a study.
    """
    if size <= 0 or n_lines < 0:
        raise ValueError(f"lines_object needs size > 0 and n_lines >= 0, got {size}, {n_lines}")
    amp = scipy.ndimage.gaussian_filter(_draw_lines(size, n_lines, rng), blur)
    peak = amp.max()
    amp = 0.5 + (amp / peak if peak > 0 else amp)
    obj = amp.astype(np.complex128)
    if phase:
        peak_phase = 1.0 if phase is True else float(phase)
        smooth = scipy.ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 8, mode="wrap")
        smooth /= np.abs(smooth).max()
        obj = obj * np.exp(1j * peak_phase * smooth)
    return obj.astype(np.complex64)


def load_object(path: str | Path) -> np.ndarray:
    """A complex object from an `.npz` file holding an array named `object`."""
    with np.load(Path(path), allow_pickle=False) as f:
        if "object" not in f:
            raise KeyError(f"{path}: no array named 'object' (found {sorted(f.files)})")
        obj = f["object"]
    if obj.ndim != 2:
        raise ValueError(f"{path}: 'object' must be 2-D, got shape {obj.shape}")
    return obj.astype(np.complex64)
