"""`sweep slurm` against a real single-node SLURM (tests/sweeper/execution/slurm/setup_local_slurm.sh): a submitted sweep runs
to the end; a cancelled one, resubmitted, runs every run exactly once; the time-limit warning makes the driver
save what finished and exit. Skipped where `sbatch` is not on PATH. These run first in the session (conftest),
before any test starts a Ray of its own: a job stops only its own Ray (its RAY_TMPDIR), but the tests
that no Ray is left after a job need a machine without one."""
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fixtures.slow import SPEC as SLOW, recorded
from tests import REPO
from tests.sweeper.execution.foreign_ray import foreign_ray

pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("sbatch") is None, reason="no SLURM here (sbatch not on PATH)")]

# Ray's default: the job's script turns token authentication on with a token of the job's own
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}, "PYTHONPATH": str(REPO)}


def sweep(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper.cli", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)


def submit(tmp_path, runs, sleep, *options):
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW.replace("SLEEP", str(sleep)).replace("CALLS", str(tmp_path / "fit.calls"))
                    % ", ".join(map(str, range(runs))))
    out = sweep("slurm", spec, "--out", tmp_path / "out", "--time", "10:00", "--submit", *options)
    assert out.returncode == 0, out.stderr
    script, job_id = out.stdout.split()
    return Path(script), job_id


def state(job_id) -> str:
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip()


def wait_done(job_id, timeout=240) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = state(job_id)
        if s and s not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return s
        time.sleep(0.5)
    subprocess.run(["scancel", job_id])
    raise AssertionError(f"job {job_id} still {state(job_id)} after {timeout} s")


def wait_results(study, n, job_id, timeout=180):
    deadline = time.time() + timeout
    while len(recorded(study.parent)) < n:
        assert time.time() < deadline and state(job_id) in ("PENDING", "CONFIGURING", "RUNNING"), state(job_id)
        time.sleep(0.2)


def no_ray_left():
    assert subprocess.run(["pgrep", "-f", "ray/core/src/ray/raylet"], capture_output=True).returncode == 1


def fit_calls(tmp_path) -> Counter:
    return Counter(int(line.split()[1]) for line in (tmp_path / "fit.calls").read_text().splitlines())


def test_a_submitted_sweep_runs_on_slurm_to_the_end(tmp_path):
    script, job_id = submit(tmp_path, runs=6, sleep=0.1)
    study = script.parent.parent
    text = script.read_text()
    for line in ("#SBATCH --exclusive", "#SBATCH --signal=B:USR1@60", f"#SBATCH --output={study}/slurm/%j.out",
                 "ray symmetric-run --address", "--address auto"):
        assert line in text
    assert wait_done(job_id) == "COMPLETED", (study / "slurm" / f"{job_id}.err").read_text()[-3000:]
    table = pq.read_table(study / "results.parquet").to_pandas()
    assert len(table) == 6 and (table.status == "ok").all()
    said = (study / "slurm" / f"{job_id}.out").read_text()
    assert "the sweep exited with 0" in said and "Ray auth token" in said  # Ray's token authentication was on
    assert not any(len(word) == 64 and word.isalnum() for word in (said + text).split())  # the token is shown nowhere
    status = sweep("status", study)
    assert "6 ok, 0 failed, 0 pending" in status.stdout and f"SLURM job {job_id}" in status.stdout
    assert "COMPLETED" in status.stdout
    assert not (study / ".lock").exists()
    no_ray_left()


def test_a_cancelled_sweep_resubmitted_runs_every_run_exactly_once(tmp_path):
    script, job_id = submit(tmp_path, runs=30, sleep=0.4)
    study = script.parent.parent
    wait_results(study, 5, job_id)
    subprocess.run(["scancel", job_id], check=True)
    assert wait_done(job_id) == "CANCELLED"
    no_ray_left()
    assert not (study / ".lock").exists()  # the driver, on SIGTERM, saved and released the directory
    before = set(recorded(study.parent))
    assert 5 <= len(before) < 30
    again = subprocess.run(["sbatch", "--parsable", str(script)], env=ENV, capture_output=True, text=True,
                           check=True).stdout.strip()
    assert wait_done(again) == "COMPLETED", (study / "slurm" / f"{again}.err").read_text()[-3000:]
    table = pq.read_table(study / "results.parquet").to_pandas()
    assert len(table) == 30 and table.run_id.is_unique and (table.status == "ok").all()
    assert set(before) <= set(table.run_id)
    calls = fit_calls(tmp_path)
    assert sorted(calls) == list(range(30))
    saved_ks = set(table[table.run_id.isin(before)]["fit.k"])
    again_ks = {k for k, n in calls.items() if n > 1}
    assert not again_ks & saved_ks  # a run saved before the cancel never ran again; only runs in flight did
    assert len(again_ks) <= 4
    status = sweep("status", study).stdout
    assert f"SLURM job {job_id}" in status and f"SLURM job {again}" in status  # the hand-submitted one too


def test_the_time_limit_warning_saves_finished_runs_and_exits(tmp_path):
    script, job_id = submit(tmp_path, runs=30, sleep=0.4)
    study = script.parent.parent
    wait_results(study, 5, job_id)
    # what SLURM does --warn seconds before the time limit (#SBATCH --signal=B:USR1@60)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True)
    assert wait_done(job_id) == "FAILED"
    out = (study / "slurm" / f"{job_id}.out").read_text()
    err = (study / "slurm" / f"{job_id}.err").read_text()
    assert "asking the sweep to save what finished and stop" in out and "asked the sweep in" in out
    assert "the sweep exited with 138" in out and f"sbatch {script}" in out
    assert "stopped by SIGUSR1; finished runs are saved" in err
    exit_code = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "ExitCode=138:0" in exit_code
    assert not (study / ".lock").exists()
    no_ray_left()
    table = pq.read_table(study / "results.parquet").to_pandas()
    saved = set(recorded(study.parent))
    assert 5 <= len(table) < 30 and (table.status == "ok").all() and set(table.run_id) == saved


def test_a_job_ends_its_own_ray_and_no_other(tmp_path):
    """Another Ray on the node (here a `ray start --head` of this test) outlives a SLURM job's clean-up: the
    job's Ray lives under its own RAY_TMPDIR, and the job stops only the processes that name it (and their
    children). `--classic`: `ray symmetric-run` refuses to start on a node where any Ray runs."""
    with foreign_ray() as alive:
        assert alive()
        script, job_id = submit(tmp_path, 4, 0.1, "--classic")
        assert wait_done(job_id) == "COMPLETED", (script.parent / f"{job_id}.err").read_text()[-3000:]
        assert "trap stop_own_ray EXIT" in script.read_text() and "ray stop --force >" not in script.read_text()
        assert alive()  # the other Ray survived the job
        assert subprocess.run(["pgrep", "-f", f"/tmp/ray-{job_id}/"], capture_output=True).returncode == 1
    no_ray_left()
