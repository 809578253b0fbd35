"""The sbatch script `sweep slurm` writes (no SLURM needed): valid bash in both modes, every option in its
#SBATCH lines, SLURM time limits parsed, a stop warning inside the limit."""
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.execution.slurm import SlurmOptions, walltime_s, warning_s
from tests import REPO

SPEC = REPO / "tests" / "data" / "minimal_recovery.yaml"


@pytest.mark.parametrize("text, seconds", [("90", 5400), ("1:30", 90), ("1:30:00", 5400), ("2-00", 172800),
                                           ("2-01:30", 178200), ("1-00:00:05", 86405)])
def test_slurm_time_limits(text, seconds):
    assert walltime_s(text) == seconds


def test_the_stop_warning_comes_inside_the_limit():
    assert warning_s(SlurmOptions()) == 300
    assert warning_s(SlurmOptions(time="2:00:00")) == 300
    assert warning_s(SlurmOptions(time="10")) == 60  # a tenth of a short limit
    with pytest.raises(SpecError, match=r"--warn: the stop warning \(600 s\) must come before the time limit"):
        warning_s(SlurmOptions(time="5:00", warn_s=600))
    with pytest.raises(SpecError, match="not a SLURM time"):
        walltime_s("an hour")


@pytest.mark.parametrize("classic", [False, True], ids=["symmetric-run", "classic"])
def test_the_script_is_bash_with_every_option(tmp_path, capsys, classic):
    args = ["slurm", str(SPEC), "fit.tol=1e-6", "--out", str(tmp_path), "--nodes", "3",
            "--gpus-per-node", "4", "--cpus-per-task", "32", "--mem", "64G", "--time", "1:00:00",
            "--partition", "gpu", "--account", "proj42", "--setup", "source ~/venv/bin/activate", "--warn", "120"]
    assert main(args + (["--classic"] if classic else [])) == 0
    script = Path(capsys.readouterr().out.strip())
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    for line in ("#SBATCH --nodes=3", "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=32",
                 "#SBATCH --mem=64G", "#SBATCH --time=1:00:00", "#SBATCH --partition=gpu",
                 "#SBATCH --account=proj42", "#SBATCH --signal=B:USR1@120", "#SBATCH --exclusive",
                 f"#SBATCH --output={script.parent}/%j.out", "source ~/venv/bin/activate", "--num-gpus=4",
                 f"sweeper.cli run {SPEC} fit.tol=1e-6 --out {tmp_path} --address auto",
                 f"sweeper.cli stop {script.parent.parent.parent}"):
        assert line in text
    assert ("ray start --head" in text) == classic and ("ray symmetric-run" in text) != classic
    study = script.parent.parent
    assert (study / "plan.parquet").is_file() and (study / "spec.yaml").is_file()  # readable before it runs


def test_status_of_a_written_but_unstarted_sweep_and_stop_without_a_driver(tmp_path, capsys):
    assert main(["slurm", str(SPEC), "--out", str(tmp_path)]) == 0
    study = Path(capsys.readouterr().out.strip()).parent.parent
    assert main(["status", str(study)]) == 0
    assert "0 ok, 0 failed, 1 pending of 1 runs" in capsys.readouterr().out
    assert main(["stop", str(study.parent)]) == 1
    assert "no sweep is running from" in capsys.readouterr().err


def test_a_missing_spec_is_a_one_line_error_and_writes_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweeper.cli", "slurm", "nonexistent.yaml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "nonexistent.yaml" in out.stderr and len(out.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
