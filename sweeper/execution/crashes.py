"""What a crashed worker said last: each run marks its start on the worker's stderr (which Ray keeps in the
node's logs/worker-*.err), so when a worker dies the driver can find the dead run's last output there and
put it in the run's run.log. Only this node's logs are read (a local Ray, or the head node of a cluster)."""
from __future__ import annotations

import os
from pathlib import Path

MARK = "sweeper: run {} starts"


def mark_start(run_id: str | None) -> None:
    """Written by the worker, to its real stderr, as a run starts."""
    if run_id:
        os.write(2, (MARK.format(run_id) + "\n").encode())


def logs_dir() -> Path | None:
    """This node's Ray logs directory, if a Ray session runs here."""
    try:
        import ray

        return Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    except Exception:  # no session, or Ray's internals moved: no crash output, nothing worse
        return None


def last_output(run_id: str, lines: int = 30) -> str | None:
    """The last `lines` lines a worker wrote after it started `run_id`, or None if no log here has them."""
    root = logs_dir()
    mark = MARK.format(run_id)
    if root is None or not root.is_dir():
        return None
    for path in sorted(root.glob("worker-*.err"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if mark in text:
            after = text.rsplit(mark, 1)[1].strip("\n").splitlines()
            return "\n".join(after[-lines:]) + f"\n(the last {min(lines, len(after))} lines of {path})"
    return None
