"""The study directory: its paths, the lock, spec and plan, datasets, run records (resume) and the gather."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from . import config
from .errors import SpecError
from .files import atomic_write, dump_yaml, write_npz, write_parquet, write_text
from .hashing import arrays_sha256, plain
from .lock import DirLock
from .records import Records
from .values import table_from_columns
from .worker import RESERVED_FILES as RESERVED

log = logging.getLogger("sweeper")


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
        self.records = Records(self.root / "records")       # the run records (sweeper.records)
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
        """A run's arrays, history, files and log (made only for runs that have any)."""
        return self.runs / run_id

    def run_log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.log"

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

    def write_run(self, run, result: dict) -> dict:
        """A run's arrays, history, files and log in its run directory (only if it has any), and its record,
        returned for the caller to append (`append_records`): the record marks the run done."""
        _write_run_parts(self.run_dir(run.run_id), result)
        return {"run_id": run.run_id, "data_key": run.data_key, "status": result["status"],
                "error": result.get("error"), "duration_s": result.get("duration_s"),
                "attempt": result.get("attempt", 1), "node": result.get("node"), "device": result.get("device"),
                "data_sha256": result.get("data_sha256"),
                "repeat_data": run.repeat_data, "repeat_fit": run.repeat_fit, "seed_data": run.seed_data,
                "seed_fit": run.seed_fit, "session": run.session, "data": run.data, "fit": run.fit,
                "metrics": result.get("metrics") or {}}

    def append_records(self, records: list) -> None:
        """Save run records as one new shard (the driver's saver thread, in batches)."""
        if records:
            self.records.append(records)

    def _records(self):
        """The run records; a study directory written before records existed is read from its
        runs/*/result.json."""
        return self.records if self.records or not self.runs.is_dir() else _Legacy(self.runs)

    def adopt_legacy_results(self) -> None:
        """A study directory from before the records (runs/*/result.json): its results become the first shard,
        so a resume keeps them. Set torn shards aside. The driver calls this once it holds the lock."""
        self.records.set_aside_torn()
        if not self.records and self.runs.is_dir():
            old = list(_Legacy(self.runs).all().values())
            if old:
                self.records.append(old)
                log.info("%d run results from runs/*/result.json are now run records in %s", len(old),
                         self.records.dir)

    def read_result(self, run_id: str) -> dict | None:
        """A run's last record, or None if it has none."""
        return self._records().get(run_id)

    def has_results(self) -> bool:
        return bool(self.records) or self.runs.is_dir()

    def completed(self, run_ids) -> set:
        """Runs whose last record says ok (failed and missing runs are run again on resume)."""
        statuses = self._records().statuses()
        return {rid for rid in run_ids if statuses.get(rid) == "ok"}

    # -- gather ---------------------------------------------------------------------
    def read_results(self) -> pa.Table:
        """results.parquet; built from the run records if it is missing or unreadable."""
        try:
            return pq.read_table(self.results_path)
        except Exception:
            if self.has_results():
                log.warning("%s is missing or unreadable; reading the run records", self.results_path)
            return self.results_table(self.read_plan().column("run_id").to_pylist())

    def results_table(self, run_ids) -> pa.Table:
        """One row per run of `run_ids` that has a record, in that order: ids, params, metrics, status."""
        records = self._records().all()
        return _to_table([_flat_row(records[rid]) for rid in run_ids if rid in records])

    def gather(self, run_ids) -> pa.Table:
        """results.parquet from the run records (shards compacted first when there are many)."""
        self.records.compact()
        table = self.results_table(run_ids)
        write_parquet(self.results_path, table)
        return table


CONFIG_KEYS = ("run_id", "data_key", "session", "data", "fit", "repeat_data", "repeat_fit", "seed_data", "seed_fit")


def run_config(record: dict) -> dict:
    """What a run was given, from its record: ids, data and fit params, repeats and seeds."""
    return {k: record.get(k) for k in CONFIG_KEYS}


ROW_KEYS = ("run_id", "data_key", "status", "error", "duration_s", "attempt", "node", "device", "data_sha256",
            "repeat_data", "repeat_fit", "seed_data", "seed_fit")


def _write_run_parts(d: Path, result: dict) -> None:
    """arrays.npz, history.parquet, the fit's files and run.log (with the error of a failed run)."""
    text = result.get("log") or ""
    if result["status"] == "failed" and result.get("error"):
        text += f"{'' if text.endswith(chr(10)) or not text else chr(10)}--- the run failed ---\n{result['error']}\n"
    if not (result.get("arrays") or result.get("history") or result.get("files") or text):
        return
    os.makedirs(d, exist_ok=True)
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
    if text:
        write_text(d / "run.log", text, make_dir=False)


def _flat_row(r: dict) -> dict:
    """A record as one results row: ids and status, then data.*, fit.* and metrics.* columns."""
    flat = {k: r.get(k) for k in ROW_KEYS}
    if r.get("session") is not None:
        flat["session"] = r["session"]
    flat.update(_flatten("data", r.get("data") or {}))
    flat.update(_flatten("fit", r.get("fit") or {}))
    flat.update({f"metrics.{k}": v for k, v in (r.get("metrics") or {}).items()})
    return flat


class _Legacy:
    """Run results as earlier versions wrote them, runs/<id>/result.json, read like Records."""

    def __init__(self, runs: Path):
        self.runs = runs

    def all(self) -> dict:
        out = {}
        for p in sorted(self.runs.glob("*/result.json")):
            try:
                out[p.parent.name] = json.loads(p.read_text())
            except (OSError, ValueError):
                pass
        return out

    def statuses(self) -> dict:
        return {rid: r.get("status") for rid, r in self.all().items()}

    def get(self, run_id: str) -> dict | None:
        try:
            return json.loads((self.runs / run_id / "result.json").read_text())
        except (OSError, ValueError):
            return None


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
