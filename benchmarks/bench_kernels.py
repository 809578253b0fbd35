"""Patterns/s of kernels.diffraction.simulate beside its two bounds, measured side by side in one run.

Bounds: scipy.fft alone (all cores) and numpy's Poisson alone on one core, both at the same N,
batch and photon count. Goal (issue 2): simulate >= 0.8 x cores x the one-core Poisson rate.
Run: python benchmarks/bench_kernels.py [--batch 4096] [--N 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

from kernels import diffraction, objects, probe, scan
from kernels.backend import to_numpy


def best_rates(fns: dict, n, repeats):
    """Best patterns/s of each function, the functions timed in turn (interleaved) so drift hits all."""
    for fn in fns.values():
        fn()  # warm up (FFT plans, page faults)
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return {k: n / v for k, v in best.items()}


def threaded_poisson(lam, workers):
    streams = np.random.default_rng(1).spawn(workers)
    parts = np.array_split(lam, workers)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda a: a[0].poisson(a[1]), zip(streams, parts)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nphotons", type=float, nargs="+", default=[1e9, 1e4])
    args = ap.parse_args(argv)
    N, B, cores = args.N, args.batch, os.cpu_count()
    rng = np.random.default_rng(0)
    obj = objects.lines_object(4 * N, 400, rng, phase=0.5)
    pr = probe.disk_probe(N, N / 4)
    subpixel = scan.random_positions(B, obj.shape, N, rng)
    integer = np.round(subpixel)
    rows = []
    for nph in args.nphotons:
        lam, _ = diffraction.expected_intensity(obj, pr, subpixel, nph)
        waves = diffraction.exit_waves(obj, pr, subpixel)
        r = best_rates({
            "numpy Poisson alone, 1 core": lambda: np.random.default_rng(1).poisson(lam),
            f"numpy Poisson alone, {cores} threads": lambda: threaded_poisson(lam, cores),
            f"scipy.fft alone, {cores} workers": lambda: scipy.fft.fft2(waves, workers=-1),
            "simulate, sub-pixel positions":
                lambda: diffraction.simulate(obj, pr, subpixel, nph, np.random.default_rng(2)),
            "simulate, integer positions":
                lambda: diffraction.simulate(obj, pr, integer, nph, np.random.default_rng(2)),
        }, B, args.repeats)
        bound = cores * r["numpy Poisson alone, 1 core"]
        for label, rate in r.items():
            rows.append((nph, label, rate, rate / bound))
        try:
            import cupy as cp

            gobj, gpr, gpos = cp.asarray(obj), cp.asarray(pr), cp.asarray(subpixel)

            def gpu():
                out = diffraction.simulate(gobj, gpr, gpos, nph, np.random.default_rng(2))
                cp.cuda.Stream.null.synchronize()
                return to_numpy(out.amplitudes[:1])

            rate = best_rates({"gpu": gpu}, B, args.repeats)["gpu"]
            rows.append((nph, "simulate on CuPy, sub-pixel positions", rate, rate / bound))
        except ImportError:
            pass
    print(f"N={N}, batch={B}, cores={cores}; ratio = simulate / (cores x one-core Poisson rate)")
    print("| nphotons | what | patterns/s | ratio to bound |")
    print("|---|---|---:|---:|")
    for nph, label, rate, ratio in rows:
        print(f"| {nph:.0e} | {label} | {rate:,.0f} | {'' if ratio is None else f'{ratio:.2f}'} |")


if __name__ == "__main__":
    main()
