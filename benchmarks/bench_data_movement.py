"""Issue 34 benchmark: how many bytes a sweep moves between the nodes of a cluster, against the least it must.

A `ray.cluster_utils.Cluster` of 4 nodes on this machine (the head, where the driver runs, without CPUs; 3
workers with 2 CPUs each), so every byte between nodes crosses the loopback interface: its tx counter, read
before and after each sweep, less the same sweep's count with a 1 KB dataset (Ray's own chatter), is what the
data cost.

- shared data: 40 runs fitting one dataset of --mb MB. The least: the dataset reaches each of the other 3
  nodes once (two workers fit it, the head saves it: `save_datasets`), (nodes - 1) x size.
- independent data: --datasets runs, each on its own dataset of --mb MB, saved by the driver. The least: each
  dataset reaches the head once to be saved (a dataset fitted on another node than the one that simulated it
  would cross a second time).

Run: python benchmarks/bench_data_movement.py [--mb 100] [--datasets 12]
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

if "RAY_AUTH_MODE" not in os.environ:  # token authentication, as on a real cluster, with a token of its own
    _token = Path(tempfile.mkdtemp(prefix="bench_auth")) / "auth_token"
    _token.write_text(secrets.token_hex(32))
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(_token))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import sweeper  # noqa: E402

MB = 2 ** 20


class Data(sweeper.Params):
    mb: float = 1.0
    j: int = 0


class Fit(sweeper.Params):
    k: int = 0
    sleep: float = 0.3


def simulate(data, seed):
    return {"x": np.random.default_rng(seed).standard_normal(int(data["mb"] * MB / 8))}


def fit(dataset, params, seed):
    time.sleep(params["sleep"])
    return {"metrics": {"first": float(dataset["x"][0])}}


STUDY = sweeper.Study("movement", simulate, fit, data_params=Data, fit_params=Fit)


def loopback_tx() -> int:
    return int(Path("/sys/class/net/lo/statistics/tx_bytes").read_text())


def spec(mode: str, mb: float, n: int) -> dict:
    if mode == "shared":
        return {"study": STUDY, "name": f"shared_{mb:g}", "seed": 1, "data": {"mb": mb},
                "zip": {"fit.k": list(range(n))}}
    return {"study": STUDY, "name": f"independent_{mb:g}", "seed": 1, "data": {"mb": mb},
            "zip": {"data.j": list(range(n)), "fit.k": list(range(n))}, "fit": {"sleep": 0.5}}


def moved(mode: str, mb: float, n: int, out: Path) -> tuple[int, int]:
    """(loopback bytes during the sweep, worker nodes that ran its runs)."""
    before = loopback_tx()
    result = sweeper.run(spec(mode, mb, n), out=out, progress=False, report=False)
    after = loopback_tx()
    assert result.counts()["ok"] == n, result.errors()
    return after - before, len(set(result.table.column("node").to_pylist()))


def main(mb: float, datasets: int) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "object_store_memory": 1200 * MB})
    for _ in range(3):
        cluster.add_node(num_cpus=2, object_store_memory=int(max(4 * mb, 300) * MB))
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    cluster.wait_for_nodes()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode, n, least_copies in (("shared", 40, 3), ("independent", datasets, datasets)):
                base, _ = moved(mode, 1 / 1024, n, Path(tmp) / "base")
                raw, nodes = moved(mode, mb, n, Path(tmp) / "real")
                data = raw - base
                least = least_copies * mb * MB
                rows.append((mode, n, nodes, raw / MB, base / MB, data / MB, least / MB, data / least))
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"4 nodes (head without CPUs, where the driver saves datasets; 3 workers x 2 CPUs), {mb:g} MB datasets")
    print("| data | runs | worker nodes used | loopback MB | with 1 KB data MB | data MB | least MB | data / least |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, n, nodes, raw, base, data, least, ratio in rows:
        print(f"| {mode} | {n} | {nodes} | {raw:.0f} | {base:.0f} | {data:.0f} | {least:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--mb", type=float, default=100)
    a.add_argument("--datasets", type=int, default=12)
    args = a.parse_args()
    main(args.mb, args.datasets)
