"""What pinning a PINN run's CPU numerics costs (issue 36, point 3), side by side in one run: the quick
dose-response spec's NLL run at 1e9 photons, `--concurrent` copies at once (the study runs two on 2 cores),
under four settings, each round in alternation: TensorFlow's and oneDNN's defaults, the intra-op threads
pinned, oneDNN's ISA pinned, both pinned (what `pipeline.setup()` does). Prints each setting's fit time
(median over its runs) and its ratio to the defaults, and each setting's SSIM (equal across rounds: every
setting is deterministic on one machine).
Run: python benchmarks/bench_cpu_numerics.py [--epochs 8 --rounds 2 --concurrent 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "studies" / "ptychography" / "specs" / "dose_response.yaml"
# "0" and "ALL" are TensorFlow's and oneDNN's own words for "choose by the machine": setup() keeps them
SETTINGS = {"defaults": {"TF_NUM_INTRAOP_THREADS": "0", "ONEDNN_MAX_CPU_ISA": "ALL"},
            "threads pinned": {"ONEDNN_MAX_CPU_ISA": "ALL"},
            "ISA pinned (AVX2)": {"TF_NUM_INTRAOP_THREADS": "0"},
            "both pinned (setup())": {}}
CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
from studies.ptychography import pipeline as P
P.setup()
data = P.simulate({data!r}, 1)
t = time.perf_counter()
out = P.fit(data, {fit!r}, 2)
print(json.dumps({{"fit_s": time.perf_counter() - t, "ssim": out["metrics"]["ssim"]}}))
"""


def _run(epochs: int):
    """The spec's NLL run at 1e9 photons (its data and fit), at `epochs`."""
    from sweeper import expand, load_spec

    overrides = ["data.nphotons=1e9", "fit.model=pinn", "fit.loss=nll", f"fit.epochs={epochs}", "fit.save_model=false",
                 "repeats=1"]
    return expand(load_spec(SPEC, overrides)).runs[0]


def _round(env: dict, concurrent: int, child: str) -> list[dict]:
    from studies.ptychography.pipeline import CPU_NUMERICS_ENV

    base = {k: v for k, v in os.environ.items() if k not in CPU_NUMERICS_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", child], env={**base, "KERAS_BACKEND": "tensorflow",
                              "TF_CPP_MIN_LOG_LEVEL": "3", **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for _ in range(concurrent)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=2)
    args = ap.parse_args()
    run = _run(args.epochs)
    child = CHILD.format(repo=str(REPO), data=run.data, fit=run.fit)
    runs = {name: [] for name in SETTINGS}
    for r in range(args.rounds):
        for name, env in SETTINGS.items():
            runs[name] += _round(env, args.concurrent, child)
            print(f"round {r + 1}: {name}: {[round(x['fit_s'], 1) for x in runs[name][-args.concurrent:]]}",
                  file=sys.stderr)
    base = statistics.median(x["fit_s"] for x in runs["defaults"])
    print(f"| setting ({args.concurrent} at once, {args.epochs} epochs, {args.rounds} rounds) | fit time, median "
          f"(s) | ratio to defaults | SSIM |\n|---|---:|---:|---:|")
    for name, xs in runs.items():
        t = statistics.median(x["fit_s"] for x in xs)
        ssims = sorted({round(x["ssim"], 8) for x in xs})
        print(f"| {name} | {t:.1f} | {t / base:.2f} | {', '.join(map(str, ssims))} |")


if __name__ == "__main__":
    main()
