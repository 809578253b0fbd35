"""ePIE's modulus projection against gradient steps on the Poisson likelihood, on the dose series' data.

One table for benchmarks/RESULTS.md: PSNR / SSIM of the test reconstruction (the study's own scoring) of the
first repeat's dataset at each dose of studies/ptychography/specs/dose_series.yaml, for 100 and 300 iterations.
Run: python benchmarks/bench_epie.py [--iterations 100 300]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, nargs="+", default=[100, 300])
    a = ap.parse_args(argv)
    from kernels import operators, solvers
    from studies.ptychography import pipeline as P
    from sweeper import expand, load_spec

    runs = expand(load_spec(REPO / "studies" / "ptychography" / "specs" / "dose_series.yaml", ["fit.model=epie", "fit.loss=nll"])).runs
    columns = [(lik, it) for lik in ("amplitude", "poisson") for it in a.iterations]
    print("| photons | " + " | ".join(f"{lik}, {it} it." for lik, it in columns) + " |")
    print("|---:|" + "---:|" * len(columns))
    for run in (r for r in runs if r.repeat_data == 0):
        d = P.simulate(run.data, run.seed_data)
        weight = operators.coverage(d["probe"], d["test_positions"], d["object"].shape)
        cells = []
        for lik, it in columns:
            rec, _ = solvers.epie(d["test_amplitudes"], d["test_positions"], d["probe"], d["object"].shape,
                                  float(d["scale"]), iterations=it, likelihood=lik)
            m = P.score(d["object"], np.where(weight >= 0.05 * weight.max(), rec, np.nan))
            cells.append(f"{m['psnr']:.1f} dB / {m['ssim']:.3f}")
        print(f"| {run.data['nphotons']:.0e} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
