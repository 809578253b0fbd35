"""Image quality against a reference: MAE, MSE, PSNR, SSIM (scikit-image's definitions) and FRC.

Pixels that are NaN in either image (not covered by any patch) are left out of MAE, MSE and PSNR;
SSIM and FRC need a full rectangle, which `covered_box` cuts out.
"""
from __future__ import annotations

import numpy as np

from .backend import array_module, ndimage, to_numpy


def _valid(ref, img):
    xp = array_module(ref, img)
    if ref.shape != img.shape:
        raise ValueError(f"shapes differ: reference {ref.shape} vs image {img.shape}")
    mask = xp.isfinite(ref) & xp.isfinite(img)
    if not bool(mask.any()):
        raise ValueError("no pixel is finite in both images")
    return xp, mask


def mae(ref, img) -> float:
    xp, m = _valid(ref, img)
    return float(xp.mean(xp.abs(ref[m] - img[m])))


def mse(ref, img) -> float:
    xp, m = _valid(ref, img)
    return float(xp.mean(xp.abs(ref[m] - img[m]) ** 2))


def _range(ref, data_range):
    if data_range is not None:
        return float(data_range)
    xp = array_module(ref)
    return float(xp.nanmax(ref) - xp.nanmin(ref))


def psnr(ref, img, data_range=None) -> float:
    """10 log10(data_range^2 / MSE); data_range defaults to the reference's max - min."""
    err = mse(ref, img)
    return float("inf") if err == 0 else float(10 * np.log10(_range(ref, data_range) ** 2 / err))


