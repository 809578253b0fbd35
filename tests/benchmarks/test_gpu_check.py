"""benchmarks/gpu_check.py explains itself and its CPU-only path runs every step here (no GPU)."""
import subprocess
import sys
from tests import REPO



def test_help_explains_the_steps():
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for words in ("gpu-marked tests", "CuPy against NumPy", "JAX backend", "--cpu-only", "GPU_CHECK.md"):
        assert words in out.stdout


def test_cpu_only_runs_every_step_and_prints_one_table(tmp_path):
    table = tmp_path / "table.md"
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-only", "--out", str(table)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in table.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    steps = [r.split("|")[1].strip() for r in rows]
    assert steps.count("gpu tests") == 1 and steps.count("kernels") == 6 and steps.count("training") == 1
    assert steps.count("study") == 6  # 2 doses x (PINN NLL, PINN MAE, ePIE)
    kernel_rates = [float(r.split("|")[3].split()[0].replace(",", "")) for r in rows if r.startswith("| kernels")]
    assert all(rate > 0 for rate in kernel_rates)
    bounds = [r for r in rows if "bound: batched fft2 + abs()" in r]
    shares = [float(r.split("(")[-1].split("%")[0]) for r in rows if "of bound" in r]
    assert len(bounds) == 2 and len(shares) == 4 and all(0 < s < 100 for s in shares)  # simulate does more
    assert "skipped" in rows[0] or "passed" in rows[0]
    assert all("PSNR" in r for r in rows if r.startswith("| study"))
