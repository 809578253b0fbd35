"""The driver's memory over a sweep of many trivial runs (issue 37, point 4), measured side by side in one run:
this checkout against another (`--against DIR`, e.g. a `git worktree` of an older commit).

Each checkout runs the same sweep in a fresh process: N runs of the linear test study, each on its own dataset
(independent data: the worst case for what the driver keeps per dataset). A thread samples the process's RSS
every 50 ms; the scheduler's containers (runs made and waiting, datasets' metadata and counts, the saver's
writes not yet done) are counted at every tick of its wait loop. Printed: RSS when the scheduler starts, its peak while
runs are scheduled (before the gather), and the largest count of each container.
Run: python benchmarks/bench_driver_memory.py [--runs 100000] [--against /tmp/old-checkout]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, {repo!r})
import sweeper
from sweeper.execution import scheduler as sched
from sweeper.store.sweep_store import SweepStore

page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 1e6
seen = {{"phase": "plan", "start": None, "peak": 0.0, "counts": {{}}}}

def sample():
    while seen["phase"] != "done":
        if seen["phase"] == "schedule":
            seen["peak"] = max(seen["peak"], rss())
        time.sleep(0.05)

def count(s):
    found = {{"runs made, not submitted": len(s.queue.new), "tasks in flight": len(s.queue.pending),
              "datasets' metadata": len(s.datasets.meta), "datasets' counts": len(s.datasets.remaining),
              "saver writes not done": getattr(s.saver, "outstanding", None) if hasattr(s.saver, "outstanding")
              else len(s.saver.writes)}}
    for k, v in found.items():
        seen["counts"][k] = max(seen["counts"].get(k, 0), v)

run, tick, gather = sched.Scheduler.run, sched.Saver.tick, SweepStore.gather
def run_(self):
    seen["phase"], seen["start"], self.saver._owner = "schedule", rss(), self
    return run(self)
def tick_(self):
    count(self._owner)
    return tick(self)
def gather_(self, ids):
    seen["phase"] = "gather"
    return gather(self, ids)
sched.Scheduler.run, sched.Saver.tick, SweepStore.gather = run_, tick_, gather_
threading.Thread(target=sample, daemon=True).start()
t = time.time()
res = sweeper.run({{"study": "tests.fixtures.linear", "seed": 1, "data": {{"n": 4, "a": 1.0, "b": 0.0, "noise": 0.1}},
                   "repeats": {runs}, "data_mode": "independent"}}, out={out!r}, progress=False, report=False)
seen["phase"] = "done"
print("RESULT", json.dumps({{"runs": res.counts()["ok"], "seconds": time.time() - t, "rss_start": seen["start"],
                             "rss_peak": seen["peak"], "counts": seen["counts"]}}))
"""


def measure(repo: Path, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(repo=str(repo), runs=runs, out=str(Path(tmp) / "out"))
        done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{repo}: {done.stderr[-2000:]}")
    return json.loads(line[7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--against", type=Path, help="another checkout (an older commit) to run the same sweep")
    args = ap.parse_args()
    found = {"this checkout": measure(REPO, args.runs)}
    if args.against:
        found[f"{args.against}"] = measure(args.against, args.runs)
    names = list(found)
    print(f"| {args.runs:,} trivial runs, independent data | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    print("| runs ok, wall time | " + " | ".join(f"{f['runs']:,}, {f['seconds']:.0f} s" for f in found.values()) + " |")
    print("| RSS when the scheduler starts | " + " | ".join(f"{f['rss_start']:.0f} MB" for f in found.values()) + " |")
    print("| peak RSS while scheduling | " + " | ".join(f"{f['rss_peak']:.0f} MB" for f in found.values()) + " |")
    for k in found[names[0]]["counts"]:
        print(f"| most {k} | " + " | ".join(f"{f['counts'].get(k, 'n/a'):,}" for f in found.values()) + " |")


if __name__ == "__main__":
    main()
