"""PINN training steps/s at N=64, gridsize 1 and 2, measured side by side in one run.

On this machine: the Keras backend in use (TensorFlow on the CPU by default). With a GPU (JAX or
TensorFlow with CUDA), run it there too and compare the rows. Each row: steps/s over `--steps`
steps after a warm-up, batch 16, width 32; then model.fit at steps_per_execution 1 against K (issue 23:
several steps per compiled call keep a GPU from waiting on the host). On JAX, last: the jitted step a solo
or packed run trains with (studies/ptychography/packed.py) with its work by XLA's cost analysis (GFLOP and
GB a step), so that steps/s reads against the device's peak: the bound a faster loop cannot pass.
Run: python benchmarks/bench_training.py [--steps 30] [--N 64] [--steps-per-execution 8]
"""
from __future__ import annotations

import argparse
import itertools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def steps_per_second(dataset, fit_params, steps, batch):
    import keras

    from studies.ptychography import pipeline as P

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


def fit_steps_per_second(dataset, fit_params, steps, batch, first_epoch=None):
    """Steps/s of model.fit itself (the second of two epochs of `steps` steps): what steps_per_execution
    changes, which train_on_batch (one call a step) cannot show. `first_epoch` (a list) gets the first
    epoch's seconds, compilation included."""
    import keras

    from studies.ptychography import pipeline as P

    f = P.FitParams.model_validate({**fit_params, "batch_size": batch}).model_dump()
    keras.utils.set_random_seed(0)
    model, _ = P.build(dataset, f)
    inputs, target = P.training_arrays(dataset, f)
    idx = np.arange(steps * batch) % len(target)
    x = [a[idx] for a in inputs] if isinstance(inputs, list) else inputs[idx]
    times = []
    cb = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
                                        on_epoch_end=lambda e, logs: times.append(time.perf_counter()))
    model.fit(x, target[idx], batch_size=batch, epochs=2, shuffle=False, verbose=0, callbacks=[cb])
    if first_epoch is not None:
        first_epoch.append(times[1] - times[0])
    return steps / (times[-1] - times[-2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps-per-execution", type=int, nargs="+", default=[8],
                    help="the K of the model.fit rows (1 against each K)")
    ap.add_argument("--fit-batches", type=int, nargs="+", default=None,
                    help="batch sizes of the model.fit rows (default: --batch); a larger batch at the same "
                         "steps/s is room that packing runs into one program would use")
    ap.add_argument("--matmul-precisions", nargs="+", default=["default"],
                    help="JAX rows: the convolutions' precision for float32 (default, float32, tensorfloat32, "
                         "bfloat16); if reduced precision runs faster on a GPU, the step is arithmetic-bound")
    ap.add_argument("--dtype-policies", nargs="+", default=["float32"],
                    help="JAX rows: Keras dtype policies to build the network under (float32, mixed_bfloat16)")
    args = ap.parse_args(argv)
    import keras

    from studies.ptychography import pipeline as P

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()} ({P._keras_device()}), "
          f"N={args.N}, batch {args.batch}, width {args.width}\n")
    print("| model | gridsize | steps/s | patterns/s | ratio to gridsize 1 |\n|---|---:|---:|---:|---:|")
    base, datasets = None, {}
    for g in (1, 2):
        data = P.simulate({"N": args.N, "object_size": 4 * args.N, "probe_radius": args.N / 4, "gridsize": g,
                           "n_train": 8 * args.batch, "test_step": args.N / 2, "probe_defocus": 3.0}, 1)
        rate = steps_per_second(data, {"width": args.width}, args.steps, args.batch)
        base = base or rate
        print(f"| pinn | {g} | {rate:.2f} | {rate * args.batch * g * g:.0f} | {rate / base:.2f} |")
        datasets[g] = data
    print_fit_rows(datasets, args)
    if keras.backend.backend() == "jax":
        print_jax_loop_rows(datasets, args)


def jax_loop_rate(dataset, width: int, steps: int, batch: int, precision: str,
                  policy: str = "float32") -> tuple[float, float, float]:
    """(steps/s, GFLOP a step, GB accessed a step) of the jitted step `packed.train` runs, one run, its
    convolutions at JAX's matmul `precision` for float32 inputs ("default": JAX's choice for the device),
    the network built under Keras's dtype `policy` (mixed_bfloat16: bfloat16 layers, float32 weights)."""
    import jax
    import keras

    keras.config.set_dtype_policy(policy)
    try:
        if precision == "default":
            return _jax_loop_rate(dataset, width, steps, batch)
        with jax.default_matmul_precision(precision):
            return _jax_loop_rate(dataset, width, steps, batch)
    finally:
        keras.config.set_dtype_policy("float32")


def _jax_loop_rate(dataset, width: int, steps: int, batch: int) -> tuple[float, float, float]:
    import jax

    from studies.ptychography import packed
    from studies.ptychography import pipeline as P

    f = P.FitParams.model_validate({"width": width, "batch_size": batch}).model_dump()
    model, _ = P.build(dataset, f)
    program = packed._Program(model, f, 1)
    state = program.initial([model])
    X, Y, w = packed.device_data([dataset], [f])
    batches = [(np.arange(batch) + s * batch)[None] % Y.shape[1] for s in range(steps + 1)]
    cost = program._step.lower(state, X, Y, w, batches[0]).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    state, loss = program._step(state, X, Y, w, batches[0])  # compilation, untimed
    jax.block_until_ready(loss)
    t = time.perf_counter()
    for idx in batches[1:]:
        state, loss = program._step(state, X, Y, w, idx)
    jax.block_until_ready(loss)
    return steps / (time.perf_counter() - t), cost["flops"] / 1e9, cost.get("bytes accessed", np.nan) / 1e9


def print_jax_loop_rows(datasets, args):
    """The JAX loop's steps/s beside its work a step: achieved TFLOP/s and GB/s to read against the peak."""
    print("\nThe JAX loop (packed.train, one run), work a step by XLA's cost analysis:\n")
    print("| gridsize | batch | dtype policy | matmul precision | steps/s | GFLOP a step | TFLOP/s | GB a step | "
          "GB/s |\n|---:|---:|---|---|---:|---:|---:|---:|---:|", flush=True)
    for g, data in datasets.items():
        for batch in args.fit_batches or [args.batch]:
            for policy, precision in itertools.product(args.dtype_policies, args.matmul_precisions):
                rate, gflop, gb = jax_loop_rate(data, args.width, args.steps, batch, precision, policy)
                print(f"| {g} | {batch} | {policy} | {precision} | {rate:.2f} | {gflop:.1f} | "
                      f"{rate * gflop / 1e3:.2f} | {gb:.2f} | {rate * gb:.0f} |", flush=True)


def print_fit_rows(datasets, args):
    """model.fit steps/s at steps_per_execution 1 and each K, per gridsize and batch, side by side."""
    ks = [1] + [k for k in args.steps_per_execution if k != 1]
    print("\nmodel.fit, the same steps at each steps_per_execution (first epoch: compilation included):\n")
    print("| gridsize | batch | steps_per_execution | steps/s | patterns/s | ratio to 1 | first epoch s |\n"
          "|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for g, data in datasets.items():
        for batch in args.fit_batches or [args.batch]:
            base = None
            for k in ks:
                first = []
                rate = fit_steps_per_second(data, {"width": args.width, "steps_per_execution": k}, args.steps,
                                            batch, first)
                base = base or rate
                print(f"| {g} | {batch} | {k} | {rate:.2f} | {rate * batch * g * g:.0f} | {rate / base:.2f} | "
                      f"{first[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
