"""The ptychography operator and its adjoint, apart from any solver (tike's split): Q crops the object at
integer patch corners; Q^T adds patches back at their corners. <Q x, y> == <x, Q^T y> (tested). The
sub-pixel part of a position moves the probe, not the object (as in diffraction.exit_waves)."""
from __future__ import annotations

from .backend import array_module, fft2, ifft2, to_numpy
from .diffraction import extract_patches
from .shift import shifted_copies, split_positions


def corners(positions, N: int, xp):
    """(integer patch centres, their sub-pixel remainders) of (B, 2) centres."""
    return split_positions(positions, xp)


def crop(obj, centres, N: int):
    """Q: (B, N, N) integer crops of `obj` centred at integer `centres`."""
    return extract_patches(obj, centres, N)


def crop_adjoint(patches, centres, shape):
    """Q^T: an array of `shape` with every patch added at its place (overlaps summed, not averaged)."""
    xp = array_module(patches)
    N = patches.shape[-1]
    out = xp.zeros(tuple(shape), dtype=patches.dtype)
    for b, (r, c) in enumerate(to_numpy(centres - N // 2).tolist()):
        out[r:r + N, c:c + N] += patches[b]
    return out


def probes_at(probe, fractions):
    """The probe moved by each position's sub-pixel remainder, (B, N, N)."""
    xp = array_module(probe)
    if not bool(xp.any(fractions != 0)):
        return xp.broadcast_to(probe, (fractions.shape[0], *probe.shape))
    return shifted_copies(probe, -fractions)


def coverage(probe, positions, shape):
    """Q^T|P|^2: the summed probe intensity at every object pixel (where a scan constrains the object)."""
    xp = array_module(probe)
    centres, fractions = corners(positions, probe.shape[-1], xp)
    return crop_adjoint((xp.abs(probes_at(probe, fractions)) ** 2).astype(xp.complex64), centres, shape).real


def propagate(waves):
    """Exit waves to the far field, as diffraction.far_field does (ortho FFT, centred)."""
    xp = array_module(waves)
    return xp.fft.fftshift(fft2(waves, xp), axes=(-2, -1))


def propagate_adjoint(far):
    """The inverse (and adjoint: the ortho FFT is unitary) of `propagate`."""
    xp = array_module(far)
    return ifft2(xp.fft.ifftshift(far, axes=(-2, -1)), xp)
