"""Ptychography on the engine: simulate a scan of a synthetic object, train a PINN or a supervised
baseline on it, and score the stitched reconstruction against the truth.

The dose-response and generalization studies use these `simulate` and `fit` and add their reports. The
object and the scan trajectories come from their own fixed seeds (identical across doses); only the
photon noise uses the run's data seed. The parameters are declared in DataParams and FitParams.
"""
from __future__ import annotations

import importlib.util
import io
import os
import platform
import tempfile
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from kernels import diffraction, metrics, objects, probe, scan, stitch
from kernels.backend import to_numpy
from sweeper import Params, Study
from sweeper.toolkit import assigned_gpus

from . import packed
from .training import (
    Schedule,
    group_offsets,
    grouped_inputs,
    loss_weights,
    split,
    take,
    training_arrays,
)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # hidden or half-installed
        return False


if not _installed("keras"):
    raise ImportError("the ptychography studies train Keras models; install them with the extra: "
                      "pip install -e '.[ptycho]'")

VERSION = "3"  # bump when simulate or fit change their results: runs and datasets get new ids


class DataParams(Params):
    """The simulated experiment: object, probe, scan and dose."""

    N: int = Field(32, gt=0, description="diffraction pattern (and probe) size in pixels")
    object_size: int = Field(128, gt=0, description="object side in pixels")
    n_lines: int = Field(150, ge=0, description="random lines drawn into the object")
    phase: float = Field(0.0, description="phase contrast of the lines (0: amplitude-only object)")
    probe_radius: float = Field(8.0, gt=0)
    probe_smooth: float = Field(1.0, ge=0)
    probe_defocus: float = Field(0.0, description="a defocused (complex) probe breaks the twin-image ambiguity")
    nphotons: float = Field(1e9, gt=0, allow_inf_nan=False, description="photons per pattern")
    n_train: int = Field(256, gt=0, description="training patterns")
    test_step: float | None = Field(None, gt=0, description="test raster step (default: the probe radius)")
    gridsize: int = Field(1, ge=1)
    k_neighbors: int = Field(7, ge=1)
    object_seed: int = 1
    train_scan_seed: int = 1
    test_scan_seed: int = 2

    @field_validator("object_size")
    @classmethod
    def _larger_than_n(cls, v, info: ValidationInfo):
        if "N" in info.data and info.data["N"] >= v:
            raise ValueError(f"data.N={info.data['N']} must be smaller than data.object_size={v}")
        return v

    @field_validator("probe_radius")
    @classmethod
    def _fits_in_n(cls, v, info: ValidationInfo):
        if "N" in info.data and v > info.data["N"] / 2:
            raise ValueError(f"data.probe_radius {v} does not fit in an N={info.data['N']} probe")
        return v


