"""Sub-pixel shifts of image stacks by the Fourier shift theorem."""
from __future__ import annotations

from .backend import array_module, fft2, ifft2


def split_positions(positions, xp):
    """Integer parts (floor) and fractional parts of (B, 2) positions."""
    pos = xp.asarray(positions, dtype=xp.float64)
    base = xp.floor(pos)
    return base.astype(xp.int64), pos - base


def _complex_type(dtype, xp):
    return xp.complex128 if dtype in (xp.float64, xp.complex128) else xp.complex64


def _apply_ramps(spectrum, shifts, xp):
    """spectrum (B, h, w) or (h, w) times exp(2 pi i (f_y s_y + f_x s_x)) per shift -> (B, h, w)."""
    h, w = spectrum.shape[-2:]
    shifts = xp.asarray(shifts, dtype=xp.float64)
    # the ramp is separable: (B, h, 1) x (B, 1, w)
    ramp_y = xp.exp(2j * xp.pi * shifts[:, 0, None] * xp.fft.fftfreq(h)[None, :]).astype(spectrum.dtype)
    ramp_x = xp.exp(2j * xp.pi * shifts[:, 1, None] * xp.fft.fftfreq(w)[None, :]).astype(spectrum.dtype)
    out = spectrum * ramp_y[:, :, None]
    out *= ramp_x[:, None, :]
    return out


def fourier_shift(stack, shifts, workers: int = -1):
    """out[b](y, x) = stack[b](y + shifts[b, 0], x + shifts[b, 1]), periodic, over the last two axes."""
    xp = array_module(stack)
    spectrum = fft2(stack.astype(_complex_type(stack.dtype, xp), copy=False), xp, workers=workers)
    out = ifft2(_apply_ramps(spectrum, shifts, xp), xp, workers=workers)
    return out.real.astype(stack.dtype) if stack.dtype.kind == "f" else out.astype(stack.dtype, copy=False)


def shifted_copies(image, shifts, workers: int = -1):
    """(B, h, w) copies of one image, copy b shifted like `fourier_shift`; one forward FFT in all."""
    xp = array_module(image)
    spectrum = fft2(image.astype(_complex_type(image.dtype, xp), copy=False), xp, workers=workers)
    return ifft2(_apply_ramps(spectrum, shifts, xp), xp, workers=workers).astype(image.dtype, copy=False)
