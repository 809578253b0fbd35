"""Scale, measured side by side in one run: one table for benchmarks/RESULTS.md (issue: scale).

(1) plan: `sweep plan` of several 10^6-run shapes, each in a fresh process: wall time and peak memory (max
    RSS). Goal: every shape <= 30 s and <= 1 GB (issue 26).
(2) trivial runs: N runs through sweeper.run, as raw Ray tasks (one per run) and as a plain loop.
    Goal: sweeper <= 1.0x raw Ray tasks.
(3) resume: `sweeper.run` of the finished sweep of (2) again (nothing to run). Goal: <= 2 s for 20,000 runs.
(4) store: write 100,000 run records as the driver does (shards of 5,000) and read them back (what resume
    and the gather read), against the earlier layout: one result.json per run.
Run: python benchmarks/bench_scale.py [--runs 20000] [--records 100000]
     [--only plan trivial resume store]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LINEAR = {"study": "tests.fixtures.linear", "seed": 1, "data": {"n": 10, "a": 1.0, "b": 0.0, "noise": 0.1},
          "fit": {"k": 0}}
RECOVERY = {"study": "studies.recovery.parameter_recovery", "seed": 1}
# each shape 10^6 runs: (name, spec)
SHAPES = [
    ("1,000 data points x 1,000 fit values, shared data",
     {**LINEAR, "sweep": {"data.a": [float(i) for i in range(1000)], "fit.k": list(range(1000))}}),
    ("10,000 data points x 10 fit values x 10 repeats, shared data",
     {**LINEAR, "sweep": {"data.a": [float(i) for i in range(10_000)], "fit.k": list(range(10))}, "repeats": 10}),
    ("1,000,000 data points, independent data",
     {**LINEAR, "sweep": {"data.a": [float(i) for i in range(10 ** 6)]}, "data_mode": "independent"}),
    ("100 x 100 points x 10 datasets x 10 fits each, crossed data",
     {**LINEAR, "sweep": {"data.a": [float(i) for i in range(100)], "fit.k": list(range(100))},
      "data_mode": "crossed", "repeats": {"data": 10, "fit": 10}}),
    ("parameter recovery (pydantic params): 1,000 data x 1,000 fit values, independent seeds",
     {**RECOVERY, "sweep": {"data.nsamples": list(range(1, 1001)), "fit.max_iter": list(range(1, 1001))},
      "seeds": "independent"}),
]

PLAN = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from sweeper.cli import main
t = time.perf_counter()
main(["plan", {spec!r}, "--max-runs", "1000000"])
print("PLAN", time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def plan_rows(shapes=SHAPES) -> list:
    """`sweep plan` of each 10^6-run shape in a fresh process: wall time and peak memory (max RSS).
    Goal: each <= 30 s and <= 1 GB."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, spec) in enumerate(shapes):
            path = Path(tmp) / f"shape{i}.yaml"
            path.write_text(json.dumps({"name": f"shape{i}", **spec}))  # JSON is YAML
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", PLAN.format(repo=str(REPO), spec=str(path))],
                                 capture_output=True, text=True, timeout=3600, cwd=REPO)
            wall = time.perf_counter() - t
            if out.returncode:
                rows.append((f"sweep plan: {name}", "failed: " + out.stderr.strip().splitlines()[-1], "", ""))
                continue
            _, inside, rss = out.stdout.strip().splitlines()[-1].split()
            runs = next(ln for ln in out.stdout.splitlines() if " runs, " in ln).split()[0]
            rows.append((f"sweep plan: {name}", f"{wall:.1f} s ({float(inside):.1f} s after imports)",
                         f"{float(rss):,.0f} MB peak RSS", f"{runs} runs"))
    return rows


def trivial_simulate(data, seed):
    import numpy as np

    return {"x": np.full(4, float(seed % 7))}


def trivial_fit(dataset, params, seed):
    return {"metrics": {"v": float(dataset["x"][0]) + params["i"]}}


def raw_fit(x, i):
    return float(x["x"][0]) + i


def trivial_rows(n_runs: int, out: str) -> tuple[list, dict]:
    import ray

    import sweeper

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    study = types.SimpleNamespace(simulate=trivial_simulate, fit=trivial_fit, __name__="trivial")
    spec = {"study": study, "name": "trivial", "seed": 1, "data": {}, "fit": {"i": 0},
            "sweep": {"fit.i": list(range(n_runs))}, "save_datasets": False}
    data = trivial_simulate({}, 1)
    t = time.perf_counter()
    for i in range(n_runs):
        trivial_fit(data, {"i": i}, i)
    loop = time.perf_counter() - t
    fit = ray.remote(raw_fit)
    ray.get([fit.remote(data, i) for i in range(50)])  # warm the worker pool for both
    t = time.perf_counter()
    ref = ray.put(data)
    ray.get([fit.remote(ref, i) for i in range(n_runs)])
    raw = time.perf_counter() - t
    t = time.perf_counter()
    sweeper.run(spec, out=out, progress=False, report=False)
    swp = time.perf_counter() - t
    rows = [(f"{n_runs:,} trivial runs: plain loop, 1 core", f"{loop * 1e3:.1f} ms", f"{loop / n_runs * 1e6:.2f} us/run", ""),
            (f"{n_runs:,} trivial runs: raw Ray tasks", f"{raw:.1f} s", f"{raw / n_runs * 1e3:.2f} ms/run", "1.00"),
            (f"{n_runs:,} trivial runs: sweeper.run", f"{swp:.1f} s", f"{swp / n_runs * 1e3:.2f} ms/run",
             f"{swp / raw:.2f} x raw")]
    return rows, spec