class FitParams(Params):
    """The network and its training."""

    model: Literal["pinn", "baseline", "epie"] = Field("pinn", description="epie: the iterative reference, no "
                                                              "training (reconstructs the test scan directly)")
    loss: Literal["nll", "mae", "mixed"] = "nll"
    nll_weight: float | None = Field(None, ge=0, description="overrides the loss's NLL weight")
    mae_weight: float | None = Field(None, ge=0, description="overrides the loss's MAE weight")
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    clipnorm: float = Field(1.0, ge=0, description="gradient clipping (0: off)")
    width: int = Field(16, gt=0)
    group_network: Literal["shared", "joint"] = Field(
        "shared", description="gridsize > 1: one network applied to each pattern of a group (shared), or one "
                              "that maps the group's patterns, stacked as channels, to its patches at once (joint)")
    depth: int = Field(3, ge=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["constant", "plateau"] = Field("constant", description="plateau: halve the learning rate "
                                                     "when the validation loss stalls for 2 epochs (to 1/16 of it) "
                                                     "and keep the best epoch's weights, as PtychoPINN trains")
    patience: int = Field(0, ge=0, description="stop after this many epochs without a better validation loss "
                                              "(0: train every epoch)")
    steps_per_execution: int = Field(1, ge=1, description="training steps per compiled call (Keras): more keeps "
                                                          "a fast GPU from waiting on the host between steps")
    save_model: bool = True
    epie_iterations: int = Field(100, ge=1, description="epie: iterations over the whole scan")
    epie_alpha: float = Field(0.1, gt=0, le=1, description="epie: rPIE regularisation (1: plain ePIE step)")
    epie_likelihood: Literal["amplitude", "poisson"] = Field(
        "amplitude", description="epie: the modulus projection, or gradient steps on the Poisson likelihood of "
                                 "the counts (0.2-0.4 dB lower at 1e3-1e4 photons here; benchmarks/RESULTS.md)")

    @field_validator("depth")
    @classmethod
    def _divides_n(cls, v, info: ValidationInfo):
        data = (info.context or {}).get("data") or {}
        if "N" in data and data["N"] % 2 ** v:
            raise ValueError(f"data.N={data['N']} must be divisible by 2**fit.depth={2 ** v}")
        return v


def _streams(seed: int, n: int) -> list:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def simulate(data: dict, seed: int) -> dict:
    """The dataset, computed on the GPU when Ray gave the simulate task one (resources.simulate.num_gpus)."""
    return simulate_on(data, seed, gpu_array_module() if assigned_gpus() else np)


def gpu_array_module():
    """CuPy, or an ImportError that says how to install it."""
    try:
        import cupy
    except ImportError as e:
        raise ImportError("resources.simulate.num_gpus asks for the GPU, but CuPy is not installed: "
                          "pip install -e '.[gpu]' (CUDA 12) or cupy-cuda13x (CUDA 13)") from e
    return cupy


def simulate_on(data: dict, seed: int, xp=np) -> dict:
    """The dataset with the kernels on `xp` (NumPy or CuPy; the kernels follow their input), as host arrays.

    Object, probe, scan and groups are identical on both; the Poisson draw on CuPy comes from a seed taken
    from the run's generator, so GPU and CPU counts differ draw by draw while following the same distribution.
    """
    d = DataParams.model_validate(data).model_dump()
    N, g = int(d["N"]), int(d["gridsize"])
    obj = objects.lines_object(int(d["object_size"]), int(d["n_lines"]), _streams(d["object_seed"], 1)[0],
                               phase=d["phase"] or False)
    pr = probe.disk_probe(N, d["probe_radius"], d["probe_smooth"], d["probe_defocus"])
    train_pos_rng, train_group_rng = _streams(d["train_scan_seed"], 2)
    test_pos_rng, test_group_rng = _streams(d["test_scan_seed"], 2)
    train_pos = scan.random_positions(int(d["n_train"]), obj.shape, N, train_pos_rng)
    # the test scan is a jittered raster dense enough (step <= probe radius) that the probe covers
    # every pixel of the scanned area, so the stitched test object has no holes to score around
    step = float(d["test_step"] or d["probe_radius"])
    test_pos = scan.raster_positions(obj.shape, N, step, jitter=min(0.5, step / 4), rng=test_pos_rng)
    noise_train, noise_test = np.random.default_rng(seed).spawn(2)
    obj_x, pr_x = xp.asarray(obj), xp.asarray(pr)
    train = diffraction.simulate(obj_x, pr_x, train_pos, d["nphotons"], noise_train)
    test = diffraction.simulate(obj_x, pr_x, test_pos, d["nphotons"], noise_test, scale=train.scale)
    train_amps, test_amps = to_numpy(train.amplitudes), to_numpy(test.amplitudes)
    k = max(int(d["k_neighbors"]), g * g)
    train_groups = scan.group_neighbors(train_pos, g, k, train_group_rng)
    test_groups = scan.group_neighbors(test_pos, g, k, test_group_rng)
    offsets = np.concatenate([group_offsets(train_pos, train_groups), group_offsets(test_pos, test_groups)])
    return {
        "object": obj, "probe": pr, "scale": np.float64(train.scale), "gridsize": np.int64(g),
        "pad": np.int64(int(np.ceil(np.abs(offsets).max())) + 2 if g > 1 else 0),
        "input_norm": np.float64(np.sqrt(np.mean(train_amps.astype(np.float64) ** 2))),
        "train_amplitudes": train_amps, "train_positions": train_pos, "train_groups": train_groups,
        "train_patches": to_numpy(diffraction.extract_patches(obj_x, train_pos, N)),
        "test_amplitudes": test_amps, "test_positions": test_pos, "test_groups": test_groups,
    }


def build(dataset: dict, f: dict):
    """(training model, encoder-decoder, loss) for the fit params."""
    import keras

    from .models import losses, networks

    N, g = int(dataset["probe"].shape[-1]), int(dataset["gridsize"])
    if f["model"] == "pinn":
        model, net = networks.pinn(N, g, dataset["probe"], float(dataset["scale"]), int(dataset["pad"]),
                                   f["width"], f["depth"], shared=f["group_network"] == "shared")
        mean_count = float(np.mean(dataset["train_amplitudes"].astype(np.float64) ** 2))
        loss = losses.make_pinn_loss(*loss_weights(f), mean_count=mean_count)
    else:
        model, net = networks.baseline(N, g, f["width"], f["depth"])
        loss = "mae"
    # clipping keeps the first steps of a low-dose NLL (gradients ~ counts / pred) from killing the ReLUs
    clip = {"clipnorm": float(f["clipnorm"])} if f["clipnorm"] else {}
    model.compile(optimizer=keras.optimizers.Adam(f["learning_rate"], **clip), loss=loss,
                  steps_per_execution=int(f["steps_per_execution"]))
    return model, net


def reconstruct(net, dataset: dict, split: str = "test"):
    """Each scan position's predicted patch stitched (probe-weighted) into the object.

    Every position heads exactly one group and its patch is taken from that group, so each is stitched once.
    At gridsize > 1 the head's own patch is stitched, not its window of the group's overlap canvas: the
    stitch already averages neighbours by the probe's weight, and merging first scored 0.4 dB lower
    (benchmarks/RESULTS.md, "Gridsize 2").
    """
    x, _, _ = grouped_inputs(dataset, split)
    amp, phase = net.predict(x, verbose=0, batch_size=64)
    heads = (np.asarray(amp)[..., 0] * np.exp(1j * np.asarray(phase)[..., 0])).astype(np.complex64)  # (G, N, N)
    pos = dataset[f"{split}_positions"][dataset[f"{split}_groups"][:, 0]]
    weights = np.abs(dataset["probe"]) ** 2
    return stitch.stitch(heads, pos, dataset["object"].shape, weights=weights, min_weight=0.05)


# what each score can be: confidence intervals drawn or printed are cut at these
METRIC_RANGES = {"mae": (0.0, np.inf), "mse": (0.0, np.inf), "psnr": (-np.inf, np.inf), "ssim": (-1.0, 1.0),
                 "frc_1_7": (0.0, 0.5), "resolution_px": (0.0, np.inf), "phase_mae": (0.0, np.pi)}


def score(truth, recon) -> dict:
    """Amplitude MAE/MSE/PSNR/SSIM/FRC and phase MAE (global offset removed) on the covered rectangle. The
    resolution is the FRC50 against the truth (Hann-tapered, in object pixels: 2 is the pixel limit);
    frc_1_7, the 1/7 crossing, is kept for comparison with the earlier tables."""
    rows, cols = metrics.covered_box(recon)
    t, r = truth[rows, cols], recon[rows, cols]
    if min(t.shape) < 7:
        raise ValueError(f"the test scan covers only a {t.shape[0]} x {t.shape[1]} px rectangle of the object "
                         "without a hole (too small to score): data.test_step is too large for the probe")
    ta, ra = np.abs(t).astype(np.float64), np.abs(r).astype(np.float64)
    rng = float(ta.max() - ta.min()) or 1.0
    curve = metrics.frc(ta, ra)
    aligned = metrics.remove_phase_offset(t, r)
    phase_err = np.angle(aligned * np.conj(t))
    f50, f17 = metrics.frc_resolution(curve, 0.5), metrics.frc_resolution(curve, "1/7")
    return {"mae": metrics.mae(ta, ra), "mse": metrics.mse(ta, ra), "psnr": metrics.psnr(ta, ra, rng),
            "ssim": metrics.ssim(ta, ra, rng), "frc_0_5": f50, "frc_1_7": f17, "resolution_px": 1.0 / max(f50, 1e-6),
            "phase_mae": float(np.mean(np.abs(phase_err))), "covered_fraction": float(t.size / truth.size)}


def preview_png(truth, recon, title: str) -> bytes:
    from sweeper.toolkit import pyplot

    plt = pyplot()

    fig, axs = plt.subplots(1, 2, figsize=(7, 3.4))
    lo, hi = float(np.abs(truth).min()), float(np.abs(truth).max())
    for ax, img, name in zip(axs, (np.abs(truth), np.abs(recon)), ("truth (amplitude)", "reconstruction")):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


CPU_ISA = "AVX2"  # oneDNN's and XLA's CPU kernels capped here: every x86-64 machine of the last decade has it
CPU_NUMERICS_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "ONEDNN_MAX_CPU_ISA", "XLA_FLAGS")  # read or set


