"""Which array module an input belongs to, and the FFTs and filters that go with it."""
from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

try:  # CuPy is optional: the [gpu] extra
    import cupy as _cupy
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None


def array_module(*arrays):
    """NumPy or CuPy, whichever the arrays belong to (NumPy for plain Python values)."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def is_numpy(xp) -> bool:
    return xp is np


def to_numpy(a):
    """A NumPy copy of a NumPy or CuPy array (for metrics, plots and files)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def fft2(x, xp, norm="ortho", workers=-1):
    """2-D FFT over the last two axes: scipy.fft (threaded) on the CPU, cupy.fft on the GPU."""
    if is_numpy(xp):
        return scipy.fft.fft2(x, axes=(-2, -1), norm=norm, workers=workers)
    return xp.fft.fft2(x, axes=(-2, -1), norm=norm)


def ifft2(x, xp, norm="ortho", workers=-1):
    if is_numpy(xp):
        return scipy.fft.ifft2(x, axes=(-2, -1), norm=norm, workers=workers)
    return xp.fft.ifft2(x, axes=(-2, -1), norm=norm)


def ndimage(xp):
    """scipy.ndimage or cupyx.scipy.ndimage, to match the arrays."""
    if is_numpy(xp):
        return scipy.ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage
