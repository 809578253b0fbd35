"""The study directory: atomic writes, the lock, resume bookkeeping, datasets and the Arrow gather."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from . import config
from .errors import SpecError
from .hashing import arrays_sha256, plain
from .lock import DirLock
from .values import table_from_columns
from .worker import RESERVED_FILES as RESERVED

log = logging.getLogger("sweeper")


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename onto `path`, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, make_dir: bool = True) -> None:
    """Atomic small-file write (the per-run hot path: plain os calls, no temp-file search)."""
    if make_dir:
        os.makedirs(path.parent, exist_ok=True)
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def dump_yaml(values) -> str:
    """YAML text of plain values that the spec loader reads back to the same typed values."""
    return config.dump_yaml(plain(values))


def write_npz(path: Path, arrays: dict) -> None:
    def w(p):
        with open(p, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write(path, w)


def write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p))




def _flatten(prefix: str, d: dict) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(key, v))
        else:
            out[key] = v
    return out


class StudyDir:
    """OUT/<name>/<sweep_id>/ and everything in it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.datasets = self.root / "datasets"
        self.figures = self.root / "figures"            # the study's own report
        self.sweep_figures = self.figures / "sweep"     # the generic sweep report
        self.spec_path = self.root / "spec.yaml"
        self.plan_path = self.root / "plan.parquet"
        self.results_path = self.root / "results.parquet"
        self.provenance_path = self.root / "provenance.json"
        self.report_html = self.root / "report.html"
        self.code_path = self.root / "code.json"
        self.slurm_dir = self.root / "slurm"              # sbatch script, jobs.json, <job id>.out/.err
        self.sbatch_path = self.slurm_dir / "sweep.sbatch"
        self.slurm_jobs_path = self.slurm_dir / "jobs.json"
        self._lock = DirLock(self.root / ".lock")

    @classmethod
    def open(cls, path) -> "StudyDir":
        """An existing study directory; a SpecError if `path` is not one."""
        sd = cls(Path(path))
        if not sd.plan_path.is_file():
            inside = [s.root.name for s in cls.sweeps_in(path)]
            hint = f"; the sweeps inside: {', '.join(inside)}" if inside else ""
            raise SpecError(f"not a study directory (no plan.parquet){hint}", where=str(path))
        return sd

    def relative(self, path: Path) -> str:
        """`path` relative to the study directory (links in report.html)."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    # -- the lock (sweeper.lock: pid, host and heartbeat) ------------------------------
    @property
    def lock_path(self) -> Path:
        return self._lock.path

    def holder(self) -> dict | None:
        """Who holds the lock ({pid, host, heartbeat_age_s}) if a live sweep does."""
        return self._lock.holder()

    def check_free(self) -> None:
        self._lock.check_free()

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    # -- spec and plan --------------------------------------------------------------
    def write_spec(self, spec_dict: dict, origins: dict, note: str | None = None) -> None:
        text = (f"# {note}\n" if note else "") + dump_yaml(spec_dict)
        if origins:
            text += "# provenance (key: file:line)\n" + "".join(f"#   {k}: {v}\n" for k, v in sorted(origins.items()))
        write_text(self.root / "spec.yaml", text)

    def write_plan(self, table: pa.Table) -> None:
        write_parquet(self.plan_path, table)

    def read_spec(self) -> dict:
        return config.parse_value(self.read_spec_text()) or {}

    def read_spec_text(self) -> str:
        return self.spec_path.read_bytes().decode("utf-8")

    def read_plan(self) -> pa.Table:
        return pq.read_table(self.plan_path)

    def write_provenance(self, info: dict) -> None:
        write_text(self.provenance_path, json.dumps(plain(info), indent=1))

    def write_code(self, info: dict) -> None:
        write_text(self.code_path, json.dumps(plain(info), indent=1))

    def read_code(self) -> dict:
        try:
            return json.loads(self.code_path.read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def sweeps_in(path) -> list:
        """The study directories (sweeps) directly inside `path`, e.g. OUT/<name>."""
        path = Path(path)
        found = [StudyDir(p) for p in sorted(path.iterdir()) if p.is_dir()] if path.is_dir() else []
        return [sd for sd in found if sd.plan_path.is_file()]

    def siblings(self) -> list:
        """The other sweeps of the same study name (OUT/<name>/*)."""
        return [sd for sd in self.sweeps_in(self.root.parent) if sd.root != self.root]

    def write_sbatch(self, text: str) -> None:
        write_text(self.sbatch_path, text)
        self.sbatch_path.chmod(0o755)

    def slurm_jobs(self) -> list:
        """The SLURM jobs of this sweep ({job_id, when}: "submitted <time>" or "started <time>"), oldest first."""
        return json.loads(self.slurm_jobs_path.read_text()) if self.slurm_jobs_path.is_file() else []

    def add_slurm_job(self, job_id: str, event: str) -> None:
        """List a job, stamped now: `event` is "submitted" (by `sweep slurm --submit`) or "started" (seen running)."""
        when = f"{event} {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
        write_text(self.slurm_jobs_path, json.dumps([*self.slurm_jobs(), {"job_id": job_id, "when": when}], indent=1))

    def slurm_log_paths(self, job_id: str) -> tuple[Path, Path]:
        """(stdout, stderr) of a SLURM job, as the sbatch script names them."""
        return self.slurm_dir / f"{job_id}.out", self.slurm_dir / f"{job_id}.err"

    def read_provenance(self) -> dict:
        try:
            return json.loads(self.provenance_path.read_text())
        except (OSError, ValueError):
            return {}

    # -- datasets -------------------------------------------------------------------
    def save_dataset(self, key: str, data: dict, meta: dict) -> None:
        arrays = {k: v for k, v in data.items()}
        write_npz(self.datasets / f"{key}.npz", arrays)
        write_text(self.datasets / f"{key}.json", json.dumps(plain(meta), indent=1))

    def load_dataset(self, key: str) -> tuple[dict, dict] | None:
        """(arrays, metadata) of a saved dataset whose content hash matches its metadata, else None
        (and why, in the log)."""
        npz, meta_path = self.datasets / f"{key}.npz", self.datasets / f"{key}.json"
        if not (npz.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(npz, allow_pickle=False) as f:
                data = {k: (f[k][()] if f[k].ndim == 0 else f[k]) for k in f.files}
        except Exception as e:  # truncated or corrupt file
            log.warning("dataset %s cannot be read (%s); it will be simulated again", key, e)
            return None
        if arrays_sha256(data) != meta.get("sha256"):
            log.warning("dataset %s does not match its recorded sha256; it will be simulated again", key)
            return None
        return data, meta

    # -- runs -----------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def run_log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.log"

    def read_config(self, run_id: str) -> dict:
        return config.parse_value((self.run_dir(run_id) / "config.yaml").read_text()) or {}

    def read_history(self, run_id: str) -> pa.Table | None:
        path = self.run_dir(run_id) / "history.parquet"
        return pq.read_table(path) if path.is_file() else None

    def arrays_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "arrays.npz"

    def read_log(self, run_id: str) -> str:
        path = self.run_log_path(run_id)
        return path.read_text() if path.is_file() else ""

    def run_files(self, run_id: str) -> dict:
        """The files a fit returned (`files`), by name."""
        d = self.run_dir(run_id)
        return {p.name: p for p in sorted(d.iterdir()) if p.is_file() and p.name not in RESERVED
                and not p.name.startswith(".")} if d.is_dir() else {}

    def write_run(self, run, result: dict) -> None:
        """config.yaml, arrays.npz, history.parquet, the fit's files, then result.json last: it marks the run done."""
        d = self.run_dir(run.run_id)
        cfg = {"run_id": run.run_id, "data_key": run.data_key, "session": run.session, "data": run.data,
               "fit": run.fit, "repeat_data": run.repeat_data, "repeat_fit": run.repeat_fit,
               "seed_data": run.seed_data, "seed_fit": run.seed_fit}
        os.makedirs(d, exist_ok=True)
        write_text(d / "config.yaml", dump_yaml(cfg), make_dir=False)
        if result.get("arrays"):
            write_npz(d / "arrays.npz", result["arrays"])
        if result.get("history"):
            hist = {k: pa.array(np.asarray(v, dtype=np.float64)) for k, v in result["history"].items()}
            n = max(len(v) for v in hist.values())
            hist = {k: v if len(v) == n else pa.array(list(v.to_pylist()) + [None] * (n - len(v)))
                    for k, v in hist.items()}
            write_parquet(d / "history.parquet", pa.table({"epoch": np.arange(n), **hist}))
        for name, blob in (result.get("files") or {}).items():
            atomic_write(d / name, lambda p, b=blob: p.write_bytes(b))
        text = result.get("log") or ""
        if result["status"] == "failed" and result.get("error"):
            text += f"{'' if text.endswith(chr(10)) or not text else chr(10)}--- the run failed ---\n{result['error']}\n"
        if text:
            write_text(d / "run.log", text, make_dir=False)
        row = {"run_id": run.run_id, "data_key": run.data_key, "status": result["status"],
               "error": result.get("error"), "duration_s": result.get("duration_s"),
               "attempt": result.get("attempt", 1), "node": result.get("node"), "device": result.get("device"),
               "data_sha256": result.get("data_sha256"),
               "repeat_data": run.repeat_data, "repeat_fit": run.repeat_fit, "seed_data": run.seed_data,
               "seed_fit": run.seed_fit, "session": run.session, "data": run.data, "fit": run.fit,
               "metrics": result.get("metrics") or {}}
        write_text(d / "result.json", json.dumps(plain(row)), make_dir=False)

    def read_result(self, run_id: str) -> dict | None:
        p = self.run_dir(run_id) / "result.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def completed(self, run_ids) -> set:
        """Runs whose result.json says ok (failed and missing runs are run again on resume)."""
        done = set()
        for rid in run_ids:
            r = self.read_result(rid)
            if r and r.get("status") == "ok":
                done.add(rid)
        return done

    # -- gather ---------------------------------------------------------------------
    def read_results(self) -> pa.Table:
        """results.parquet; rebuilt from runs/*/result.json if it is missing or unreadable."""
        try:
            return pq.read_table(self.results_path)
        except Exception:
            if self.runs.is_dir():
                log.warning("%s is missing or unreadable; rebuilding it from runs/*/result.json", self.results_path)
            return self.gather(self.read_plan().column("run_id").to_pylist())

    def gather(self, run_ids) -> pa.Table:
        """results.parquet from runs/*/result.json: one row per run that has a result."""
        rows = []
        for rid in run_ids:
            r = self.read_result(rid)
            if r is None:
                continue
            flat = {k: r.get(k) for k in ("run_id", "data_key", "status", "error", "duration_s", "attempt", "node",
                                          "device", "data_sha256", "repeat_data", "repeat_fit", "seed_data", "seed_fit")}
            if r.get("session") is not None:
                flat["session"] = r["session"]
            flat.update(_flatten("data", r.get("data") or {}))
            flat.update(_flatten("fit", r.get("fit") or {}))
            flat.update({f"metrics.{k}": v for k, v in (r.get("metrics") or {}).items()})
            rows.append(flat)
        table = _to_table(rows)
        write_parquet(self.results_path, table)
        return table


def _to_table(rows: list) -> pa.Table:
    """Columns with exact types (sweeper.values.encode); metrics as float64."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    if not names:
        return pa.table({"run_id": pa.array([], pa.string()), "status": pa.array([], pa.string())})
    cols = {}
    for name in names:
        values = [r.get(name) for r in rows]
        if name.startswith("metrics.") or name == "duration_s":
            values = [float(v) if isinstance(v, (int, float)) or v in ("nan", "inf", "-inf") else None
                      for v in values]
        cols[name] = values
    return table_from_columns(cols)
