"""Issue 7 benchmark: a 200-run sweep on a head + two 2-CPU worker nodes (ray.cluster_utils.Cluster on this
machine), with one worker node killed when half the runs are written vs no kill: time to finish and the
number of runs executed twice (the goal: only those in flight on the lost node).

Run: python benchmarks/bench_fault_tolerance.py [--runs 200] [--sleep 0.1]
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sweeper.execution.cluster_scenarios import in_subprocess  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--sleep", type=float, default=0.1, help="seconds each fit takes")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kill_after in [("no node lost", args.runs + 1), ("1 of 2 workers killed halfway", args.runs // 2)]:
            r = in_subprocess("node_loss", Path(tmp) / label.replace(" ", "_"), timeout=900, runs=args.runs,
                              sleep=args.sleep, kill_after=kill_after)
            ok = collections.Counter(x["status"] for x in r["rows"])["ok"]
            retried = sum(x["attempt"] > 1 for x in r["rows"])
            k = r["killed"] or {}
            in_flight = k.get("started_at_kill", 0) - k.get("written_at_kill", 0)
            rows.append((label, r["seconds"], ok, len(r["rows"]), len(r["fit_calls"]) - args.runs, retried, in_flight,
                         len(r["simulate_calls"])))
    print(f"{args.runs} runs of {args.sleep} s on 2 worker nodes x 2 CPUs (shared dataset)\n")
    print("| what | wall (s) | ok / rows | runs executed twice | runs with attempt > 1 | in flight at the kill "
          "(both nodes) | simulate calls |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, s, ok, n, twice, retried, in_flight, sims in rows:
        print(f"| {label} | {s:.1f} | {ok} / {n} | {twice} | {retried} | {in_flight} | {sims} |")
    print(f"\nkilled / no kill wall time = {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
