"""The models on Keras's JAX backend (the backend of a GPU machine without TensorFlow), on every CI run: the
model and training tests again in a process whose KERAS_BACKEND is jax, and a quick study through the CLI."""
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests import REPO

pytestmark = pytest.mark.slow  # trains networks in a JAX subprocess

pytest.importorskip("jax")
# a local Ray of its own: Ray's default token mode would write a token into this machine's ~/.ray (auth is tested
# with real clusters in tests/sweeper/execution/test_real_cluster.py and cluster_scenarios.py)
ENV = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "RAY_AUTH_MODE": "disabled",
       "PYTHONPATH": str(REPO)}


def test_model_and_training_tests_pass_on_jax():
    """Physics layer == kernels.far_field, losses fall, training improves PSNR, fits reproduce: on JAX."""
    # Left to the TensorFlow run, for CI time: what does not touch the backend (NumPy geometry, ePIE, the
    # parameter checks), the gridsize-2-against-1 quality check (30 epochs in all), the plateau callbacks
    # (Keras's own, backend-free), and loss_decreases[pinn-nll] (training_improves trains that PINN here)
    backend_free = ["at_least_as_well_as_gridsize_one", "pinn-nll", "plateau", "epie", "declared_params",
                    "offsets", "stitches", "holes", "bfloat16"]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/studies/ptychography/test_models.py",
                          "tests/studies/ptychography/test_training.py", "tests/studies/ptychography/test_packed.py",
                          "-k", " and ".join(f"not {name}" for name in backend_free)], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout.splitlines()[-1]


def test_a_quick_study_through_the_cli_trains_on_jax(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", "studies/ptychography/specs/dose_response.yaml",
                          "data.nphotons=1e9", "fit.loss=nll", "fit.model=pinn", "fit.epochs=4", "data.n_train=256", "--out",
                          str(tmp_path), "--no-progress"], cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    study = Path(out.stdout.strip().splitlines()[-1])
    row = pq.read_table(study / "results.parquet").to_pylist()[0]
    assert row["status"] == "ok" and row["device"] == "jax:cpu"
    history = pq.read_table(study / "runs" / row["run_id"] / "history.parquet").column("train_loss").to_pylist()
    assert history[-1] < history[0]
    assert 12 < row["metrics.psnr"] < 60  # a reconstruction, not noise and not a copy of the truth
