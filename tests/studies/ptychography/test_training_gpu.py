"""On a lent GPU: the PINN trains with Keras on the JAX backend (a fresh process picks the backend)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]  # trains networks

SCRIPT = """
import json
from studies.ptychography import pipeline as P
d = P.simulate({"N": 32, "object_size": 96, "n_lines": 40, "probe_radius": 8.0, "probe_defocus": 3.0,
                "n_train": 256, "test_step": 8.0}, 1)
out = P.fit(d, {"epochs": 3, "width": 8, "save_model": False}, 1)
print(json.dumps({"device": out["device"], "loss": out["history"]["train_loss"]}))
"""


def test_pinn_trains_on_jax_gpu():
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("no GPU visible to JAX")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["device"] == "jax:gpu"
    assert result["loss"][-1] < result["loss"][0]
