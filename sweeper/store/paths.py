"""The names of everything in a sweep directory, OUT/<name>/<sweep_id>/: paths only, no reading or writing
(as submitit's JobPaths). `SweepStore` reads and writes them."""
from __future__ import annotations

from pathlib import Path


class SweepPaths:
    """The paths of one sweep directory."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.datasets = self.root / "datasets"
        self.records = self.root / "records"              # run records as Parquet shards
        self.figures = self.root / "figures"              # the study's own report
        self.sweep_figures = self.figures / "sweep"       # the generic sweep report
        self.spec = self.root / "spec.yaml"
        self.plan = self.root / "plan.parquet"
        self.results = self.root / "results.parquet"
        self.provenance = self.root / "provenance.json"
        self.report_html = self.root / "report.html"
        self.code = self.root / "code.json"
        self.precision = self.root / "precision.json"    # spec.precision: repeats used, half-widths reached
        self.lock = self.root / ".lock"
        self.slurm_dir = self.root / "slurm"              # sbatch script, jobs.json, <job id>.out/.err
        self.sbatch = self.slurm_dir / "sweep.sbatch"
        self.slurm_jobs = self.slurm_dir / "jobs.json"

    def is_sweep(self) -> bool:
        """Whether a sweep was planned here (its plan.parquet exists)."""
        return self.plan.is_file()

    def run_dir(self, run_id: str) -> Path:
        """A run's arrays, history, files and log (made only for runs that have any)."""
        return self.runs / run_id

    def run_log(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.log"

    def arrays(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "arrays.npz"

    def history(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "history.parquet"

    def dataset(self, key: str) -> tuple[Path, Path]:
        """(arrays .npz, metadata .json) of a saved dataset."""
        return self.datasets / f"{key}.npz", self.datasets / f"{key}.json"

    def slurm_logs(self, job_id: str) -> tuple[Path, Path]:
        """(stdout, stderr) of a SLURM job, as the sbatch script names them."""
        return self.slurm_dir / f"{job_id}.out", self.slurm_dir / f"{job_id}.err"

    def relative(self, path: Path) -> str:
        """`path` relative to the sweep directory (links in report.html)."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    @staticmethod
    def sweeps_in(path) -> list:
        """The sweep directories directly inside `path`, e.g. OUT/<name>."""
        path = Path(path)
        found = [SweepPaths(p) for p in sorted(path.iterdir()) if p.is_dir()] if path.is_dir() else []
        return [p for p in found if p.is_sweep()]

    def siblings(self) -> list:
        """The other sweeps of the same study name (OUT/<name>/*)."""
        return [p for p in self.sweeps_in(self.root.parent) if p.root != self.root]
