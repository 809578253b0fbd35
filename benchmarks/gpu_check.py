"""The GPU check: one command for a GPU machine that prints one table for benchmarks/RESULTS.md.

Steps, each beside its CPU counterpart in the same run:
  1. the gpu-marked tests (pytest -m gpu);
  2. kernels.diffraction.simulate, patterns/s on CuPy against NumPy (N=64 and 128, 1e9 and 1e4 photons), each
     beside its bound on its device (a batched fft2 + abs()**2 of the same exit waves) and its share of it;
  3. PINN training steps/s on Keras's JAX backend, GPU against CPU (one process per device);
  4. the dose-response study's simulate + fit at the published sizes (dose_response_full.yaml), the
     simulate on CuPy, for as many epochs as fit in --study-minutes;
  5. `sweep run` through Ray with packing off and on (pack=1 against pack=--pack: one dose, 3 repeats, the
     dose's PINN runs as one program), runs/hour of each and their ratio (--sweep-epochs a PINN run).
Steps 1-4 need no Ray: the kernels and models run directly; step 5 needs Ray (on a GPU test machine without
network, the offline bundle's) and says "skipped" without it. The procedure for a machine without network
is in benchmarks/GPU_CHECK.md. --cpu-only runs every step on the CPU at small sizes, which is how CI checks
this script.
Run: python benchmarks/gpu_check.py [--cpu-only] [--batch 16384] [--study-minutes 8] [--out table.md]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# the sweep step's spec and overrides: one dose, 3 repeats (1 on the CPU) of each arm, so the PINN arms'
# repeats under both losses can train as one program; the GPU's at the published sizes
SWEEP_GPU = ("dose_response_full.yaml", ["repeats=3", "sweep.data.nphotons=[1e9]"])
SWEEP_CPU = ("dose_response.yaml", ["repeats=1", "sweep.data.nphotons=[1e9]", "data.n_train=64", "fit.width=8"])

TRAIN = """
import json, sys
sys.path.insert(0, {repo!r})
from benchmarks.bench_training import steps_per_second
from studies.ptychography import pipeline as P
d = P.simulate({{"N": {N}, "object_size": {obj}, "probe_radius": {N} / 4, "n_train": {n}, "test_step": {N} / 2,
                "probe_defocus": 3.0}}, 1)
rate = steps_per_second(d, {{"width": 32}}, {steps}, {batch})
print(json.dumps({{"rate": rate, "device": P._keras_device()}}))
"""


def gpu_tests(cpu_only: bool) -> list:
    """pytest -m gpu: its summary line (they skip without CuPy, as on CI)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                          "tests/kernels/test_gpu.py", "tests/kernels/test_simulate_gpu.py", "tests/studies/ptychography/test_training_gpu.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    summary = (out.stdout.strip().splitlines() or ["no output"])[-1]
    if out.returncode not in (0, 5):
        print(out.stdout[-4000:], out.stderr[-2000:], file=sys.stderr)
    return [("gpu tests", "pytest -m gpu", summary, "", "")]


def _on_device(fn, cp):
    """fn() timed to its end on the GPU (the stream synchronised), for best_rates."""
    def run():
        out = fn()
        cp.cuda.Stream.null.synchronize()
        return out
    return run


