"""Illumination probes."""
from __future__ import annotations

import numpy as np
import scipy.ndimage


def disk_probe(N: int, radius: float, smooth: float = 1.5, defocus: float = 0.0, dtype=np.complex64) -> np.ndarray:
    """A complex NxN disk of `radius` pixels softened by a Gaussian of sigma `smooth`, sum |p|^2 == 1.

    `defocus` adds a quadratic phase reaching that many radians at the disk's edge. A real,
    centro-symmetric probe cannot tell an object patch from its point-reflected conjugate (the twin
    image); a defocused probe can.
    """
    if N <= 0 or radius <= 0:
        raise ValueError(f"disk_probe needs N > 0 and radius > 0, got N={N}, radius={radius}")
    if radius > N / 2:
        raise ValueError(f"disk_probe radius {radius} does not fit in an {N}x{N} frame (max {N / 2})")
    centre = (N - 1) / 2
    yy, xx = np.mgrid[0:N, 0:N]
    disk = ((yy - centre) ** 2 + (xx - centre) ** 2 <= radius**2).astype(np.float64)
    if smooth > 0:
        disk = scipy.ndimage.gaussian_filter(disk, smooth, mode="constant")
    disk /= np.sqrt(np.sum(disk**2))
    r2 = ((yy - centre) ** 2 + (xx - centre) ** 2) / radius**2
    return (disk * np.exp(1j * defocus * r2)).astype(dtype)