def setup() -> None:
    """Once per worker process, before its first fit: GPU memory grows on demand (cards can be shared); the
    CPU's numerics pinned (`pin_cpu_numerics`); Keras imported once."""
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pin_cpu_numerics(os.environ)
    import keras  # noqa: F401


def pin_cpu_numerics(env) -> None:
    """The same run gives the same numbers on any machine of one kind: TensorFlow's intra-op threads follow
    the run's `num_cpus` (Ray sets OMP_NUM_THREADS to it; 1 outside Ray), not the machine's cores, and on
    x86-64 oneDNN's and XLA's kernels use an instruction set every such machine has, not the CPU's best (each
    moves a run's digits: benchmarks/RESULTS.md, "What moves a PINN run's numbers", which also says what is
    left: XLA's CPU thread pool follows the cores). Settings already in `env` are kept; read when TensorFlow
    or JAX loads, so this runs before either."""
    env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, int(float(env.get("OMP_NUM_THREADS") or 1)))))
    if platform.machine().lower() in ("x86_64", "amd64"):  # the ISA names are x86's
        env.setdefault("ONEDNN_MAX_CPU_ISA", CPU_ISA)
        if "--xla_cpu_max_isa" not in env.get("XLA_FLAGS", ""):
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_max_isa={CPU_ISA}".strip()


