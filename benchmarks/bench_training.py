"""PINN training steps/s at N=64, gridsize 1 and 2, measured side by side in one run.

On this machine: the Keras backend in use (TensorFlow on the CPU by default). With a GPU (JAX or
TensorFlow with CUDA), run it there too and compare the rows. Each row: steps/s over `--steps`
steps after a warm-up, batch 16, width 32.
Run: python benchmarks/bench_training.py [--steps 30] [--N 64]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def steps_per_second(dataset, fit_params, steps, batch):
    import keras

    from studies import ptychography as P

    f = P.FitParams.model_validate(fit_params).model_dump()
    keras.utils.set_random_seed(0)
    model, _ = P.build(dataset, f)
    inputs, target = P.training_arrays(dataset, f)
    take = lambda idx: [a[idx] for a in inputs] if isinstance(inputs, list) else inputs[idx]  # noqa: E731
    warm = np.arange(batch)
    model.train_on_batch(take(warm), target[warm])
    t = time.perf_counter()
    for s in range(steps):
        idx = (np.arange(batch) + s * batch) % len(target)
        model.train_on_batch(take(idx), target[idx])
    return steps / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    args = ap.parse_args(argv)
    import keras

    from studies import ptychography as P

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()} ({P._keras_device()}), "
          f"N={args.N}, batch {args.batch}, width {args.width}\n")
    print("| model | gridsize | steps/s | patterns/s | ratio to gridsize 1 |\n|---|---:|---:|---:|---:|")
    base = None
    for g in (1, 2):
        data = P.simulate({"N": args.N, "object_size": 4 * args.N, "probe_radius": args.N / 4, "gridsize": g,
                           "n_train": 8 * args.batch, "test_step": args.N / 2, "probe_defocus": 3.0}, 1)
        rate = steps_per_second(data, {"width": args.width}, args.steps, args.batch)
        base = base or rate
        print(f"| pinn | {g} | {rate:.2f} | {rate * args.batch * g * g:.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
