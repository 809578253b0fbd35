"""How a study's code reaches every worker, on this machine or any node of a cluster: the study's top-level
modules (its package, or its module file, and the local modules it imports) uploaded to the cluster once per
code version as Ray `py_modules`, so each version runs in workers of its own. A study defined in a script or
notebook travels by value instead; the engine itself is installed on every node."""
from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from sweeper.errors import SpecError

log = logging.getLogger("sweeper")

EXCLUDES = ["__pycache__", "*.pyc", ".git", ".ipynb_checkpoints", "*.egg-info", "outputs", ".pytest_cache",
            ".hypothesis", ".venv"]
MAX_BYTES = 64 * 2 ** 20  # Ray's own limit per package is 512 MiB; a study's code is kilobytes


def study_paths(study) -> list[Path]:
    """The files or folders that make the study importable on a worker: for each top-level name of the study's
    local modules, its package folder or module file (a module loaded under another name than its file's, e.g.
    by `spec_from_file_location`, is copied under its own name). A study defined in a script travels by value,
    but the modules its functions come from, where they are not `__main__`, travel as files."""
    from sweeper.spec.code_hash import local_modules

    modules = {}
    for name in _study_modules(study):
        modules.update(local_modules(name))
    paths = []
    for top in sorted({name.split(".")[0] for name in modules}):
        path = modules.get(top)
        if path is None:  # the package itself was not imported by name: the folder above its modules
            sub = next(p for n, p in modules.items() if n.startswith(top + "."))
            path = next(p for p in sub.parents if p.name == top)
        elif path.name == "__init__.py":
            path = path.parent
        paths.append(path if path.stem == top else _renamed(path, top))
    return paths


def _study_modules(study) -> set:
    """The module a study is named by, else the modules its functions and parameter models come from."""
    if study.ref:
        return {study.ref.split(":")[0]}
    parts = (study.simulate, study.fit, study.setup, study.teardown, study.data_params, study.fit_params)
    return {m for m in (getattr(p, "__module__", None) for p in parts if p is not None)
            if m and m != "__main__" and sys.modules.get(m) is not None}


def _renamed(path: Path, name: str) -> Path:
    """A copy of a module file (or package folder) under the name it was imported as, in a folder of its own."""
    key = path.read_bytes() if path.is_file() else str(path).encode()
    folder = Path(tempfile.gettempdir()) / "sweeper-ship" / f"{name}-{hashlib.sha256(key).hexdigest()[:16]}"
    dest = folder / (name + ".py" if path.is_file() else name)
    if path.is_dir():  # a folder is copied afresh every time: its name says nothing of its contents
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(path, dest, ignore=shutil.ignore_patterns(*EXCLUDES))
    elif not dest.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return dest


def _excluded(rel: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in EXCLUDES)


def _files(path: Path):
    if path.is_file():
        yield path
        return
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not _excluded(Path(d))]
        for f in files:
            if not _excluded(Path(f)):
                yield Path(folder) / f


def check_size(spec, paths: list[Path], limit: int = MAX_BYTES) -> None:
    """A SpecError, before any Ray work, when the study's code to ship is larger than `limit`, naming the
    largest files (data kept inside the study's package belongs elsewhere: datasets are simulated)."""
    sizes = sorted(((f.stat().st_size, f) for p in paths for f in _files(p)), reverse=True)
    total = sum(s for s, _ in sizes)
    if total <= limit:
        return
    largest = ", ".join(f"{f} ({s / 2 ** 20:.1f} MiB)" for s, f in sizes[:3])
    raise SpecError(f"the study's code to send to the workers ({', '.join(map(str, paths))}) is "
                    f"{total / 2 ** 20:.1f} MiB, over {limit / 2 ** 20:.0f} MiB; largest: {largest}; move data "
                    "files out of the study's package", where=spec.origins.get("study", spec.path), key="study")


def runtime_env(paths: list[Path]) -> dict | None:
    """The runtime_env that puts `paths` on every worker's import path: each uploaded to the connected cluster
    once (content-addressed, so an unchanged study is not sent again) and named by its URI."""
    if not paths:
        return None
    # ray._private (checked against Ray 2.60): a task's runtime_env takes URIs only; this is the upload
    # ray.init(runtime_env=...) performs for a job's local py_modules
    import ray
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    scratch = ray._private.worker.global_worker.node.get_runtime_env_dir_path() \
        if getattr(ray._private.worker.global_worker, "node", None) else tempfile.gettempdir()
    env = upload_py_modules_if_needed({"py_modules": [str(p) for p in paths], "excludes": EXCLUDES},
                                      include_gitignore=True, scratch_dir=scratch, logger=log)
    return {"py_modules": env["py_modules"]}
