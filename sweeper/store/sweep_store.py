"""Reading and writing a sweep directory (its paths: `SweepPaths`): spec, plan, code and provenance, datasets,
run directories and records (resume), and results.parquet built from the records (`gather`)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweeper.errors import SpecError
from sweeper.hashing import arrays_sha256, plain
from sweeper.records import RESERVED_FILES, RunOutcome, RunRecord, RunStatus
from sweeper.store.atomic import atomic_write, write_npz, write_parquet, write_text
from sweeper.store.gather import results_table
from sweeper.store.lock import DirLock
from sweeper.store.paths import SweepPaths
from sweeper.store.records import Records
from sweeper.yaml_dialect import dump_yaml, parse_value

log = logging.getLogger("sweeper")


class SweepStore:
    """What a sweep directory holds, read and written; `paths` names it, `lock` guards it (one driver)."""

    def __init__(self, root):
        self.paths = SweepPaths(root)
        self.root = self.paths.root
        self.records = Records(self.paths.records)
        self.lock = DirLock(self.paths.lock)

    @classmethod
    def open(cls, path) -> "SweepStore":
        """An existing sweep directory; a SpecError if `path` is not one."""
        store = cls(Path(path))
        if not store.paths.is_sweep():
            inside = [p.root.name for p in SweepPaths.sweeps_in(path)]
            hint = f"; the sweeps inside: {', '.join(inside)}" if inside else ""
            raise SpecError(f"not a sweep directory (no plan.parquet){hint}", where=str(path))
        return store

    # -- spec, plan, code, provenance --------------------------------------------------
    def write_spec(self, spec_dict: dict, origins: dict, note: str | None = None) -> None:
        text = (f"# {note}\n" if note else "") + dump_yaml(spec_dict)
        if origins:
            text += "# provenance (key: file:line)\n" + "".join(f"#   {k}: {v}\n" for k, v in sorted(origins.items()))
        write_text(self.paths.spec, text)

    def read_spec(self) -> dict:
        return parse_value(self.read_spec_text()) or {}

    def read_spec_text(self) -> str:
        return self.paths.spec.read_bytes().decode("utf-8")

    def write_plan(self, table: pa.Table) -> None:
        write_parquet(self.paths.plan, table)

    def read_plan(self) -> pa.Table:
        return pq.read_table(self.paths.plan)

    def write_json(self, path: Path, info) -> None:
        """provenance.json, code.json, slurm/jobs.json: small JSON files, written whole."""
        write_text(path, json.dumps(plain(info), indent=1))

    def read_json(self, path: Path, default=None):
        """A small JSON file, or `default` ({}) if it is missing or unreadable."""
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return {} if default is None else default

    def write_sbatch(self, text: str) -> None:
        write_text(self.paths.sbatch, text)
        self.paths.sbatch.chmod(0o755)

    # -- datasets -------------------------------------------------------------------
    def save_dataset(self, key: str, data: dict, meta: dict) -> None:
        npz, meta_path = self.paths.dataset(key)
        write_npz(npz, dict(data))
        self.write_json(meta_path, meta)

    def load_dataset(self, key: str) -> tuple[dict, dict] | None:
        """(arrays, metadata) of a saved dataset whose content hash matches its metadata, else None
        (and why, in the log)."""
        npz, meta_path = self.paths.dataset(key)
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
    def read_history(self, run_id: str) -> pa.Table | None:
        path = self.paths.history(run_id)
        return pq.read_table(path) if path.is_file() else None

    def read_log(self, run_id: str) -> str:
        path = self.paths.run_log(run_id)
        return path.read_text() if path.is_file() else ""

    def run_files(self, run_id: str) -> dict:
        """The files a fit returned (`files`), by name."""
        d = self.paths.run_dir(run_id)
        return {p.name: p for p in sorted(d.iterdir()) if p.is_file() and p.name not in RESERVED_FILES
                and not p.name.startswith(".")} if d.is_dir() else {}

    def write_run_parts(self, record: RunRecord, outcome: RunOutcome) -> None:
        """A run's arrays, history, files and log in its run directory (only if it has any). Its record, appended
        after (`append_records`), marks the run done."""
        _write_run_parts(self.paths.run_dir(record.run_id), outcome)

    def append_records(self, records: list[RunRecord]) -> None:
        """Save run records as one new shard (the driver's saver thread, in batches)."""
        if records:
            self.records.append([r.to_json() for r in records])

    def _records(self):
        """The run records; a sweep directory written before records existed is read from its
        runs/*/result.json."""
        return self.records if self.records or not self.paths.runs.is_dir() else _Legacy(self.paths.runs)

    def adopt_legacy_results(self) -> None:
        """A sweep directory from before the records (runs/*/result.json): its results become the first shard,
        so a resume keeps them. Set torn shards aside. The driver calls this once it holds the lock."""
        self.records.set_aside_torn()
        if not self.records and self.paths.runs.is_dir():
            old = list(_Legacy(self.paths.runs).all().values())
            if old:
                self.records.append(old)
                log.info("%d run results from runs/*/result.json are now run records in %s", len(old),
                         self.records.dir)

    def read_record(self, run_id: str) -> RunRecord | None:
        """A run's last record, or None if it has none."""
        found = self._records().get(run_id)
        return RunRecord.from_json(found) if found is not None else None

    def read_records(self) -> dict[str, RunRecord]:
        """{run_id: last record} of every recorded run."""
        return {rid: RunRecord.from_json(r) for rid, r in self._records().all().items()}

    def has_results(self) -> bool:
        return bool(self.records) or self.paths.runs.is_dir()

    def completed(self, run_ids) -> set:
        """Runs whose last record says ok (failed and missing runs are run again on resume)."""
        statuses = self._records().statuses()
        return {rid for rid in run_ids if statuses.get(rid) == RunStatus.OK}

    # -- gather ---------------------------------------------------------------------
    def read_results(self, run_ids=None) -> pa.Table:
        """results.parquet; built from the run records (of `run_ids`, default the plan's) if it is missing (a
        sweep still running or stopped before its gather) or unreadable (said as a warning)."""
        try:
            return pq.read_table(self.paths.results)
        except Exception as error:
            if self.paths.results.exists():
                log.warning("%s is unreadable (%s); reading the run records", self.paths.results, error)
            ids = run_ids if run_ids is not None else self.read_plan().column("run_id").to_pylist()
            return results_table(self._records().all(), ids)

    def gather(self, run_ids) -> pa.Table:
        """results.parquet from the run records (shards compacted first when there are many)."""
        self.records.compact()
        table = results_table(self._records().all(), run_ids)
        write_parquet(self.paths.results, table)
        return table


def _write_run_parts(d: Path, outcome: RunOutcome) -> None:
    """arrays.npz, history.parquet, the fit's files and run.log (with the error of a failed run)."""
    text = outcome.log or ""
    if outcome.status == RunStatus.FAILED and outcome.error:
        text += f"{'' if text.endswith(chr(10)) or not text else chr(10)}--- the run failed ---\n{outcome.error}\n"
    parts = outcome.parts
    if not (parts and (parts.arrays or parts.history or parts.files) or text):
        return
    os.makedirs(d, exist_ok=True)
    if parts and parts.arrays:
        write_npz(d / "arrays.npz", parts.arrays)
    if parts and parts.history:
        hist = {k: pa.array(np.asarray(v, dtype=np.float64)) for k, v in parts.history.items()}
        n = max(len(v) for v in hist.values())
        hist = {k: v if len(v) == n else pa.array(list(v.to_pylist()) + [None] * (n - len(v)))
                for k, v in hist.items()}
        write_parquet(d / "history.parquet", pa.table({"epoch": np.arange(n), **hist}))
    for name, blob in ((parts.files if parts else None) or {}).items():
        atomic_write(d / name, lambda p, b=blob: p.write_bytes(b))
    if text:
        write_text(d / "run.log", text, make_dir=False)



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