def kernel_rows(cpu_only: bool, batch: int, repeats: int) -> list:
    """Patterns/s of diffraction.simulate on NumPy and (unless cpu_only) CuPy, same positions and photons, each
    beside its bound on the same device: a batched fft2 of the exit waves and abs()**2, nothing else. On the GPU
    also the array-by-array composition the fused kernels replaced, and the two-FFT bound (an inverse FFT for
    the sub-pixel probe shifts, a forward one for the far field) that no exact sub-pixel simulate goes under."""
    from benchmarks.bench_kernels import best_rates
    from kernels import diffraction, objects, probe, scan
    from kernels.backend import fft2, ifft2

    rows = []
    for N in (64, 128):
        rng = np.random.default_rng(0)
        obj = objects.lines_object(4 * N, 400, rng, phase=0.5)
        pr = probe.disk_probe(N, N / 4)
        pos = scan.random_positions(batch, obj.shape, N, rng)
        waves = diffraction.exit_waves(obj, pr, pos).astype(np.complex64)
        bound = {"cpu": lambda: np.abs(fft2(waves, np)) ** 2}
        if not cpu_only:
            import cupy as cp

            g_waves = cp.asarray(waves)
            bound["gpu"] = _on_device(lambda: cp.abs(fft2(g_waves, cp)) ** 2, cp)
            two = best_rates({"gpu": _on_device(lambda: cp.abs(fft2(ifft2(g_waves, cp), cp)) ** 2, cp)}, batch, repeats)
        limit = best_rates(bound, batch, repeats)
        rows.append(_rates_row(f"bound: batched fft2 + abs()**2, N={N}, batch {batch} (patterns/s)", limit))
        if not cpu_only:
            rows.append(_rates_row(f"two-FFT bound: ifft2 + fft2 + abs()**2, N={N} (patterns/s)", two,
                                   {"gpu": f"{two['gpu'] / limit['gpu']:.1%} of bound"}))
        for nph in (1e9, 1e4):
            fns = {"cpu": lambda: diffraction.simulate(obj, pr, pos, nph, np.random.default_rng(2))}
            if not cpu_only:
                g = (cp.asarray(obj), cp.asarray(pr), cp.asarray(pos))
                before = best_rates({"gpu": _on_device(lambda: _unfused_simulate(*g, nph, cp), cp)}, batch, repeats)
                rows.append(_rates_row(f"before (array by array), N={N}, {nph:.0e} photons (patterns/s)", before,
                                       {"gpu": f"{before['gpu'] / limit['gpu']:.1%} of bound"}))
                fns["gpu"] = _on_device(lambda: diffraction.simulate(*g, nph, np.random.default_rng(2)).amplitudes, cp)
            r = best_rates(fns, batch, repeats)
            share = {k: f"{r[k] / limit[k]:.1%} of bound" for k in r}
            rows.append(_rates_row(f"simulate N={N}, batch {batch}, {nph:.0e} photons (patterns/s)", r, share))
        if not cpu_only:
            rows += _stage_rows((cp.asarray(obj), cp.asarray(pr), cp.asarray(pos)), limit["gpu"], batch, repeats, cp)
    return rows


def _stage_rows(obj_probe_pos, bound: float, batch: int, repeats: int, cp) -> list:
    """Where the fused CuPy simulate's time goes: each of its stages alone, as patterns/s and as a share of the
    one-FFT bound (a stage at x% of the bound costs 1/x bound-times; the shares' reciprocals add up)."""
    from benchmarks.bench_kernels import best_rates
    from kernels import fused
    from kernels.diffraction import _intensity_scale

    N = obj_probe_pos[1].shape[-1]
    waves = fused.exit_waves(*obj_probe_pos)
    stages = {"exit waves (probe ramp, ifft2, object window)": lambda: fused.exit_waves(*obj_probe_pos),
              "intensity scale (sum of |wave|^2)": lambda: _intensity_scale(waves, 1e9, cp),
              "fft2 + |.|^2 x scale through the fftshift": lambda: fused.expected_counts(waves, 1.0)}
    for nph in (1e9, 1e4):
        lam, rng = fused.expected_counts(waves, _intensity_scale(waves, nph, cp)), cp.random.default_rng(2)
        stages[f"Poisson draw (float64 means), {nph:.0e} photons"] = lambda lam=lam, rng=rng: rng.poisson(lam)
    counts = rng.poisson(lam)
    stages["sqrt of the counts"] = lambda: fused.sqrt_counts(counts)
    rows = []
    for what, fn in stages.items():
        r = best_rates({"gpu": _on_device(fn, cp)}, batch, repeats)
        share = {"gpu": f"{r['gpu'] / bound:.1%} of bound"}
        rows.append(_rates_row(f"stage alone, N={N}: {what} (patterns/s)", r, share))
    return rows


def _unfused_simulate(obj, pr, pos, nphotons, cp):
    """The CuPy simulate before the fused kernels (issue 23's 7.9% / 10.8% of the bound), for side by side."""
    from kernels import diffraction

    waves = diffraction.exit_waves(obj, pr, pos)
    scale = nphotons / float(cp.mean(cp.sum(cp.abs(waves) ** 2, axis=(-2, -1))))
    lam = cp.abs(diffraction.far_field(waves, 1)) ** 2 * cp.float32(scale)
    counts = cp.random.default_rng(2).poisson(lam.astype(cp.float64))
    return cp.sqrt(counts).astype(cp.float32)


def _rates_row(what: str, r: dict, share: dict | None = None) -> tuple:
    def cell(k):
        return f"{r[k]:,.0f}" + (f" ({share[k]})" if share and k in share else "") if k in r else "-"
    both = "gpu" in r and "cpu" in r
    return ("kernels", what, cell("cpu"), cell("gpu"), f"{r['gpu'] / r['cpu']:.1f}x" if both else "-")