def cleanup() -> None:
    """Between runs on a warm actor: drop the previous run's graphs and weights."""
    import keras

    keras.backend.clear_session()


def fit(dataset: dict, params: dict, seed: int) -> dict:
    """Train the network the params name (or run the epie reference) and score its test reconstruction."""
    f = FitParams.model_validate(params).model_dump()
    return fit_epie(dataset, f) if f["model"] == "epie" else fit_network(dataset, f, seed)


def fit_epie(dataset: dict, f: dict) -> dict:
    """The physics reference, on the GPU when Ray gave the fit one (resources.num_gpus), else on the CPU."""
    return epie_on(dataset, f, gpu_array_module() if assigned_gpus() else np)


def epie_on(dataset: dict, f: dict, xp=np) -> dict:
    """The test scan reconstructed from its own diffraction with the known probe (no training data), with the
    kernels on `xp` (NumPy or CuPy). Pixels the probe covers with under 5% of the peak summed intensity are
    left out, as the networks' stitching leaves them out."""
    from kernels import operators, solvers

    probe, pos, shape = xp.asarray(dataset["probe"]), xp.asarray(dataset["test_positions"]), dataset["object"].shape
    recon, errors = solvers.epie(xp.asarray(dataset["test_amplitudes"]), pos, probe, shape, float(dataset["scale"]),
                                 iterations=f["epie_iterations"], alpha=f["epie_alpha"],
                                 likelihood=f["epie_likelihood"])
    device = "cupy:gpu" if type(recon).__module__.startswith("cupy") else "numpy:cpu"
    weight = to_numpy(operators.coverage(probe, pos, shape))
    recon = np.where(weight >= 0.05 * weight.max(), to_numpy(recon), np.nan).astype(np.complex64)
    result = score(dataset["object"], recon)
    result.update(final_fourier_error=errors[-1])
    png = preview_png(dataset["object"], recon, f"epie ({f['epie_iterations']} it.)  PSNR {result['psnr']:.1f} dB")
    return {"metrics": result, "history": {"fourier_error": errors}, "files": {"reconstruction.png": png},
            "arrays": {"amplitude": np.abs(recon).astype(np.float32), "phase": np.angle(recon).astype(np.float32)},
            "device": device}


def fit_network(dataset: dict, f: dict, seed: int) -> dict:
    """Train the PINN or the supervised baseline on the training scan; reconstruct the test scan. On Keras's
    JAX backend the PINN trains in `packed.train` (one run: the same loop packed runs share)."""
    import keras

    keras.utils.set_random_seed(int(seed % 2**31))
    model, net = build(dataset, f)
    if _packs(f):
        history = packed.train([model], [dataset], [f], [seed])[0] if f["epochs"] > 0 else _no_history()
    else:
        history = _keras_fit(model, dataset, f, seed)
    return finish_network(model, net, dataset, f, history)


