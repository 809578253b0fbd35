"""The forward model's CuPy path as a few fused passes (issue 23): each CUDA kernel below does in one pass over
the batch what the array-by-array composition in `diffraction` does in several.

Per pattern: the probe's sub-pixel shift as a phase ramp on its (once computed) spectrum, one inverse FFT, the
object window gathered and multiplied in, one forward FFT, and |.|^2 * scale read through the fftshift. The
NumPy path in `diffraction` is the reference; these agree with it to float32 rounding (tests/kernels/test_gpu.py).
"""
from __future__ import annotations

import functools

_INDEX = "const long long n2 = (long long) n * n; const long long b = i / n2; " \
         "const int r = (int) ((i / n) % n); const int c = (int) (i % n);"


@functools.cache
def _kernels():
    import cupy as cp

    ramps = cp.ElementwiseKernel(
        "raw T spectrum, raw float64 frac, int32 n", "T out",
        _INDEX + """
        const double fy = (r < (n + 1) / 2 ? r : r - n) / (double) n;
        const double fx = (c < (n + 1) / 2 ? c : c - n) / (double) n;
        const double ph = -6.283185307179586 * (frac[2 * b] * fy + frac[2 * b + 1] * fx);
        out = spectrum[r * n + c] * T(cos(ph), sin(ph));
        """, "fused_probe_ramps")
    windows = cp.ElementwiseKernel(
        "T shifted, raw T obj, raw int64 top, int32 n, int64 width", "T wave",
        _INDEX + "wave = shifted * obj[(top[2 * b] + r) * width + top[2 * b + 1] + c];",
        "fused_object_windows")
    intensity = cp.ElementwiseKernel(
        "raw T far, float32 scale, int32 n", "float64 lam",
        _INDEX + """
        const int h = n / 2;
        const T v = far[b * n2 + (long long) ((r - h + n) % n) * n + (c - h + n) % n];
        lam = (double) ((v.real() * v.real() + v.imag() * v.imag()) * scale);
        """, "fused_shifted_intensity")
    amplitude = cp.ElementwiseKernel("int64 k", "float32 a", "a = sqrtf((float) k);", "fused_sqrt_counts")
    return ramps, windows, intensity, amplitude


def exit_waves(obj, probe, positions):
    """(B, N, N) probe shifted by each position's sub-pixel part x the object window at its integer part.

    The same waves as `diffraction.exit_waves` (which moves the probe, not the window, for the same reason)."""
    import cupy as cp
    import cupyx.scipy.fft

    ramps, windows, _, _ = _kernels()
    dtype = cp.result_type(obj.dtype, probe.dtype, cp.complex64)
    obj, probe = cp.ascontiguousarray(obj, dtype=dtype), cp.ascontiguousarray(probe, dtype=dtype)
    n = probe.shape[-1]
    pos = cp.asarray(positions, dtype=cp.float64)
    base = cp.floor(pos)
    top = cp.ascontiguousarray(base.astype(cp.int64) - n // 2)
    _check_inside(top, n, obj.shape)
    spectrum = cp.fft.fft2(probe, norm="ortho")
    shifted = ramps(spectrum, cp.ascontiguousarray(pos - base), n, size=len(pos) * n * n).reshape(-1, n, n)
    shifted = cupyx.scipy.fft.ifft2(shifted, norm="ortho", overwrite_x=True)
    return windows(shifted, obj, top, n, obj.shape[-1])


def _check_inside(top, n: int, shape):
    if len(top) and (int(top.min()) < 0 or int(top[:, 0].max()) + n > shape[0] or int(top[:, 1].max()) + n > shape[1]):
        raise ValueError(f"some {n}x{n} patches fall outside the {shape[0]}x{shape[1]} object")


def expected_counts(waves, scale: float):
    """(B, N, N) float64 |fftshift(fft2(waves, ortho))|^2 * scale, the shift read in place (no copy)."""
    import cupy as cp
    import cupyx.scipy.fft

    _, _, intensity, _ = _kernels()
    n = waves.shape[-1]
    far = cupyx.scipy.fft.fft2(waves, norm="ortho")
    return intensity(far, cp.float32(scale), n, size=far.size).reshape(far.shape)


def sqrt_counts(counts):
    """float32 sqrt of integer counts in one pass."""
    return _kernels()[3](counts)
