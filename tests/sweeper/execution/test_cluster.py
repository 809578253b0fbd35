"""Multi-node placement and fault tolerance: GPU placement, a node lost mid-sweep, a killed or interrupted
driver, a second driver refused. Each scenario runs in its own process with its own Ray."""
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.sweeper.execution.cluster_scenarios import in_subprocess
from tests.fixtures.slow import SPEC as SLOW, record_counts, recorded
from tests import REPO

pytestmark = pytest.mark.slow  # multi-node clusters and drivers of their own

# a local Ray of its own: Ray's default token mode would write a token into this machine's ~/.ray (auth is tested
# with real clusters in tests/sweeper/execution/test_real_cluster.py and cluster_scenarios.py)
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}


def test_gpu_runs_land_on_gpu_nodes_and_half_gpus_share_one(tmp_path):
    r = in_subprocess("gpu_placement", tmp_path)
    gpu_nodes = {w[:12] for w in r["workers"]}
    whole, half = r["whole"], r["half"]
    assert all(x["status"] == "ok" and x["device"] == "gpu:0" for x in whole + half)
    assert {x["node"].split("@")[0] for x in whole} <= gpu_nodes  # never the GPU-less head
    # four 0.5-GPU runs of 2 s on two 1-GPU nodes: two at a time on each node's one GPU
    by_node = {}
    for x in half:
        by_node.setdefault(x["node"], []).append((x["metrics.start"], x["metrics.end"]))
    assert sorted(len(v) for v in by_node.values()) == [2, 2]
    for (s1, e1), (s2, e2) in by_node.values():
        assert s1 < e2 and s2 < e1  # the two runs on one GPU overlapped in time
    # resources.simulate.num_gpus: the simulate task got a GPU (the study saw it), the CPU-only runs did not
    assert all(x["status"] == "ok" and x["device"] == "cpu" for x in r["simgpu"])
    assert r["simgpu_gpus"] == [1.0, 1.0, 1.0] and r["simgpu_meta_devices"] == ["gpu:0"]


@pytest.mark.parametrize("per_run_data", [False, True], ids=["shared-dataset", "dataset-per-run"])
def test_node_loss_mid_sweep_loses_and_duplicates_nothing(tmp_path, per_run_data):
    runs = 40 if not per_run_data else 24
    r = in_subprocess("node_loss", tmp_path, runs=runs, per_run_data=per_run_data)
    rows, killed = r["rows"], r["killed"]
    assert killed is not None and killed["node"] in r["workers"]
    assert len(rows) == runs and len({x["run_id"] for x in rows}) == runs
    assert all(x["status"] == "ok" for x in rows), [x["error"] for x in rows if x["status"] != "ok"]
    retried = [x for x in rows if x["attempt"] > 1]
    assert 1 <= len(retried) <= 2  # the killed node had 2 CPUs: at most its 2 in-flight runs were lost
    executions = Counter(r["fit_calls"])
    assert sorted(executions) == list(range(runs))  # every run's fit ran
    # only a lost run ran again, and once: a run lost before its fit started (queued on the node) ran once
    assert {k for k, n in executions.items() if n > 1} <= {int(x["metrics.k"]) for x in retried}
    assert max(executions.values()) <= 2
    assert not any(x["node"].startswith(killed["node"][:12]) for x in retried)
    for x in rows:  # every run saw the dataset its seed makes, including any rebuilt after the loss
        assert x["metrics.data_hash_lo"] == float(int(x["data_sha256"][:12], 16))
    sims = len(r["simulate_calls"])
    if per_run_data:
        assert sims > runs  # datasets that lived only on the lost node were simulated again (lineage)
    else:
        assert len({x["data_sha256"] for x in rows}) == 1 and sims in (1, 2)


def start(tmp_path, n=30, sleep=0.4):
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW.replace("CALLS", str(tmp_path / "fit.calls")).replace("SLEEP", str(sleep))
                    % ", ".join(map(str, range(n))))
    cmd = [sys.executable, "-m", "sweeper.cli", "run", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]
    # SIGINT back to its default: a test run started in the background (`pytest &`) ignores it, and a
    # child would inherit that and never see the Ctrl-C the test sends
    return cmd, subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def results(tmp_path) -> dict:
    return recorded(tmp_path / "out" / "slow")


