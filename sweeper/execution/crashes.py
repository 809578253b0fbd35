"""What a crashed worker said last: each run marks its start on the worker's stderr (which Ray keeps in the
node's logs/worker-*.err), so when a worker dies the driver can find the dead run's last output there and
put it in the run's run.log. Only this node's logs are read (a local Ray, or the head node of a cluster)."""
from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("sweeper")

MARK = "sweeper: run {} starts"
RAY_WORKER_DIED = "A worker died or was killed while executing a task"
ENGINE_DIRS = tuple({str(Path(__file__).parent) + os.sep, str(Path(__file__).resolve().parent) + os.sep})
FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


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


def cause(said: str | None) -> str | None:
    """From a dead worker's last output, what killed it and where in the study, e.g. "Fatal Python error:
    Segmentation fault in fit (/home/me/mystudy.py:9)"; None when it printed no fault-handler stack."""
    lines = (said or "").splitlines()
    fatal = next((ln.strip() for ln in lines if ln.startswith("Fatal Python error:")), None)
    if fatal is None:
        return None
    frames = [m for m in map(FRAME.match, lines) if m]  # most recent first
    engine = next((i for i, m in enumerate(frames) if m["file"].startswith(ENGINE_DIRS)), None)
    study = frames[engine - 1] if engine else None  # the frame the engine called: the study's simulate or fit
    return fatal if study is None else f"{fatal} in {study['func']} ({study['file']}:{study['line']})"


@contextlib.contextmanager
def worker_deaths_in_the_runs():
    """While the sweep runs, Ray's console paragraph for each dead worker ("(raylet) A worker died or was
    killed ...") goes to the debug log: the sweep says it once, in each lost run's error and run.log, and the
    summary comes first. Ray's other messages print as before."""
    try:
        from ray._private import worker as ray_worker

        printing = ray_worker.print_to_stdstream
    except (ImportError, AttributeError):  # Ray's internals moved: its paragraphs print, nothing worse
        yield
        return

    def divert(data, *args, **kwargs):
        lines = data.get("lines") or [""]
        if data.get("pid") == "raylet" and str(lines[0]).startswith(RAY_WORKER_DIED):
            log.debug("Ray: %s", "\n".join(map(str, lines)))
            return None
        return printing(data, *args, **kwargs)

    ray_worker.print_to_stdstream = divert
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = printing