def ssim(ref, img, data_range, win_size: int = 7, K1: float = 0.01, K2: float = 0.03) -> float:
    """Mean SSIM as skimage.metrics.structural_similarity computes it (uniform window, sample covariance)."""
    xp = array_module(ref, img)
    if ref.shape != img.shape or ref.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape, got {ref.shape} and {img.shape}")
    if min(ref.shape) < win_size:
        raise ValueError(f"ssim needs images at least {win_size} pixels wide, got {ref.shape}")
    x, y = ref.astype(xp.float64), img.astype(xp.float64)
    filt = lambda a: ndimage(xp).uniform_filter(a, size=win_size)  # noqa: E731
    n = win_size**2
    cov = n / (n - 1)
    ux, uy = filt(x), filt(y)
    vx = cov * (filt(x * x) - ux * ux)
    vy = cov * (filt(y * y) - uy * uy)
    vxy = cov * (filt(x * y) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    p = (win_size - 1) // 2
    return float(s[p:-p, p:-p].mean())


class FRC:
    """A Fourier ring correlation curve: `freq` (cycles/pixel), `corr` per ring, `npix` per ring.

    Unpacks as (freq, corr).
    """

    def __init__(self, freq, corr, npix):
        self.freq, self.corr, self.npix = freq, corr, npix

    def __iter__(self):
        return iter((self.freq, self.corr))


def frc(a, b, window: str | None = "hann") -> FRC:
    """Fourier ring correlation of two same-shape 2-D images, rings one frequency bin wide up to Nyquist.

    `window="hann"` (the default) takes each image's mean out and tapers both by a 2-D Hann window first: a
    cut-out rectangle is not periodic, and its edges put a cross of high-frequency power, common to both
    images, into every ring, which holds the outer rings' correlation up (the FRC against the truth then never
    drops below 0.5 and every reconstruction reads as pixel-limited). `window=None`: the raw images.
    """
    xp = array_module(a, b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"frc needs two 2-D images of one shape, got {a.shape} and {b.shape}")
    h, w = a.shape
    if window == "hann":
        taper = xp.hanning(h)[:, None] * xp.hanning(w)[None, :]
        a, b = (a - a.mean()) * taper, (b - b.mean()) * taper
    elif window is not None:
        raise ValueError(f"window is 'hann' or None, got {window!r}")
    fa, fb = xp.fft.fft2(a), xp.fft.fft2(b)
    ky, kx = xp.fft.fftfreq(h)[:, None], xp.fft.fftfreq(w)[None, :]
    step = 1.0 / min(h, w)
    ring = xp.rint(xp.sqrt(ky**2 + kx**2) / step).astype(xp.int64).ravel()
    nring = min(h, w) // 2 + 1
    keep = ring < nring
    ring = ring[keep]

    def ring_sum(v):
        return xp.bincount(ring, weights=v.ravel()[keep], minlength=nring)

    num = ring_sum((fa * xp.conj(fb)).real)
    den = xp.sqrt(ring_sum(xp.abs(fa) ** 2) * ring_sum(xp.abs(fb) ** 2))
    corr = xp.where(den > 0, num / xp.where(den > 0, den, 1), 0.0)
    npix = xp.bincount(ring, minlength=nring)
    return FRC(np.arange(nring) * step, to_numpy(corr), to_numpy(npix))


def half_bit(npix) -> np.ndarray:
    """The half-bit threshold per ring (van Heel & Schatz 2005)."""
    root = np.sqrt(np.maximum(npix, 1))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def frc_resolution(curve: FRC, threshold="1/7") -> float:
    """The first spatial frequency (cycles/pixel) where the FRC drops below the threshold.

    `threshold`: "1/7", "half-bit" or a number. Against a noiseless reference (the ground truth) the usual
    one is 0.5 (FRC50); "1/7" and "half-bit" are for two independent reconstructions (half datasets).
    Interpolated between rings; Nyquist (0.5) if it never drops. The resolution in pixels is 1 / the returned
    frequency.
    """
    freq, corr = np.asarray(curve.freq), np.asarray(curve.corr)
    if threshold == "1/7":
        t = np.full_like(corr, 1 / 7)
    elif threshold == "half-bit":
        t = half_bit(curve.npix)
    else:
        t = np.full_like(corr, float(threshold))
    below = np.nonzero(corr[1:] < t[1:])[0]  # ring 0 (the mean) is not a resolution
    if len(below) == 0:
        return float(freq[-1])
    i = below[0] + 1
    d0, d1 = corr[i - 1] - t[i - 1], corr[i] - t[i]
    if d0 <= 0:  # below from the start (ring 0 too): nothing resolved beyond the coarsest ring
        return float(freq[i])
    return float(freq[i - 1] + (freq[i] - freq[i - 1]) * d0 / (d0 - d1))


def remove_phase_offset(ref, img):
    """`img` times the constant phase factor that best aligns it with `ref` (NaN pixels ignored)."""
    xp, m = _valid(ref, img)
    inner = xp.sum(ref[m] * xp.conj(img[m]))
    return img * xp.exp(1j * xp.angle(inner)).astype(img.dtype)


def covered_box(img):
    """(row slice, col slice) of the largest-by-trimming rectangle with no NaN pixel."""
    ok = to_numpy(array_module(img).isfinite(img))
    r0, r1, c0, c1 = 0, ok.shape[0], 0, ok.shape[1]
    while r1 > r0 and c1 > c0 and not ok[r0:r1, c0:c1].all():
        sub = ~ok[r0:r1, c0:c1]
        edges = {"r0": sub[0].sum(), "r1": sub[-1].sum(), "c0": sub[:, 0].sum(), "c1": sub[:, -1].sum()}
        worst = max(edges, key=lambda k: edges[k] / (c1 - c0 if k[0] == "r" else r1 - r0))
        if worst == "r0":
            r0 += 1
        elif worst == "r1":
            r1 -= 1
        elif worst == "c0":
            c0 += 1
        else:
            c1 -= 1
    if r1 <= r0 or c1 <= c0:
        raise ValueError("no covered rectangle: every row or column has an uncovered pixel")
    return slice(r0, r1), slice(c0, c1)