def training_rows(cpu_only: bool, steps: int) -> list:
    """Steps/s of PINN training on Keras's JAX backend: JAX on the CPU, and on the GPU unless cpu_only."""
    rows, rates = [], {}
    for device in ("cpu",) if cpu_only else ("cpu", "gpu"):
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu" if device == "cpu" else "cuda"}
        N, batch = (32, 8) if cpu_only else (64, 16)
        code = TRAIN.format(repo=str(REPO), N=N, obj=4 * N, n=8 * batch, steps=steps, batch=batch)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
        if out.returncode:
            rates[device] = None
            print(f"training on jax:{device} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rates[device] = res["rate"]
        assert res["device"] == device, f"JAX ran on {res['device']}, asked for {device}"
    cpu, gpu = rates.get("cpu"), rates.get("gpu")
    rows.append(("training", f"PINN steps/s, Keras on JAX (N={N}, batch {batch}, width 32)",
                 f"{cpu:.1f}" if cpu else "failed", f"{gpu:.1f}" if gpu else ("-" if cpu_only else "failed"),
                 f"{gpu / cpu:.1f}x" if cpu and gpu else "-"))
    return rows


def study_rows(cpu_only: bool, minutes: float) -> list:
    """The dose-response runs at the published sizes: simulate on CuPy (NumPy with cpu_only), fit on the
    Keras backend's device, epochs cut to fit the time budget; quality and time per run."""
    from sweeper import expand, load_spec

    spec_file = "dose_response.yaml" if cpu_only else "dose_response_full.yaml"
    overrides = ["repeats=1"] + (["fit.epochs=1", "data.n_train=64", "fit.width=8"] if cpu_only else [])
    runs = expand(load_spec(REPO / "studies" / "ptychography" / "specs" / spec_file, overrides)).runs
    from studies.ptychography import pipeline as P

    xp = np if cpu_only else P.gpu_array_module()
    datasets, rows, sim_s = {}, [], {}
    for run in runs:
        if run.data_key not in datasets:
            t = time.perf_counter()
            datasets[run.data_key] = P.simulate_on(run.data, run.seed_data, xp)
            sim_s[run.data_key] = time.perf_counter() - t
    budget = minutes * 60 / len(runs)
    for run in runs:
        fit = dict(run.fit)
        if not cpu_only and fit["model"] != "epie":
            fit["epochs"] = _epochs_within(datasets[run.data_key], fit, run.seed_fit, budget)
        t = time.perf_counter()
        out = P.fit(datasets[run.data_key], fit, run.seed_fit)
        m = out["metrics"]
        took = f"simulate {sim_s[run.data_key]:.1f} s + fit {time.perf_counter() - t:.0f} s on {out.get('device')}"
        what = "epie" if fit["model"] == "epie" else f"{fit['model']} {fit['loss']}, {fit['epochs']} epochs"
        rows.append(("study", f"dose_response {run.data['nphotons']:.0e} photons, {what}, 1 seed",
                     *_cells(cpu_only, took), f"PSNR {m['psnr']:.1f} dB, SSIM {m['ssim']:.2f}"))
    return rows


def sweep_rows(cpu_only: bool, pack: int, spec: Path, overrides: list) -> list:
    """`sweep run` of one spec through Ray, packing off and on, each sweep in its own process and directory
    (Ray's start and the simulations included, the report left out): runs/hour, how many runs trained packed,
    and the ratio."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return [("sweep", "`sweep run`, packing off and on", "skipped: no Ray", "skipped: no Ray", "-")]
    # the repository first, the rest kept (the offline bundle's packages travel on PYTHONPATH)
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": path}
    if cpu_only:
        env["JAX_PLATFORMS"] = "cpu"
    rows, rate = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in sorted({1, pack}):
            cmd = [sys.executable, "-m", "sweeper.cli", "run", str(spec), *overrides, f"pack={k}",
                   "--out", f"{tmp}/pack{k}", "--no-progress", "--no-report"]
            t = time.perf_counter()
            out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
            wall = time.perf_counter() - t
            what = f"`sweep run {spec.name} {' '.join(overrides + [f'pack={k}'])}`"
            if out.returncode:
                print(f"sweep with pack={k} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                rows.append(("sweep", what, *_cells(cpu_only, "failed"), "-"))
                continue
            ok, packed = _sweep_counts(Path(out.stdout.strip().splitlines()[-1]))
            rate[k] = ok * 3600 / wall
            cell = f"{rate[k]:,.0f} runs/h ({ok} ok runs, {packed} packed, in {wall:.0f} s)"
            ratio = f"{rate[k] / rate[1]:.2f}x the runs/h of pack=1" if k > 1 and 1 in rate else "-"
            rows.append(("sweep", what, *_cells(cpu_only, cell), ratio))
    return rows


def sweep_spec(cpu_only: bool, spec: str | None, epochs: int | None) -> tuple[Path, list]:
    """The sweep step's spec and overrides: --sweep-spec as it is, else the dose response at one dose with
    its PINN runs `epochs` long (the published sizes on a GPU, tiny ones with cpu_only)."""
    if spec:
        return Path(spec).resolve(), []
    name, overrides = SWEEP_CPU if cpu_only else SWEEP_GPU
    epochs = epochs or (1 if cpu_only else 10)
    return REPO / "studies" / "ptychography" / "specs" / name, [*overrides, f"fit.epochs={epochs}"]


def _cells(cpu_only: bool, text: str) -> tuple[str, str]:
    """(CPU, GPU) cells of a step that ran on one device: `text` in its column, "-" in the other."""
    return (text, "-") if cpu_only else ("-", text)


def _sweep_counts(sweep_dir: Path) -> tuple[int, int]:
    """(runs that ended ok, of them trained packed) from a sweep directory's records."""
    import sweeper

    ok = sweeper.load(sweep_dir).runs(sweeper.RunStatus.OK)
    return len(ok), sum("(packed" in (r.device or "") for r in ok)


def _epochs_within(dataset, fit: dict, seed: int, seconds: float) -> int:
    """How many epochs of this fit fit in `seconds`, from the time of a one-epoch fit (compile included)."""
    from studies.ptychography import pipeline as P

    t = time.perf_counter()
    P.fit(dataset, {**fit, "epochs": 1}, seed)
    one = time.perf_counter() - t
    return int(max(1, min(fit["epochs"], seconds // max(one, 1e-3))))


def table(rows) -> str:
    head = "| step | what | CPU | GPU | GPU / CPU or quality |\n|---|---|---:|---:|---:|\n"
    return head + "".join(f"| {' | '.join(map(str, r))} |\n" for r in rows)


def machine(cpu_only: bool) -> str:
    gpu = "no GPU (--cpu-only)"
    if not cpu_only:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(0)
        gpu = f"{props['name'].decode()}, {props['totalGlobalMem'] / 2**30:.0f} GiB, CUDA runtime " \
              f"{cp.cuda.runtime.runtimeGetVersion()}, CuPy {cp.__version__}"
    return f"{gpu}; {os.cpu_count()} CPU cores; Python {sys.version.split()[0]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-only", action="store_true", help="every step on the CPU at small sizes (CI, no GPU)")
    ap.add_argument("--batch", type=int, default=None, help="patterns per simulate call (16384; 256 --cpu-only)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per kernel row (the best counts)")
    ap.add_argument("--steps", type=int, default=50, help="training steps timed per device")
    ap.add_argument("--study-minutes", type=float, default=8.0, help="time budget of the study step")
    ap.add_argument("--pack", type=int, default=None, help="runs a pack in the sweep step (6; 2 --cpu-only)")
    ap.add_argument("--sweep-epochs", type=int, default=None, help="epochs a PINN run in the sweep step (10; 1 "
                    "--cpu-only)")
    ap.add_argument("--sweep-spec", default=None, help="the sweep step's spec, as it is (default: the dose "
                    "response at one dose, 3 repeats)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["tests", "kernels", "training", "study", "sweep"])
    ap.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here, after every step")
    a = ap.parse_args(argv)
    batch = a.batch or (256 if a.cpu_only else 16384)
    steps = {"tests": lambda: gpu_tests(a.cpu_only),
             "kernels": lambda: kernel_rows(a.cpu_only, batch, 1 if a.cpu_only else a.repeats),
             "training": lambda: training_rows(a.cpu_only, 5 if a.cpu_only else a.steps),
             "study": lambda: study_rows(a.cpu_only, a.study_minutes),
             "sweep": lambda: sweep_rows(a.cpu_only, a.pack or (2 if a.cpu_only else 6),
                                         *sweep_spec(a.cpu_only, a.sweep_spec, a.sweep_epochs))}
    rows, head = [], f"{machine(a.cpu_only)}; {time.strftime('%Y-%m-%d')}\n\n"
    for name, step in steps.items():
        if name not in a.skip:
            t = time.perf_counter()
            rows += step()
            print(f"{name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            if a.out:  # as each step finishes: a run cut short keeps the steps it did
                a.out.write_text(head + table(rows))
    print(head + table(rows))
    return 1 if any(re.search(r"\bfailed\b", " ".join(map(str, r))) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
