"""Issue 6 benchmark: a 500-run parameter-recovery sweep (a new dataset per run, nsamples=1000) through
the engine, vs simulate + fit in a plain loop on one core, vs a Ray Tune grid of a sample of the same runs.

Run: python benchmarks/bench_recovery.py [--runs 500] [--tune-runs 50]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray of its own: no token written to ~/.ray
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray  # noqa: E402

import sweeper  # noqa: E402
from benchmarks.bench_engine import tune_grid_seconds  # noqa: E402
from studies.recovery import parameter_recovery as pr  # noqa: E402
from sweeper import expand, load_spec  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "studies" / "recovery" / "specs" / "parameter_recovery.yaml"


def spec_for(n_runs: int) -> list:
    return ["+data_mode=independent", f"+repeats={n_runs}", "name=bench_recovery"]


def plain_loop(runs) -> float:
    t = time.perf_counter()
    for r in runs:
        pr.fit(pr.simulate(r.data, r.seed_data), r.fit, r.seed_fit)
    return time.perf_counter() - t


def tune_grid(runs, out) -> float:
    def trial(i):
        r = runs[i]
        return pr.fit(pr.simulate(r.data, r.seed_data), r.fit, r.seed_fit)["metrics"]

    return tune_grid_seconds(trial, len(runs), out)


def cpu_seconds() -> dict:
    """CPU time so far of this process, of Ray's workers and of Ray's other processes (raylet, GCS, ...)."""
    import psutil

    me = psutil.Process()
    out = {"driver": sum(me.cpu_times()[:2]), "ray workers": 0.0, "ray system": 0.0}
    for p in me.children(recursive=True):
        try:
            name = p.name() + " " + " ".join(p.cmdline()[:1])
            t = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
        out["ray workers" if "ray::" in name or "default_worker" in name else "ray system"] += t
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--tune-runs", type=int, default=50)
    args = ap.parse_args(argv)
    overrides = spec_for(args.runs)
    runs = expand(load_spec(SPEC, overrides)).runs
    cpus = os.cpu_count()
    with tempfile.TemporaryDirectory() as out:
        loop_n = min(len(runs), 100)
        loop_s = plain_loop(runs[:loop_n])
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            sweeper.run(str(SPEC), ["data_mode=independent", "repeats=8", "name=warmup"], out=out, progress=False,
                        report=False)  # start the workers and import the study, as a long sweep would have
            cpu0, t = cpu_seconds(), time.perf_counter()
            res = sweeper.run(str(SPEC), overrides, out=out, progress=False, report=False)
            engine_s = time.perf_counter() - t
            cpu = {k: v - cpu0[k] for k, v in cpu_seconds().items()}
            assert res.counts()["ok"] == len(runs), res.counts()
            t = time.perf_counter()
            sweeper.run(str(SPEC), overrides, out=out, progress=False, report=True)
            report_s = time.perf_counter() - t
            try:
                tune_s = tune_grid(runs[:args.tune_runs], out)
            except ImportError:  # ray[tune] is the [bench] extra
                tune_s = float("nan")
        finally:
            ray.shutdown()
    rate = {"plain loop, 1 core (first %d runs)" % loop_n: loop_n / loop_s,
            f"sweeper.run, {cpus} CPUs (simulate, fit, store, gather)": len(runs) / engine_s,
            f"Ray Tune grid, {cpus} CPUs ({args.tune_runs} runs)": args.tune_runs / tune_s}
    print(f"{len(runs)}-run parameter-recovery sweep, nsamples=1000, a new dataset per run\n")
    print("| what | runs/s | ms per run |\n|---|---:|---:|")
    for k, v in rate.items():
        print(f"| {k} | {v:.1f} | {1000 / v:.1f} |")
    vals = list(rate.values())
    print("\nCPU seconds during the sweep: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) +
          f" (wall {engine_s:.1f} s x {cpus} cores = {engine_s * cpus:.1f}; the fits alone take "
          f"{len(runs) * loop_s / loop_n:.1f})")
    print(f"\nsweeper / plain loop = {vals[1] / vals[0]:.2f} (bound: {cpus} cores); sweeper / Tune = "
          f"{vals[1] / vals[2]:.1f}; report + gather on the finished sweep (resume, nothing to run): {report_s:.1f} s")


if __name__ == "__main__":
    main()