def fit_packed(datasets: list, fits: list, seeds: list) -> list[dict]:
    """Several runs that `packed.pack_key` calls compatible, trained as one program (JAX), each scored as
    its solo run would be; on another backend, one after the other."""
    import keras

    fits = [FitParams.model_validate(p).model_dump() for p in fits]
    if not all(_packs(f) for f in fits) or len(fits) == 1 or fits[0]["epochs"] == 0:
        return [fit(d, p, s) for d, p, s in zip(datasets, fits, seeds)]
    packed.check_compatible(datasets)
    built = []
    for d, f, s in zip(datasets, fits, seeds):
        keras.utils.set_random_seed(int(s % 2**31))
        built.append(build(d, f))
    histories = packed.train([m for m, _ in built], datasets, fits, seeds)
    return [{**finish_network(m, net, d, f, h), "device": _device_label(packed=len(fits))}
            for (m, net), d, f, h in zip(built, datasets, fits, histories)]


def _packs(f: dict) -> bool:
    import keras

    return f["model"] == "pinn" and keras.backend.backend() == "jax"


def _no_history() -> dict:
    return {"train_loss": [], "val_loss": []}


def _keras_fit(model, dataset: dict, f: dict, seed: int) -> dict:
    """model.fit with the schedule's callbacks (the TensorFlow path, and the supervised baseline)."""
    if f["epochs"] <= 0:
        return _no_history()
    inputs, target = training_arrays(dataset, f)
    train_idx, val_idx = split(len(target), f["validation_fraction"], seed)
    h = model.fit(take(inputs, train_idx), target[train_idx], batch_size=int(f["batch_size"]),
                  epochs=int(f["epochs"]), shuffle=True, verbose=0,
                  callbacks=Schedule.of(f).callbacks(len(val_idx) > 0),
                  validation_data=(take(inputs, val_idx), target[val_idx]) if len(val_idx) else None)
    return {"train_loss": [float(v) for v in h.history["loss"]],
            "val_loss": [float(v) for v in h.history.get("val_loss", [])]}


def finish_network(model, net, dataset: dict, f: dict, history: dict) -> dict:
    """A trained network's result: the test reconstruction scored, its preview, the saved model, history."""
    recon = reconstruct(net, dataset, "test")
    result = score(dataset["object"], recon)
    files = {"reconstruction.png": preview_png(dataset["object"], recon,
                                               f"{f['model']} {f['loss']}  PSNR {result['psnr']:.1f} dB")}
    if f["save_model"]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            with open(path, "rb") as fh:
                files["model.keras"] = fh.read()
    if history["train_loss"]:
        result.update(final_train_loss=history["train_loss"][-1], epochs_trained=len(history["train_loss"]))
    if history["val_loss"]:
        result.update(final_val_loss=history["val_loss"][-1])
    return {"metrics": result, "history": history, "files": files,
            "arrays": {"amplitude": np.abs(recon).astype(np.float32), "phase": np.angle(recon).astype(np.float32)},
            "device": _device_label()}


def _device_label(packed: int = 1) -> str:
    import keras

    label = device_label(keras.backend.backend(), _keras_device(), assigned_gpus())
    return f"{label} (packed {packed})" if packed > 1 else label


def device_label(backend: str, device: str, ray_gpus: list) -> str:
    """The results' `device`: backend and device, with the GPUs Ray assigned (CUDA_VISIBLE_DEVICES), and a
    warning in the label when a GPU was assigned but the backend computed on the CPU."""
    if device == "gpu" and ray_gpus:
        return f"{backend}:gpu:{','.join(map(str, ray_gpus))}"
    if device == "cpu" and ray_gpus:
        return f"{backend}:cpu (gpu {','.join(map(str, ray_gpus))} assigned, unused: no CUDA build of {backend})"
    return f"{backend}:{device}"


def _keras_device() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].platform)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    return "cpu"


METRICS = ("mae", "mse", "psnr", "ssim", "frc_0_5", "frc_1_7", "resolution_px", "phase_mae", "covered_fraction",
           "final_fourier_error", "final_train_loss", "epochs_trained", "final_val_loss")  # score() and the fits'
study = Study("ptychography", simulate, fit, data_params=DataParams, fit_params=FitParams, version=VERSION,
              metrics=METRICS,
              fit_packed=fit_packed, pack_key=packed.pack_key,
              setup=setup, teardown=cleanup,
              description="How well does a network reconstruct a ptychographic object from its diffraction?")