def wait_for(tmp_path, proc, n, timeout=120):
    t0 = time.time()
    while len(results(tmp_path)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def fit_calls(tmp_path):
    return len((tmp_path / "fit.calls").read_text().splitlines())


def test_killed_driver_resumes_with_only_the_missing_runs(tmp_path):
    cmd, proc = start(tmp_path)
    try:
        wait_for(tmp_path, proc, 6)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        kill_group(proc)  # its local Ray goes down with it, as on a crashed machine
    time.sleep(0.5)
    before = results(tmp_path)
    calls_before = fit_calls(tmp_path)
    assert 6 <= len(before) < 30
    again = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "taking over the lock" in again.stderr and f"{len(before)} of 30 runs already done" in again.stderr
    root = Path(again.stdout.strip().splitlines()[-1])
    table = pq.read_table(root / "results.parquet").to_pandas()
    planned = pq.read_table(root / "plan.parquet").column("run_id").to_pylist()
    assert sorted(table.run_id) == sorted(planned) and (table.status == "ok").all()
    assert set(record_counts(root).values()) == {1}  # no finished run was saved again
    assert fit_calls(tmp_path) == calls_before + (30 - len(before))  # each missing run ran exactly once
    assert not (root / ".lock").exists()


def test_sigint_stops_cleanly_and_a_second_sweep_is_refused(tmp_path):
    cmd, proc = start(tmp_path)
    try:
        wait_for(tmp_path, proc, 3)
        second = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
        assert second.returncode == 3
        assert f"another sweep (pid {proc.pid}" in second.stderr and "is writing to" in second.stderr
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
    finally:
        kill_group(proc)
    assert "interrupted; finished runs are saved" in err
    root = next((tmp_path / "out" / "slow").iterdir())
    assert not (root / ".lock").exists()
    table = pq.read_table(root / "results.parquet").to_pandas()
    assert 3 <= len(table) < 30 and (table.status == "ok").all()
    assert sorted(table.run_id) == sorted(results(tmp_path)) and Counter(table.run_id).most_common(1)[0][1] == 1


def test_sweep_stop_makes_a_driver_save_and_exit_like_a_time_limit(tmp_path):
    cmd, proc = start(tmp_path)
    try:
        wait_for(tmp_path, proc, 3)
        stop = subprocess.run([sys.executable, "-m", "sweeper.cli", "stop", str(tmp_path / "out" / "slow")],
                              cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0 and f"(pid {proc.pid}) to save and stop" in stop.stdout
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGUSR1, err[-2000:]
    finally:
        kill_group(proc)
    assert "stopped by SIGUSR1; finished runs are saved" in err
    root = next((tmp_path / "out" / "slow").iterdir())
    assert not (root / ".lock").exists()
    table = pq.read_table(root / "results.parquet").to_pandas()
    assert 3 <= len(table) < 30 and sorted(table.run_id) == sorted(results(tmp_path))


def test_killed_driver_mid_batch_resumes_with_every_run_exactly_once(tmp_path):
    """Runs of 5 ms go ~20 to a task: a driver killed while batches are in flight loses only unsaved runs."""
    cmd, proc = start(tmp_path, n=1500, sleep=0.005)
    try:
        wait_for(tmp_path, proc, 300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        kill_group(proc)
    time.sleep(0.5)
    before = set(results(tmp_path))
    assert 300 <= len(before) < 1500
    calls_before = Counter(int(line.split()[1]) for line in (tmp_path / "fit.calls").read_text().splitlines())
    again = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    root = Path(again.stdout.strip().splitlines()[-1])
    table = pq.read_table(root / "results.parquet").to_pandas()
    assert len(table) == 1500 and table.run_id.is_unique and (table.status == "ok").all()
    calls = Counter(int(line.split()[1]) for line in (tmp_path / "fit.calls").read_text().splitlines())
    saved_ks = set(table[table.run_id.isin(before)]["fit.k"])
    assert all(calls[k] == calls_before[k] for k in saved_ks)  # a saved run never ran again
    assert sorted(calls) == list(range(1500))
    assert max(calls.values()) <= 2  # a run in flight at the kill (its batch unsaved) ran at most once more


def test_a_driver_killed_at_five_random_moments_loses_and_duplicates_nothing(tmp_path):
    """A 200-run sweep (cheap runs batched, the saver busy) whose driver is SIGKILLed five times at random
    moments after its first records, resumed each time: the final table equals an uninterrupted sweep's, run
    for run and number for number, and no run has two records."""
    import numpy as np

    runs, rng = 200, np.random.default_rng(2026)
    cmd, kills = None, 0
    for _ in range(5):
        cmd, proc = start(tmp_path, n=runs, sleep=0.15)
        try:
            seen = len(results(tmp_path))
            t0 = time.time()
            while len(results(tmp_path)) == seen and proc.poll() is None and time.time() - t0 < 120:
                time.sleep(0.05)  # the first records of this attempt are in: the sweep is under way
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(30)
        finally:
            kill_group(proc)  # its local Ray goes down with it, as on a crashed machine
    assert kills == 5 and len(results(tmp_path)) < runs
    again = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    root = Path(again.stdout.strip().splitlines()[-1])
    ref_cmd = [*cmd[:cmd.index("--out") + 1], str(tmp_path / "ref"), *cmd[cmd.index("--out") + 2:]]
    ref = subprocess.run(ref_cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]  # the same spec, uninterrupted
    ref_root = Path(ref.stdout.strip().splitlines()[-1])
    timing = ["duration_s", "node", "metrics.start", "metrics.end"]
    table, expected = (pq.read_table(r / "results.parquet").drop_columns(timing).sort_by("run_id")
                       for r in (root, ref_root))
    assert table.num_rows == runs and table.equals(expected)
    assert set(record_counts(root).values()) == {1}
