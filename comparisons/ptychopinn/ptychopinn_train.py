"""Train PtychoPINN's own model on one of our exported datasets; write its test-patch predictions (NPZ).

Runs in PtychoPINN's environment, not ours (TensorFlow + tf-keras + TensorFlow Probability, its source on
the path); `comparisons/ptychopinn/vs_ptychopinn.py` exports the datasets, launches this and scores what it writes.
It calls PtychoPINN's public API only: `params.cfg`, `model.create_compiled_model`, `loader.
PtychoDataContainer` and `model.train` (its own loop: Adam 1e-3, ReduceLROnPlateau, early stopping,
5% validation). Nothing of this project is imported here.

  TF_USE_LEGACY_KERAS=1 python comparisons/ptychopinn/ptychopinn_train.py --src PtychoPINN/ DATA.npz OUT.npz --seed 1
"""
import argparse
import json
import os
import sys
import time

import numpy as np

# PtychoPINN predicts a sigmoid amplitude in (0, 1); ours in (0, AMP_MAX). Its intensity scale is set
# AMP_MAX times the data's sqrt(count scale), so its amplitude unit is 1/AMP_MAX of the object's: the same
# prior on the amplitude range for both models, undone on its predictions before they are written.
AMP_MAX = 2.0


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="NPZ from vs_ptychopinn.py export")
    ap.add_argument("out", help="NPZ to write: test patches (complex), timings, history")
    ap.add_argument("--src", required=True, help="a checkout of github.com/hoidn/PtychoPINN")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--time-steps", type=int, default=0,
                    help="only time this many training steps after one warm-up; write samples/s, no training")
    ap.add_argument("--probe-mask", action="store_true",
                    help="keep PtychoPINN's circular probe mask (off: the data were simulated without one)")
    return ap.parse_args(argv)


def configure(p, probe_module, data: dict, args) -> float:
    """PtychoPINN's global configuration for this dataset; returns its intensity scale.

    Its `probe.set_probe` rescales the probe to its own convention (mean |probe| in the mask = 1/probe_scale);
    the intensity scale takes the factor back, so that its forward model gives our data's expected counts.
    """
    N = int(data["probe"].shape[-1])
    p.cfg.update({"N": N, "gridsize": 1, "offset": 4, "batch_size": args.batch_size, "nepochs": args.epochs,
                  "nll_weight": 1.0, "mae_weight": 0.0, "realspace_weight": 0.0,
                  "realspace_mae_weight": 0.0, "nphotons": float(data["nphotons"]),
                  "probe.mask": bool(args.probe_mask), "probe.trainable": False,
                  "intensity_scale.trainable": False})
    ours = data["probe"].astype(np.complex64)[..., None]
    probe_module.set_probe(ours)
    theirs = np.asarray(p.cfg["probe"])
    factor = float(np.abs(ours).max() / np.abs(theirs).max())
    scale = AMP_MAX * float(np.sqrt(data["scale"])) * factor
    p.cfg["intensity_scale"] = scale
    return scale


def container(loader, amps, probe):
    """A PtychoDataContainer of single patterns (gridsize 1: every local offset is zero)."""
    B, N = amps.shape[0], amps.shape[-1]
    zeros = np.zeros((B, 1, 2, 1), np.float32)
    blank = np.zeros((B, N, N, 1), np.float32)
    return loader.PtychoDataContainer(amps[..., None].astype(np.float32), blank, blank, None, None, zeros,
                                      zeros, None, None, None, probe.astype(np.complex64))


def main(argv=None) -> None:
    args = parse(argv)
    sys.path.insert(0, os.path.abspath(args.src))
    import tensorflow as tf

    from ptycho import loader, model
    from ptycho import params as p
    from ptycho import probe as probe_module

    data = dict(np.load(args.dataset))
    scale = configure(p, probe_module, data, args)
    # PtychoPINN draws its initial weights and shuffles from TensorFlow's global generators
    tf.keras.utils.set_random_seed(args.seed)
    autoencoder, to_object = model.create_compiled_model(gridsize=1, N=int(data["probe"].shape[-1]))
    train = container(loader, data["train_amplitudes"] / scale, np.asarray(p.cfg["probe"])[..., 0])
    if args.time_steps:
        return time_steps(model, autoencoder, train, args)
    t0 = time.perf_counter()
    history = model.train(args.epochs, train, model_instance=autoencoder, use_streaming=False)
    train_s = time.perf_counter() - t0
    test_x = data["test_amplitudes"][..., None].astype(np.float32)
    zeros = np.zeros((len(test_x), 1, 2, 1), np.float32)
    # at 64 or more per batch its ReassemblePatchesLayer sums the batch into one object: predict in 16s
    patches = to_object.predict([test_x, zeros], batch_size=16, verbose=0)[..., 0] * AMP_MAX
    assert patches.shape[0] == len(test_x), f"{patches.shape[0]} patches for {len(test_x)} patterns"
    np.savez(args.out, patches=patches.astype(np.complex64), train_s=train_s,
             samples=len(train) * len(history.history["loss"]), parameters=autoencoder.count_params(),
             history=json.dumps({k: [float(v) for v in vals] for k, vals in history.history.items()}))


def time_steps(model, autoencoder, train, args) -> None:
    """Samples/s of its training step alone (no validation, no callbacks), for speed at equal parameters."""
    inputs, outputs = model.prepare_inputs(train), model.prepare_outputs(train)
    b = args.batch_size
    batch = lambda s: ([a[s * b:(s + 1) * b] for a in inputs], [a[s * b:(s + 1) * b] for a in outputs])  # noqa: E731
    autoencoder.train_on_batch(*batch(0))
    t0 = time.perf_counter()
    for s in range(args.time_steps):
        autoencoder.train_on_batch(*batch(1 + s % (len(train) // b - 1)))
    seconds = time.perf_counter() - t0
    np.savez(args.out, samples_per_s=args.time_steps * b / seconds, parameters=autoencoder.count_params())


if __name__ == "__main__":
    main()
