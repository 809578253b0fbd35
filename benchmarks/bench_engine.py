"""Engine overhead and shared-data memory, measured side by side in one run.

(1) N trivial runs through sweeper.run vs the same N functions as raw Ray tasks vs a Ray Tune grid
    (fewer trials; per-run time compared). Goals: sweeper/raw <= 1.5, Tune/sweeper >= 100 per run.
(2) A shared-data sweep of R runs over a ~S MB dataset through sweeper vs raw tasks that pass the
    dataset by value: wall time and peak object-store use. Goal: sweeper's peak <= 1.2 x the dataset.
Run: python benchmarks/bench_engine.py [--runs 1000] [--tune-trials 100] [--shared-runs 100] [--mb 100]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import tempfile
import threading
import time
import types

import numpy as np
import ray

import sweeper


def trivial_simulate(data, seed):
    return {"x": np.full(4, float(seed % 7))}


def trivial_fit(dataset, params, seed):
    return {"metrics": {"v": float(dataset["x"][0]) + params["i"]}}


def big_simulate(data, seed):
    n = int(data["mb"] * 2**20 / 8)
    return {"x": np.random.default_rng(seed).random(n)}


def big_fit(dataset, params, seed):
    return {"metrics": {"m": float(dataset["x"][:: 1 + params["i"]].mean())}}


def raw_fit(x, i):
    return float(x["x"][0]) + i if isinstance(x, dict) else float(x) + i


def raw_big_fit(dataset, i):
    return float(dataset["x"][:: 1 + i].mean())


class StorePeak:
    """Peak bytes in Ray's object store (plasma), sampled from the memory summary in a thread."""

    def __init__(self, every=0.05):
        self.peak, self.every, self._stop = 0, every, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        from ray._private.internal_api import memory_summary

        while not self._stop.is_set():
            text = memory_summary(stats_only=True)
            m = re.search(r"Plasma memory usage (\d+) MiB", text)
            if m:
                self.peak = max(self.peak, int(m.group(1)) * 2**20)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def tune_grid_seconds(fn, n: int, out) -> float:
    """Seconds for a Ray Tune grid_search whose trial i returns fn(i) (a dict of metrics)."""
    from ray import tune

    def trainable(config):
        return fn(config["i"])

    t = time.perf_counter()
    tune.Tuner(trainable, param_space={"i": tune.grid_search(list(range(n)))},
               run_config=tune.RunConfig(storage_path=os.path.join(out, "tune"), verbose=0)).fit()
    return time.perf_counter() - t


def overhead(n_runs, n_tune, out):
    study = types.SimpleNamespace(simulate=trivial_simulate, fit=trivial_fit, __name__="trivial")
    spec = {"study": study, "name": f"trivial{n_runs}", "seed": 1, "data": {}, "fit": {"i": 0},
            "sweep": {"fit.i": list(range(n_runs))}, "save_datasets": False}
    fit = ray.remote(raw_fit)
    ray.get([fit.remote(1.0, i) for i in range(50)])  # warm the worker pool for both
    t = time.perf_counter()
    ref = ray.put(trivial_simulate({}, 1))
    ray.get([fit.remote(ref, i) for i in range(n_runs)])
    raw = (time.perf_counter() - t) / n_runs
    t = time.perf_counter()
    sweeper.run(spec, out=out, progress=False, report=False)
    swp = (time.perf_counter() - t) / n_runs
    rows = [("raw Ray tasks", raw, n_runs), ("sweeper.run (tasks, store, gather)", swp, n_runs)]
    try:
        rows.append(("Ray Tune grid_search", tune_grid_seconds(lambda i: {"v": raw_fit(1.0, i)}, n_tune, out) / n_tune,
                     n_tune))
    except ImportError:
        rows.append(("Ray Tune grid_search (ray[tune] not installed)", float("nan"), 0))
    return rows, swp / raw, (rows[2][1] / swp if len(rows) > 2 else float("nan"))


def shared_memory(n_runs, mb, out, in_flight):
    study = types.SimpleNamespace(simulate=big_simulate, fit=big_fit, __name__="big")
    spec = {"study": study, "name": "shared_big", "seed": 1, "data": {"mb": mb}, "fit": {"i": 0},
            "sweep": {"fit.i": list(range(n_runs))}, "save_datasets": False, "max_in_flight": in_flight}
    dataset_bytes = int(mb * 2**20 / 8) * 8
    with StorePeak() as peak_swp:
        t = time.perf_counter()
        sweeper.run(spec, out=out, progress=False, report=False)
        wall_swp = time.perf_counter() - t
    time.sleep(1.0)
    data = big_simulate({"mb": mb}, 1)
    fit = ray.remote(raw_big_fit)
    with StorePeak() as peak_val:
        t = time.perf_counter()
        pending, i = [], 0
        while i < n_runs or pending:
            while i < n_runs and len(pending) < in_flight:
                pending.append(fit.remote(data, i))  # the dataset is copied into the store per call
                i += 1
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
        wall_val = time.perf_counter() - t
    return dataset_bytes, (wall_swp, peak_swp.peak), (wall_val, peak_val.peak)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--tune-trials", type=int, default=100)
    ap.add_argument("--shared-runs", type=int, default=100)
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--in-flight", type=int, default=8)
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray of its own: no token written to ~/.ray
    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    cpus = int(ray.cluster_resources()["CPU"])
    with tempfile.TemporaryDirectory() as out:
        rows, ratio_raw, ratio_tune = overhead(args.runs, args.tune_trials, out)
        ds, (w_s, p_s), (w_v, p_v) = shared_memory(args.shared_runs, args.mb, out, args.in_flight)
    ray.shutdown()
    print(f"## Engine overhead ({cpus} CPUs)\n")
    print("| what | runs | per run (ms) |\n|---|---:|---:|")
    for label, per, n in rows:
        print(f"| {label} | {n} | {per * 1e3:.2f} |")
    print(f"\nsweeper / raw Ray = {ratio_raw:.2f} (goal <= 1.5); Tune / sweeper per run = {ratio_tune:.0f} "
          f"(goal >= 100)\n")
    print(f"## Shared data: {args.shared_runs} runs over a {ds / 2**20:.0f} MiB dataset, "
          f"{args.in_flight} in flight\n")
    print("| what | wall (s) | peak object store (MiB) | peak / dataset |\n|---|---:|---:|---:|")
    print(f"| sweeper, shared ObjectRef | {w_s:.1f} | {p_s / 2**20:.0f} | {p_s / ds:.2f} |")
    print(f"| raw tasks, dataset passed by value | {w_v:.1f} | {p_v / 2**20:.0f} | {p_v / ds:.2f} |")


if __name__ == "__main__":
    main()
