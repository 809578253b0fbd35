"""K runs trained as one program (`pack: K`, studies/ptychography/packed.py) against the same K runs one after
the other, side by side in one process (issue 23: K runs on one GPU should give >= 0.7 K times one run's
throughput). Keras's JAX backend; compilation counts in both (a sweep compiles every solo run).
Run: KERAS_BACKEND=jax python benchmarks/bench_packing.py [--N 32 --gridsize 1 --n-train 128 --epochs 2]
On the GPU machine, the published size: --N 64 --gridsize 2 --n-train 2000 --epochs 10 --width 32 --batch 16
(on the H200 compilation and evaluation take a few seconds a run; 10 epochs, ~4 s of training alone, keep
them from deciding the ratio). Each solo run is timed once: K solo runs are the first K, in the pack's order.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=32)
    ap.add_argument("--gridsize", type=int, default=1)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4, 8])
    a = ap.parse_args(argv)
    import keras

    from studies.ptychography import pipeline as P

    data = {"N": a.N, "object_size": 4 * a.N, "probe_radius": a.N / 4, "n_train": a.n_train, "gridsize": a.gridsize,
            "test_step": a.N / 4, "probe_defocus": 3.0}
    fit = {"model": "pinn", "epochs": a.epochs, "batch_size": a.batch, "width": a.width, "save_model": False}
    datasets = [P.simulate(data, 100 + k) for k in range(max(a.packs))]
    print(f"Keras {keras.__version__} on {keras.backend.backend()} ({P._keras_device()}); N={a.N}, gridsize "
          f"{a.gridsize}, {a.n_train} groups, {a.epochs} epochs, batch {a.batch}, width {a.width}\n")
    P.fit_packed(datasets[:2], [{**fit, "epochs": 1}] * 2, [1, 2])  # imports and first compilations, untimed
    print("| K | K solo runs, s | one pack of K, s | throughput ratio (solo / packed) | ratio / K (goal >= 0.7) |\n"
          "|---:|---:|---:|---:|---:|")
    fits = [{**fit, "loss": ("nll", "mae")[i % 2]} for i in range(max(a.packs))]
    seeds, solo_s = list(range(1, max(a.packs) + 1)), []
    for k in sorted(a.packs):
        while len(solo_s) < k:  # each solo run once; K solo runs are the first K of them
            i, t = len(solo_s), time.perf_counter()
            P.fit(datasets[i], fits[i], seeds[i])
            solo_s.append(time.perf_counter() - t)
        solo = sum(solo_s[:k])
        t = time.perf_counter()
        P.fit_packed(datasets[:k], fits[:k], seeds[:k])
        pack = time.perf_counter() - t
        print(f"| {k} | {solo:.1f} | {pack:.1f} | {solo / pack:.2f} | {solo / pack / k:.2f} |", flush=True)

if __name__ == "__main__":
    main()
