"""Our PINN against PtychoPINN's own model on the same datasets (issue 14, point 5; comparisons/ptychopinn/README.md).

Steps around a finished sweep of ours (comparisons/ptychopinn/README.md, step 1; it saves its datasets):
  export  STUDY WORK                 each dataset's arrays PtychoPINN needs, WORK/<data_key>.npz
  train   WORK --src SRC --python PY  ptychopinn_train.py on every exported dataset, two at a time, in
                                     PtychoPINN's environment (PY), seeded from our run's fit seed
  simulate STUDY WORK --src SRC --python PY   both simulators on one dataset's object, probe and training
                                     positions, side by side: patterns/s and the ratio
  speed   STUDY WORK --src SRC --python PY   training samples/s, one process at a time: PtychoPINN's step,
                                     ours at the spec's width and at the width matching its parameters
  score   STUDY WORK                 its test patches stitched and scored by our code, beside our runs on
                                     the same data: per repeat, means with t intervals, paired differences
"""
import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

METRICS = ("psnr", "ssim", "resolution_px")
CI = 0.95


def their_env(**extra) -> dict:
    """The environment PtychoPINN's scripts run in: its tf.keras (tf-keras), TensorFlow's log quiet."""
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def our_runs(res) -> list[dict]:
    """Our PINN runs under the NLL loss (PtychoPINN's), status ok: data key, dose, fit seed, duration, metrics."""
    cols = ["run_id", "repeat_data", "data_key", "data.nphotons", "seed_fit", "duration_s", "fit.model",
            "fit.loss", "status"]
    rows = res.table.select(cols + [f"metrics.{m}" for m in METRICS]).to_pylist()
    return [r for r in rows if r["status"] == "ok" and (r["fit.model"], r["fit.loss"]) == ("pinn", "nll")]


def export(res, work: Path) -> None:
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    for r in our_runs(res):
        data = res.dataset(r["data_key"])
        np.savez(work / f"{r['data_key']}.npz", probe=data["probe"], scale=data["scale"],
                 train_amplitudes=data["train_amplitudes"], test_amplitudes=data["test_amplitudes"],
                 nphotons=np.float64(r["data.nphotons"]), seed=np.int64(r["seed_fit"] % 2**31))
        print(f"exported {r['data_key']} ({r['data.nphotons']:.0e} photons)")


