"""The same run, the same numbers on another machine of one kind: a PINN fit in a fresh process gives the same
digits with two cores or one (TensorFlow would otherwise take the machine's cores as its intra-op threads)
and with oneDNN left at this CPU's best instruction set or capped at AVX2 beforehand (what a CPU without
AVX-512 runs). Both differences move the 5th-8th digit when not pinned (benchmarks/RESULTS.md)."""
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from studies.ptychography import pipeline as P
from tests import REPO

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # two fresh processes train a network

FIT = """
import json, sys
from studies.ptychography import pipeline as P
P.setup()
data = P.simulate({"N": 16, "object_size": 64, "n_lines": 20, "probe_radius": 4.0, "n_train": 64,
                   "test_step": 4.0, "nphotons": 1e9}, 1)
out = P.fit(data, {"loss": "nll", "epochs": 3, "width": 8, "depth": 2, "save_model": False}, 2)
print(json.dumps({"metrics": out["metrics"], "loss": out["history"]["train_loss"]}))
"""


def _fit(cpus: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in P.CPU_NUMERICS_ENV}
    cmd = [sys.executable, "-c", FIT]
    if cpus:
        cmd = [shutil.which("taskset"), "-c", cpus, *cmd]
    done = subprocess.run(cmd, cwd=REPO, env={**clean, "KERAS_BACKEND": "tensorflow", **env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.dumps(json.loads(done.stdout.strip().splitlines()[-1]), sort_keys=True)


@pytest.mark.skipif(not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_a_fit_s_digits_do_not_depend_on_the_cores_or_the_cpu_s_instruction_set():
    assert _fit("") == _fit("0", ONEDNN_MAX_CPU_ISA="AVX2")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the ISA pins are x86's")
def test_the_pins_keep_what_the_user_set_and_follow_the_run_s_cpus():
    env = {"OMP_NUM_THREADS": "4", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    P.pin_cpu_numerics(env)
    assert env["TF_NUM_INTRAOP_THREADS"] == "4" and env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2"
    alone = {"XLA_FLAGS": "--xla_cpu_max_isa=AVX512"}
    P.pin_cpu_numerics(alone)  # outside Ray: one thread; the user's XLA cap kept
    assert alone == {"TF_NUM_INTRAOP_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2",
                     "XLA_FLAGS": "--xla_cpu_max_isa=AVX512"}
