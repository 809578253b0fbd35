"""Iterative reconstruction with a known probe, on kernels.operators: the physics reference beside the
networks. NumPy or CuPy, whichever the inputs are."""
from __future__ import annotations

from .backend import array_module
from .operators import corners, coverage, crop, crop_adjoint, probes_at, propagate, propagate_adjoint


def epie(amplitudes, positions, probe, shape, scale: float, iterations: int = 100, alpha: float = 0.1,
         obj=None, likelihood: str = "amplitude"):
    """Object from diffraction amplitudes (sqrt counts) with a known probe: batch regularised PIE.

    Every iteration moves each exit wave psi to psi' and the object by
    Q^T[conj(P) (psi' - psi)] / ((1 - alpha) Q^T|P|^2 + alpha max Q^T|P|^2) (rPIE, Maiden et al. 2017,
    all positions at once). likelihood "amplitude": psi' has the measured modulus (ePIE's projection, the
    maximum likelihood of Gaussian amplitude noise); "poisson": psi' = psi - F^T[(1 - c/I) F psi] / 2, half
    a step down the gradient of the Poisson negative log-likelihood sum(I - c log I) of the counts c (the
    step equals the projection's to first order near the solution; I floored where the far field is dark).
    Returns (object, Fourier error per iteration: sum (|F psi| - a)^2 / sum a^2).
    """
    if likelihood not in ("amplitude", "poisson"):
        raise ValueError(f"likelihood is 'amplitude' or 'poisson', got {likelihood!r}")
    xp = array_module(amplitudes, probe)
    N = probe.shape[-1]
    centres, fractions = corners(positions, N, xp)
    probes = probes_at(probe, fractions)
    measured = xp.asarray(amplitudes, dtype=xp.float32) / xp.float32(scale ** 0.5)
    obj = xp.ones(tuple(shape), dtype=xp.complex64) if obj is None else xp.asarray(obj, dtype=xp.complex64)
    weight = coverage(probe, positions, shape)
    denominator = (1 - alpha) * weight + alpha * weight.max()
    norm = float((measured ** 2).sum())
    errors = []
    for _ in range(iterations):
        waves = probes * crop(obj, centres, N)
        far = propagate(waves)
        modulus = xp.abs(far)
        errors.append(float(((modulus - measured) ** 2).sum()) / norm)
        corrected = propagate_adjoint(far * _update_factor(measured, modulus, likelihood, xp))
        step = crop_adjoint(xp.conj(probes) * (corrected - waves), centres, shape)
        obj = obj + (step / denominator).astype(xp.complex64)
    return obj, errors


def _update_factor(measured, modulus, likelihood: str, xp):
    """What multiplies each far-field pixel: the modulus projection, or the Poisson gradient's half step."""
    if likelihood == "amplitude":
        return measured / xp.maximum(modulus, 1e-12)
    counts, intensity = measured ** 2, modulus ** 2
    floor = 1e-3 * xp.maximum(counts.mean(axis=(-2, -1), keepdims=True), 1e-12)
    return (1 + counts / xp.maximum(intensity, floor)) / 2
