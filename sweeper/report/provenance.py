"""Provenance: when, where from and with which versions a sweep ran (provenance.json, shown in report.html)."""
from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("sweeper", "numpy", "scipy", "pyarrow", "ray", "matplotlib", "keras", "tensorflow", "jax", "cupy")


def versions() -> dict:
    """Python and the installed versions of the packages a sweep's numbers may depend on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: Path) -> str | None:
    """The commit (with '+dirty' for local changes) of the repository holding `path`, if any."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance(spec_path: str | None, started: float) -> dict:
    """When, where from and with which versions this sweep (or its last resume) ran."""
    where = Path(spec_path).parent if spec_path else Path.cwd()
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))  # noqa: E731
    return {"started": stamp(started), "finished": stamp(time.time()), "wall_s": time.time() - started,
            "spec_path": spec_path, "git_commit": git_commit(where), "versions": versions()}
