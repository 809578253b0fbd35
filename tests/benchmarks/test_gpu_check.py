"""benchmarks/gpu_check.py explains itself and its CPU-only path runs every step here (no GPU)."""
import subprocess
import sys

import pytest

from tests import REPO

pytestmark = pytest.mark.slow  # runs whole studies and sweeps through the GPU check


def test_help_explains_the_steps():
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for words in ("gpu-marked tests", "CuPy against NumPy", "JAX backend", "--cpu-only", "GPU_CHECK.md", "packing off and on"):
        assert words in out.stdout


def rows_of(table) -> list:
    return [line for line in table.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_cpu_only_runs_every_step_and_prints_one_table(tmp_path):
    """Every step but the sweep, which the next test runs on a study that packs in a second (the dose
    response's own, a PINN on JAX, takes two minutes here: three runs compiled in Ray workers, twice)."""
    table = tmp_path / "table.md"
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-only", "--skip", "sweep", "--out", str(table)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = rows_of(table)
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


def test_the_sweep_step_times_sweep_run_with_packing_off_and_on(tmp_path):
    """pack=1 then pack=3 of a 2-slope x 4-repeat sweep: every run ok, none packed, then two packs of 3."""
    spec = tmp_path / "packable.yaml"
    spec.write_text("study: tests.fixtures.packable\nseed: 4\ndata: {n: 50, a: 1.0, b: 0.0, noise: 0.2}\n"
                    "fit: {calls: '', solo: false, crash_marker: ''}\nsweep: {data.a: [1.0, 2.0]}\n"
                    "data_mode: independent\nrepeats: 4\n")
    table = tmp_path / "table.md"
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-only", "--skip", "tests", "kernels",
                          "training", "study", "--sweep-spec", str(spec), "--pack", "3", "--out", str(table)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    unpacked, packed = rows_of(table)
    assert "`sweep run packable.yaml pack=1`" in unpacked and "(8 ok runs, 0 packed, in " in unpacked
    assert "`sweep run packable.yaml pack=3`" in packed and "(8 ok runs, 6 packed, in " in packed
    runs_per_hour = [float(r.split("|")[3].split()[0].replace(",", "")) for r in (unpacked, packed)]
    ratio = float(packed.split("|")[5].split("x")[0])
    assert abs(ratio - runs_per_hour[1] / runs_per_hour[0]) < 0.01