def train(work: Path, src: str, python: str, epochs: int, batch_size: int, jobs: int) -> None:
    work = Path(work)
    todo = [p for p in sorted(work.glob("*.npz")) if not p.name.endswith(".pred.npz")
            and not p.with_suffix(".pred.npz").exists()]
    # as Ray runs ours: OMP_NUM_THREADS=1 per one-CPU task, TensorFlow's own thread pools left as they are
    env = their_env(OMP_NUM_THREADS="1")

    def one(path: Path) -> str:
        seed = int(np.load(path)["seed"])
        cmd = [python, str(ROOT / "comparisons/ptychopinn/ptychopinn_train.py"), str(path), str(path.with_suffix(".pred.npz")),
               "--src", src, "--seed", str(seed), "--epochs", str(epochs), "--batch-size", str(batch_size)]
        with open(path.with_suffix(".log"), "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return f"{path.stem}: ok" if rc == 0 else f"{path.stem}: failed (exit {rc}), see {log.name}"

    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(one, todo):
            print(line, flush=True)


def bench_dir(work) -> Path:
    """Where the timing steps keep their files, apart from the datasets `train` reads."""
    path = Path(work) / "timing"
    path.mkdir(exist_ok=True)
    return path


def simulate(res, work: Path, src: str, python: str, repeats: int = 3) -> str:
    import json
    import time

    from kernels import diffraction

    r = our_runs(res)[0]
    data = res.dataset(r["data_key"])
    inputs = bench_dir(work) / "simulator_inputs.npz"
    np.savez(inputs, object=data["object"], probe=data["probe"], positions=data["train_positions"],
             nphotons=np.float64(r["data.nphotons"]))
    out = subprocess.run([python, str(ROOT / "comparisons/ptychopinn/ptychopinn_simulate.py"), str(inputs), "--src", src,
                          "--repeats", str(repeats)], env=their_env(), capture_output=True, text=True, check=True)
    other = json.loads(out.stdout.strip().splitlines()[-1])
    rng, times = np.random.default_rng(0), []
    for _ in range(repeats + 1):  # the first call warms the FFT plans: not timed, as on its side
        t0 = time.perf_counter()
        diffraction.simulate(data["object"], data["probe"], data["train_positions"], r["data.nphotons"], rng)
        times.append(time.perf_counter() - t0)
    ours = len(data["train_positions"]) / float(np.median(times[1:]))
    return (f"simulator, {other['patterns']} patterns of {data['probe'].shape[-1]} px, median of {repeats}: "
            f"PtychoPINN {other['patterns_per_s']:.0f} patterns/s, ours {ours:.0f} patterns/s "
            f"({ours / other['patterns_per_s']:.1f}x)")


def speed(res, work: Path, src: str, python: str, steps: int = 40, batch: int = 16) -> str:
    import json

    from bench_training import steps_per_second  # benchmarks/, this script's folder

    r = our_runs(res)[0]
    exported, out = Path(work) / f"{r['data_key']}.npz", bench_dir(work) / "speed.npz"
    subprocess.run([python, str(ROOT / "comparisons/ptychopinn/ptychopinn_train.py"), str(exported), str(out), "--src", src,
                    "--seed", "0", "--time-steps", str(steps), "--batch-size", str(batch)], env=their_env(),
                   check=True, capture_output=True)
    other = np.load(out)
    data, fit = res.dataset(r["data_key"]), json.loads(res.plan.column("params")[0].as_py())["fit"]
    rows = [f"PtychoPINN: {int(other['parameters']):,} parameters, {float(other['samples_per_s']):.0f} samples/s"]
    for width in (fit["width"], matched_width(data, fit, int(other["parameters"]))):
        f = {**fit, "width": width}
        rate = steps_per_second(data, f, steps, batch) * batch
        rows.append(f"ours, width {width}: {parameters(data, f):,} parameters, {rate:.0f} samples/s "
                    f"({rate / float(other['samples_per_s']):.2f}x PtychoPINN's)")
    return f"training step, batch {batch}, {steps} steps after a warm-up, one process:\n" + "\n".join(rows)


def parameters(data: dict, fit: dict) -> int:
    from studies.ptychography import pipeline as P

    return P.build(data, P.FitParams.model_validate(fit).model_dump())[0].count_params()


def matched_width(data: dict, fit: dict, target: int) -> int:
    """Our width whose parameter count is nearest `target` (the count grows as width squared)."""
    base = parameters(data, {**fit, "width": 16})
    guess = round(16 * (target / base) ** 0.5)
    return min(range(guess - 2, guess + 3), key=lambda w: abs(parameters(data, {**fit, "width": w}) - target))


def predicted_region(N: int):
    """PtychoPINN (pad_object) predicts the central N/2 x N/2 of each patch and pads it with zeros: those
    zeros are not a prediction, so they get no weight in the stitch (0.4% of this probe's energy)."""
    mask = np.zeros((N, N))
    mask[N // 4: N - N // 4, N // 4: N - N // 4] = 1.0
    return mask


def predicted_patches(patches):
    """Its predicted centres with the zero border replaced by the centres' edge values: our stitch shifts
    each patch by sub-pixel Fourier interpolation, which rings at a hard zero border."""
    q = patches.shape[-1] // 4
    return np.pad(patches[:, q:-q, q:-q], ((0, 0), (q, q), (q, q)), mode="edge")


def theirs(res, work: Path) -> dict:
    """PtychoPINN's scores and stitched amplitude per data key, stitched and scored exactly as our runs are."""
    from kernels import stitch
    from studies.ptychography.pipeline import score

    out = {}
    for pred in sorted(Path(work).glob("*.pred.npz")):
        key = pred.name.split(".")[0]
        data, p = res.dataset(key), np.load(pred)
        weights = np.abs(data["probe"]) ** 2 * predicted_region(data["probe"].shape[-1])
        recon = stitch.stitch(predicted_patches(p["patches"]), data["test_positions"], data["object"].shape,
                              weights=weights, min_weight=0.05)
        out[key] = {**score(data["object"], recon), "amplitude": np.abs(recon), "train_s": float(p["train_s"]),
                    "samples": int(p["samples"]), "parameters": int(p["parameters"])}
    return out


def score_table(ours: list, other: dict) -> str:
    """Per repeat, means with t intervals and the paired differences, dose by dose; then the run times."""
    from sweeper import toolkit as stats

    lines = ["| photons | metric | PtychoPINN per repeat | ours per repeat | PtychoPINN mean [95% CI] | "
             "ours mean [95% CI] | ours - PtychoPINN, paired [95% CI] | n |", "|---|---|---|---|---|---|---|---|"]
    for dose in sorted({r["data.nphotons"] for r in ours}, reverse=True):
        rows = sorted((r for r in ours if r["data.nphotons"] == dose and r["data_key"] in other),
                      key=lambda r: r["repeat_data"])
        for m in METRICS:
            a = np.array([other[r["data_key"]][m] for r in rows])
            b = np.array([r[f"metrics.{m}"] for r in rows])
            ca, cb, d = stats.mean_ci(a, CI), stats.mean_ci(b, CI), stats.mean_ci(b - a, CI)
            lines.append(f"| {dose:.0e} | {m} | {_vals(a)} | {_vals(b)} | {_ci(ca)} | {_ci(cb)} | {_ci(d)} "
                         f"| {len(rows)} |")
    lines += ["", _speed(ours, other)]
    return "\n".join(lines)


def _vals(values) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _ci(c: dict) -> str:
    return f"{c['diff']:.3g} [{c['ci_low']:.3g}, {c['ci_high']:.3g}]"


def _speed(ours: list, other: dict) -> str:
    t = np.array([v["train_s"] for v in other.values()])
    rate = np.array([v["samples"] / v["train_s"] for v in other.values()])
    ours_s = np.array([r["duration_s"] for r in ours if r["data_key"] in other])
    params = {v["parameters"] for v in other.values()}
    return (f"PtychoPINN ({', '.join(f'{n:,}' for n in params)} parameters): its training loop {t.mean():.0f} s "
            f"per run (range {t.min():.0f}-{t.max():.0f}, n={len(t)}; {rate.mean():.0f} patterns/s over the "
            f"training and validation passes); ours: {ours_s.mean():.0f} s per run in all, training, "
            f"reconstruction and scoring (range {ours_s.min():.0f}-{ours_s.max():.0f}, n={len(ours_s)}); "
            "two runs at a time on both sides")


def figure(res, ours: list, other: dict, path: Path) -> None:
    """Truth, ours and PtychoPINN's amplitude at each dose (the first repeat; the central half of the object,
    the truth's grey scale), each titled with its scores."""
    from studies.ptychography.plots import central_crop, save_figure
    from sweeper.toolkit import pyplot

    ours = sorted((r for r in ours if r["data_key"] in other), key=lambda r: r["repeat_data"])
    doses = sorted({r["data.nphotons"] for r in ours}, reverse=True)
    plt = pyplot()
    fig, axes = plt.subplots(len(doses), 3, figsize=(9.6, 3.3 * len(doses)), squeeze=False)
    for row, dose in zip(axes, doses):
        r = next(r for r in ours if r["data.nphotons"] == dose)
        truth = np.abs(res.dataset(r["data_key"])["object"])
        panels = [(truth, f"truth ({dose:.0e} photons)"),
                  (res.run(r["run_id"]).arrays["amplitude"], f"ours  {_scores(r, 'metrics.')}"),
                  (other[r["data_key"]]["amplitude"], f"PtychoPINN  {_scores(other[r['data_key']], '')}")]
        for ax, (img, title) in zip(row, panels):
            ax.imshow(central_crop(img), cmap="gray", vmin=truth.min(), vmax=truth.max())
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    d, f = res.spec["data"], res.spec["fit"]
    fig.suptitle(f"Amplitude, the first repeat at each dose; same data and budget (N={d['N']}, {d['n_train']} "
                 f"patterns, {f['epochs']} epochs, batch {f['batch_size']}; our width {f['width']})", fontsize=9)
    save_figure(fig, path)


def _scores(m: dict, prefix: str) -> str:
    return f"{m[prefix + 'psnr']:.1f} dB, SSIM {m[prefix + 'ssim']:.3f}"


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export")
    e.add_argument("study"), e.add_argument("work")
    t = sub.add_parser("train")
    t.add_argument("work")
    t.add_argument("--src", required=True, help="a checkout of github.com/hoidn/PtychoPINN")
    t.add_argument("--python", required=True, help="the python of PtychoPINN's environment")
    t.add_argument("--epochs", type=int, default=25)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--jobs", type=int, default=2)
    m = sub.add_parser("simulate")
    m.add_argument("study"), m.add_argument("work")
    m.add_argument("--src", required=True), m.add_argument("--python", required=True)
    v = sub.add_parser("speed")
    v.add_argument("study"), v.add_argument("work")
    v.add_argument("--src", required=True), v.add_argument("--python", required=True)
    s = sub.add_parser("score")
    s.add_argument("study"), s.add_argument("work")
    s.add_argument("--figure", help="also draw truth, ours and PtychoPINN's reconstruction at each dose here")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    from sweeper import load

    a = parse(argv)
    if a.step == "train":
        return train(a.work, a.src, a.python, a.epochs, a.batch_size, a.jobs)
    res = load(a.study)
    if a.step == "export":
        export(res, a.work)
    elif a.step == "speed":
        print(speed(res, a.work, a.src, a.python))
    elif a.step == "simulate":
        print(simulate(res, a.work, a.src, a.python))
    else:
        ours, other = our_runs(res), theirs(res, a.work)
        print(score_table(ours, other))
        if a.figure:
            figure(res, ours, other, Path(a.figure))


if __name__ == "__main__":
    main()
