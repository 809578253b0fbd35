"""A study for fault-tolerance tests: a dataset large enough to live in Ray's object store (not inlined),
fits that take `fit.sleep` seconds, and call logs (`data.calls` / `fit.calls`) that say which node ran what."""
import time

import numpy as np

from sweeper.toolkit import arrays_sha256
from sweeper.toolkit import assigned_gpus

# a spec of this study for CLI tests: fill in CALLS (the fit log), SLEEP (seconds per fit), then % the fit.k values
SPEC = """\
study: tests.studies.slow
name: slow
seed: 5
data: {size: 1000, j: 0, calls: ""}
fit: {k: 0, sleep: SLEEP, calls: CALLS}
sweep: {fit.k: [%s]}
resources: {num_cpus: 1}
"""


def recorded(name_dir) -> dict:
    """{run_id: status} of the runs recorded so far by the sweeps in OUT/<name> (what a resume would skip)."""
    from sweeper.toolkit import SweepStore

    return {rid: st for p in SweepStore(name_dir).paths.sweeps_in(name_dir) for rid, st in SweepStore(p.root).records.statuses().items()}


def record_counts(root) -> dict:
    """How many records each run has across a sweep's shards (1 unless it was saved twice)."""
    import collections

    import pyarrow.parquet as pq

    from sweeper.toolkit import SweepStore

    return collections.Counter(rid for shard in SweepStore(root).records.shards()
                               for rid in pq.read_table(shard, columns=["run_id"]).column("run_id").to_pylist())


def _node() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    except Exception:
        return "local"


def _log(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def simulate(data, seed):
    x = np.random.default_rng(seed).standard_normal(data["size"])
    _log(data.get("calls"), f"simulate {data['j']} {_node()}")
    return {"x": x, "simulated_on_gpus": np.asarray(assigned_gpus(), dtype=np.int64)}


def fit(dataset, params, seed):
    _log(params.get("calls"), f"fit {params['k']} {_node()}")
    start = time.time()
    time.sleep(params["sleep"])
    sha = arrays_sha256(dict(dataset))
    sim_gpus = float(len(dataset["simulated_on_gpus"]))
    return {"metrics": {"k": params["k"], "data_hash_lo": float(int(sha[:12], 16)), "start": start,
                        "end": time.time(), "simulate_gpus": sim_gpus}}
