"""Time PtychoPINN's own simulator (RawData.from_simulation: patches, probe, far field, Poisson draw) on an
object, probe and positions exported by vs_ptychopinn.py; print one JSON line of patterns/s.

Runs in PtychoPINN's environment (its source on the path, TF_USE_LEGACY_KERAS=1); imports nothing of ours.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", help="NPZ with object, probe, positions (row, col of each patch centre), nphotons")
    ap.add_argument("--src", required=True, help="a checkout of github.com/hoidn/PtychoPINN")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.src))
    from ptycho import params as p
    from ptycho.raw_data import RawData

    d = np.load(args.inputs)
    obj, probe, pos = d["object"], d["probe"], d["positions"]
    p.cfg.update({"N": int(probe.shape[-1]), "gridsize": 1, "nphotons": float(d["nphotons"])})
    times = []
    for _ in range(args.repeats + 1):  # the first call traces TensorFlow's functions: not timed
        t0 = time.perf_counter()
        raw = RawData.from_simulation(pos[:, 1], pos[:, 0], probe, obj, np.zeros(len(pos), int))
        times.append(time.perf_counter() - t0)
    assert raw.diff3d.shape[0] == len(pos)
    print(json.dumps({"patterns": len(pos), "seconds": times[1:],
                      "patterns_per_s": len(pos) / float(np.median(times[1:]))}))


if __name__ == "__main__":
    main()
