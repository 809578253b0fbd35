"""Files that are never seen half-written: write to a temporary name in the same folder, then rename."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write(path: Path, write, durable: bool = False) -> None:
    """Call write(tmp_path) then rename onto `path`, so a reader never sees a half-written file. `durable`:
    the file and then its folder are fsynced, so after a power cut the file is there whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        write(Path(tmp))
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent)


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str, make_dir: bool = True) -> None:
    """Atomic small-file write (the per-run hot path: plain os calls, no temp-file search)."""
    if make_dir:
        os.makedirs(path.parent, exist_ok=True)
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_npz(path: Path, arrays: dict) -> None:
    def w(p):
        with open(p, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write(path, w)


def write_parquet(path: Path, table: pa.Table, durable: bool = False) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p), durable)
