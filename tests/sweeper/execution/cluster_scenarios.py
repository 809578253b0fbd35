"""Multi-node scenarios on one machine with ray.cluster_utils.Cluster, each in its own process (the test
session's own Ray stays untouched). `python tests/sweeper/execution/cluster_scenarios.py NAME OUT_DIR` prints one JSON line."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import sweeper  # noqa: E402
from tests.fixtures.slow import recorded  # noqa: E402
from tests.sweeper.execution.real_cluster import auth_env  # noqa: E402


def slow_spec(name, out, runs, sleep, resources, size=50_000, per_run_data=False, **extra):
    """`runs` runs of the slow study on one shared dataset, or (per_run_data) each on its own."""
    return {"study": "tests.fixtures.slow", "name": name, "seed": 1,
            "data": {"size": size, "calls": str(Path(out) / "simulate.calls"), "j": 0},
            "fit": {"k": 0, "sleep": sleep, "calls": str(Path(out) / "fit.calls")},
            "zip": {"fit.k": list(range(runs)), **({"data.j": list(range(runs))} if per_run_data else {})},
            "resources": resources, "save_datasets": False, **extra}


def rows(table):
    cols = ["run_id", "status", "attempt", "node", "device", "data_sha256", "metrics.k", "metrics.data_hash_lo",
            "metrics.start", "metrics.end", "error"]
    return [{c: r.get(c) for c in cols} for r in table.to_pylist()]


def gpu_placement(cluster, workers, out):
    """Runs asking a whole GPU land on GPU nodes only; 0.5-GPU runs pair up on one GPU."""
    whole = sweeper.run(slow_spec("whole", out / "whole", 4, 0.2, {"num_cpus": 1, "num_gpus": 1}),
                        out=out / "whole", progress=False)
    half = sweeper.run(slow_spec("half", out / "half", 4, 2.0, {"num_cpus": 0.5, "num_gpus": 0.5}),
                       out=out / "half", progress=False)
    on_gpu = slow_spec("simgpu", out / "simgpu", 3, 0.1, {"num_cpus": 1, "simulate": {"num_gpus": 1}},
                      save_datasets=True)
    simgpu = sweeper.run(on_gpu, out=out / "simgpu", progress=False)
    metas = [json.loads(p.read_text()) for p in simgpu.paths.datasets.glob("*.json")]
    return {"whole": rows(whole.table), "half": rows(half.table), "simgpu": rows(simgpu.table),
            "simgpu_gpus": simgpu.table.column("metrics.simulate_gpus").to_pylist(),
            "simgpu_meta_devices": [m.get("device") for m in metas]}


def _lines(path: Path) -> list:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def node_loss(cluster, workers, out, runs=40, sleep=0.3, kill_after=10, per_run_data=False):
    """Kill a worker node once `kill_after` runs are written: the one that simulated the shared dataset, or
    (per_run_data) one that holds a dataset whose run has not started, so that only Ray's lineage can
    bring that dataset back."""
    # per_run_data: simulate asks its own resources, so it is a task of its own (not fused with its run's fit)
    # and a dataset can live on a node its run has not reached
    resources = {"num_cpus": 1, **({"simulate": {"num_cpus": 1}} if per_run_data else {})}
    spec = slow_spec("loss", out, runs, sleep, resources, per_run_data=per_run_data, retries=2)
    box, t0 = {}, time.perf_counter()
    th = threading.Thread(target=lambda: box.update(res=sweeper.run(spec, out=out, progress=False)))
    th.start()
    runs_dir = out / "loss"
    killed = None
    while th.is_alive() and killed is None:
        done = len(recorded(runs_dir))
        sims, fits = _lines(out / "simulate.calls"), _lines(out / "fit.calls")  # "simulate j node", "fit k node"
        started_k = {k for _, k, _ in fits}
        holders = [node for _, j, node in sims if not per_run_data or j not in started_k]
        if done >= kill_after and holders:
            victim = next(w for w in workers if w.node_id == holders[0])
            started = len(fits)
            cluster.remove_node(victim)
            killed = {"node": victim.node_id, "written_at_kill": done, "started_at_kill": started,
                      "t_kill": time.perf_counter() - t0}
        time.sleep(0.05)
    th.join()
    return {"killed": killed, "seconds": time.perf_counter() - t0, "rows": rows(box["res"].table),
            "simulate_calls": (out / "simulate.calls").read_text().splitlines(),
            "fit_calls": [int(k) for _, k, _ in _lines(out / "fit.calls")]}  # the k of every fit started


SCENARIOS = {"gpu_placement": gpu_placement, "node_loss": node_loss}


def in_subprocess(name, out, timeout=300, **kw) -> dict:
    """Run scenario `name` in a fresh Python process (its own Ray cluster) and return its JSON result."""
    env = {**auth_env(Path(out)), "PYTHONPATH": str(REPO)}  # Ray's token authentication on, a token of its own
    p = subprocess.run([sys.executable, __file__, name, str(out), json.dumps(kw)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=REPO)
    if p.returncode:
        raise RuntimeError(f"scenario {name} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(name, out, **kw):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        result = SCENARIOS[name](cluster, workers, out, **kw)
        result["workers"] = [w.node_id for w in workers]
        print(json.dumps(result, default=str))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