def resume_rows(spec: dict, n_runs: int, out: str) -> list:
    import sweeper

    t = time.perf_counter()
    res = sweeper.run(spec, out=out, progress=False, report=False)
    took = time.perf_counter() - t
    assert res.counts()["ok"] == n_runs
    return [(f"resume of the finished {n_runs:,}-run sweep", f"{took:.2f} s", f"{took / n_runs * 1e6:.0f} us/run",
             "")]


def store_times(sd, write, ids) -> tuple:
    """(seconds to write, (runs done, seconds to find them), (results rows, seconds to gather them))."""
    from sweeper.toolkit import SweepStore

    t = time.perf_counter()
    write(sd)
    written = time.perf_counter() - t
    t = time.perf_counter()
    done = len(SweepStore(sd.root).completed(ids))
    done_s = time.perf_counter() - t
    t = time.perf_counter()
    rows = SweepStore(sd.root).read_results(ids).num_rows
    return written, (done, done_s), (rows, time.perf_counter() - t)


def store_rows(n: int, out: str) -> list:
    """Run records for n runs: Parquet shards (now) against one result.json per run (before)."""
    import json as js
    import os

    from sweeper import RunRecord
    from sweeper.toolkit import SweepStore

    records = [{"run_id": f"{i:016x}", "data_key": f"{i // 10:016x}", "status": "ok", "error": None,
                "duration_s": 0.01, "attempt": 1, "node": "n", "device": "cpu", "repeat_data": 0,
                "repeat_fit": 0, "seed_data": i, "seed_fit": i, "session": None, "data": {"a": i / 7},
                "fit": {"k": i % 10}, "metrics": {"v": i * 0.5, "w": 1.0}} for i in range(n)]
    ids = [r["run_id"] for r in records]
    typed = [RunRecord.from_json(r) for r in records]  # what the scheduler hands the store

    def write_shards(sd):
        for i in range(0, n, 5000):
            sd.append_records(typed[i:i + 5000])

    def write_files(sd):  # the per-run layout the records replace
        for r in records:
            os.makedirs(sd.paths.runs / r["run_id"])
            (sd.paths.runs / r["run_id"] / "result.json").write_text(js.dumps(r))

    (write_new, done_new, rows_new), (write_old, done_old, rows_old) = (
        store_times(SweepStore(Path(out) / name), write, ids) for name, write in (("store", write_shards),
                                                                               ("old", write_files)))
    resume_new, resume_old = done_new[1], done_old[1]
    gather_new, gather_old = rows_new[1], rows_old[1]
    done_new, done_old, rows_new, rows_old = done_new[0], done_old[0], rows_new[0], rows_old[0]
    assert done_new == done_old == rows_new == rows_old == n
    return [(f"store: write {n:,} run records", f"{write_new:.2f} s (per-run files {write_old:.1f} s)",
             f"{write_new / n * 1e6:.0f} us/run", f"{write_new / write_old:.3f} x per-run files"),
            (f"store: which of {n:,} runs are done (resume)", f"{resume_new:.2f} s (per-run files {resume_old:.1f} s)",
             f"{resume_new / n * 1e6:.1f} us/run", f"{resume_new / resume_old:.3f} x per-run files"),
            (f"store: results table of {n:,} runs (gather)", f"{gather_new:.2f} s (per-run files {gather_old:.1f} s)",
             f"{gather_new / n * 1e6:.0f} us/run", f"{gather_new / gather_old:.3f} x per-run files")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--only", nargs="+", default=["plan", "trivial", "resume", "store"],
                    choices=["plan", "trivial", "resume", "store"])
    a = ap.parse_args(argv)
    rows = plan_rows() if "plan" in a.only else []
    with tempfile.TemporaryDirectory() as out:
        if {"trivial", "resume"} & set(a.only):
            more, spec = trivial_rows(a.runs, out)
            rows += more
            if "resume" in a.only:
                rows += resume_rows(spec, a.runs, out)
        if "store" in a.only:
            rows += store_rows(a.records, out)
    print(f"2 Ray CPUs; driver max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB\n")
    print("| what | time | per unit | ratio |\n|---|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
