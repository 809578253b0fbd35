"""A real cluster, as a user starts one, with Ray's token authentication on: a head node and a worker node that
cannot see the driver's files (its own mount namespace). The study travels with the sweep; a driver without
the cluster's token, or with an address where nothing runs, gets one line."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests import REPO
from tests.sweeper.execution.real_cluster import auth_env, free_ports, two_nodes, unshare_works

pytestmark = pytest.mark.slow

STUDY = '''"""A study that lives beside its spec, on the driver's machine only."""
import os

import numpy as np

from shiphelp import twice   # a second module beside it: it travels too


def simulate(data, seed):
    return {"x": np.random.default_rng(seed).standard_normal(1000)}


def fit(dataset, params, seed):
    return {"metrics": {"mean2": twice(float(np.mean(dataset["x"]))),
                        "mnt_ns": float(os.stat("/proc/self/ns/mnt").st_ino),
                        "sees_spec": float(os.path.exists(os.path.join(params["spec_dir"], "spec.yaml")))}}
'''

SPEC = """study: shipstudy
name: ship
seed: 2
data: {k: 0}
fit: {spec_dir: SPEC_DIR}
sweep: {data.k: [0, 1, 2]}
repeats: 2
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, env, study folder, output folder): a two-node cluster whose worker sees neither folder."""
    if not unshare_works():
        pytest.skip("unshare -m with a tmpfs mount is not permitted here (needs root or user namespaces)")
    root = tmp_path_factory.mktemp("real_cluster")
    study, out = root / "study", root / "out"
    study.mkdir()
    out.mkdir()
    (study / "shipstudy.py").write_text(STUDY)
    (study / "shiphelp.py").write_text("def twice(x):\n    return 2 * x\n")
    (study / "spec.yaml").write_text(SPEC.replace("SPEC_DIR", str(study)))
    with two_nodes([study, out]) as (address, env):
        yield address, env, study, out


def sweep(args, env, timeout=300):
    """`sweep ...` from a folder that is not the study's (the worker could otherwise find nothing either)."""
    return subprocess.run([sys.executable, "-m", "sweeper.cli", *args], env={**env, "PYTHONPATH": str(REPO)},
                          cwd="/", capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("INFO ")]


def test_a_study_only_the_driver_sees_runs_on_the_worker_node_with_token_auth(cluster):
    address, env, study, out = cluster
    r = sweep(["run", str(study / "spec.yaml"), "--address", address, "--out", str(out), "--no-progress"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    table = pq.read_table(Path(r.stdout.strip().splitlines()[-1]) / "results.parquet").to_pylist()
    assert len(table) == 6 and all(row["status"] == "ok" for row in table), [row["error"] for row in table]
    assert len({row["node"] for row in table}) == 1  # the head has no CPUs: the worker node ran every run
    mine = os.stat("/proc/self/ns/mnt").st_ino
    assert all(row["metrics.mnt_ns"] != mine for row in table)  # ... in its own mount namespace
    assert all(row["metrics.sees_spec"] == 0.0 for row in table)  # where the study's folder is not there
    assert {round(row["metrics.mean2"], 12) for row in table} != {0.0}


def test_a_driver_without_the_token_gets_one_line_naming_what_to_set(cluster):
    address, env, study, out = cluster
    cases = {"no token": {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")},
             "wrong token": {**env, "RAY_AUTH_TOKEN": "0" * 64}}
    for case, their_env in cases.items():
        t0 = time.monotonic()
        r = sweep(["run", str(study / "spec.yaml"), "repeats=3", "--address", address, "--out", str(out / case)],
                  {**their_env, "HOME": str(out)})  # no ~/.ray/auth_token of the machine's to fall back on
        took = time.monotonic() - t0
        assert r.returncode == 2 and took < 30, (case, took, r.stderr[-2000:])
        lines = error_lines(r.stderr)
        assert len(lines) == 1 and address in lines[0], (case, r.stderr[-2000:])
        assert ("RAY_AUTH_MODE=token" if case == "no token" else "refused the auth token") in lines[0]
        assert not (out / case).exists()  # nothing written


@pytest.mark.parametrize("address", ["127.0.0.1:FREE", "10.255.255.1:6379"], ids=["nothing-listening", "unroutable"])
def test_a_bad_address_is_one_line_within_30_s_and_writes_nothing(tmp_path, address):
    address = address.replace("FREE", str(free_ports(1)[0]))
    spec = REPO / "tests" / "fixtures" / "linear.yaml"
    for how in ("flag", "env"):
        env = auth_env(tmp_path, token=False)
        args = ["run", str(spec), "--out", str(tmp_path / "out")]
        if how == "flag":
            args += ["--address", address]
        else:
            env["RAY_ADDRESS"] = address
        t0 = time.monotonic()
        r = sweep(args, env, timeout=120)
        took = time.monotonic() - t0
        assert r.returncode == 2 and took < 30, (how, took, r.stderr[-2000:])
        lines = error_lines(r.stderr)
        assert len(lines) == 1 and address in lines[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "out").exists()
