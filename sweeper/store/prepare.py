"""What a sweep will run, written into its directory before any run starts (by `sweep run` and `sweep slurm`):
spec.yaml, plan.parquet and code.json."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from sweeper.errors import SpecError
from sweeper.hashing import short_hash
from sweeper.store.sweep_store import SweepStore

log = logging.getLogger("sweeper")


def sweep_store(spec, out) -> SweepStore:
    """The store of a spec's sweep directory, OUT/<name>/<sweep_id>; a SpecError (one line, before any Ray
    work, nothing written) if that folder could not be made or written."""
    store = SweepStore(Path(out) / spec.name / spec.sweep_id())
    problem = _unwritable(store.root)
    if problem:
        raise SpecError(f"cannot write the sweep into {store.root}: {problem}", where=str(out), key="--out")
    return store


def _unwritable(folder: Path) -> str | None:
    """Why `folder` (made if missing) could not be written, judged at its nearest existing ancestor; None if
    it could."""
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable (permission denied)"
    return None


def prepare(store: SweepStore, spec, plan):
    """spec.yaml, plan.parquet and code.json: what the sweep will run, readable before any run starts.
    Returns the plan's table."""
    store.write_spec(spec.to_dict(), spec.origins, None if spec.study.ref else SCRIPT_NOTE)
    table = plan.table()
    store.write_plan(table)
    record_code(store, spec)
    return table


SCRIPT_NOTE = ("the study was defined in a script or notebook, not an importable module: `sweep run` cannot "
               "re-run this spec; run it through sweeper.run(...) with the same Study")


def record_code(store: SweepStore, spec) -> None:
    """code.json: the study's code hash (part of the sweep id). An earlier sweep of the same spec whose code
    differs is named in the log, so nobody wonders where the old results went."""
    plan_hash = short_hash(spec.plan_inputs(), 16)
    store.write_json(store.paths.code, {"study": spec.study_ref, "plan_hash": plan_hash, **spec.code})
    for other in store.paths.siblings():
        old = store.read_json(other.code)
        if old.get("plan_hash") == plan_hash and old.get("sha256") != spec.code.get("sha256"):
            changed = sorted(k for k in {**old.get("parts", {}), **spec.code.get("parts", {})}
                             if old.get("parts", {}).get(k) != spec.code.get("parts", {}).get(k))
            log.warning("the code of study %s changed since %s was run (%s): these results go to %s, the old "
                        "ones stay where they are", spec.study_name, other.root, ", ".join(changed), store.root)
