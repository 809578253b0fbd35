"""The sweep directory's lock: one driver at a time, also across the nodes of a shared filesystem.

The lock file holds {pid, host}; its mtime is the holder's heartbeat, touched every HEARTBEAT_S. A holder on
this host is alive while its pid is; a holder on another host (which this node cannot ask) is alive while its
heartbeat is younger than STALE_S. A dead holder's lock is taken over; a live one is respected.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from sweeper.errors import LockError

log = logging.getLogger("sweeper")

HEARTBEAT_S = 10.0
STALE_S = 90.0  # several missed heartbeats, and more than the clock skew between nodes


class DirLock:
    """The lock file `path`: create it atomically, keep its heartbeat, release it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._held: dict | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _read(self) -> tuple[dict, float] | None:
        """(holder, heartbeat age in seconds), or None when there is no lock file."""
        try:
            text, age = self.path.read_text(), time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        return _parse(text), age

    def holder(self) -> dict | None:
        """Who holds the lock ({pid, host, heartbeat_age_s}) if a live driver does; None otherwise."""
        found = self._read()
        if found is None:
            return None
        holder, age = found
        return {**holder, "heartbeat_age_s": round(age, 1)} if _live(holder, age) else None

    def check_free(self) -> None:
        """Refuse (LockError) if a live driver holds the lock; writes nothing."""
        holder = self.holder()
        if holder is not None:
            raise LockError(f"another sweep (pid {holder.get('pid')} on {holder.get('host')}, heartbeat "
                            f"{holder['heartbeat_age_s']:.0f} s ago) is writing to {self.path.parent}; wait for it "
                            f"to finish, or delete {self.path} if it is gone")

    def acquire(self) -> None:
        """Take the lock (a dead holder's lock is taken over) and start the heartbeat; LockError if held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            if not self._create(me):
                self.check_free()
                self._take_over()
                continue
            self._held = me
            self._start_heartbeat()
            return
        raise LockError(f"could not take {self.path}: it keeps reappearing; is another sweep starting?")

    def _create(self, holder: dict) -> bool:
        """Create the lock holding `holder`, or False if it exists. The holder is written aside and hard-linked
        into place (atomic, also on NFS), so no reader ever finds the lock without its holder."""
        aside = self.path.with_name(f"{self.path.name}.new.{socket.gethostname()}.{os.getpid()}")
        aside.write_text(json.dumps(holder))
        try:
            os.link(aside, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            return _create_in_place(self.path, holder)  # a filesystem without hard links
        finally:
            aside.unlink(missing_ok=True)

    def _take_over(self) -> None:
        """Move a dead holder's lock aside. The rename is atomic, so of two drivers taking over at once only one
        moves it; the other then finds the winner's fresh lock and is refused."""
        aside = self.path.with_name(f"{self.path.name}.stale.{socket.gethostname()}.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        text = aside.read_text(errors="replace")
        if _live(_parse(text), time.time() - aside.stat().st_mtime):
            # another driver took over between our look and the rename: give its lock back, then refuse
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            self.check_free()
            return
        log.warning("taking over the lock of a sweep that is gone (%s: %s)", self.path, text.strip() or "empty")
        aside.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="sweeper-lock-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        """Touch the lock every HEARTBEAT_S until released. A failed touch (a shared filesystem's hiccup) is
        said once and retried at the next beat; a lock removed under the sweep is put back unless another
        driver has taken it meanwhile."""
        failing = False
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
                failing = False
            except FileNotFoundError:
                if not self._restore():
                    return
            except OSError as e:
                if not failing:
                    log.warning("the lock %s could not be touched (%s); trying again", self.path, e)
                failing = True

    def _restore(self) -> bool:
        """Put back the lock removed while this sweep held it; False (and said) if another driver has one."""
        try:
            created = self._create(self._held)
        except OSError:
            return True  # the folder is unreachable just now: the next beat tries again
        if not created:
            log.error("the lock %s was removed while this sweep held it, and another driver took it", self.path)
            return False
        log.warning("the lock %s was removed while this sweep held it; it is back", self.path)
        return True

    def release(self) -> None:
        if self._held is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        found = self._read()
        if found is not None and found[0].get("pid") == self._held["pid"] and \
                found[0].get("host") == self._held["host"]:
            self.path.unlink(missing_ok=True)
        self._held = None


def _create_in_place(path: Path, holder: dict) -> bool:
    """Create `path` exclusively and write `holder` into it; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(holder, f)
    return True


def _parse(text: str) -> dict:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}  # unreadable (or mid-write where there are no hard links): the heartbeat's age decides


def _live(holder: dict, age: float) -> bool:
    """A holder on this host is alive while its pid is; one elsewhere while its heartbeat is fresh."""
    if holder.get("host") == socket.gethostname():
        return _alive(holder.get("pid", -1))
    return age < STALE_S


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host; one of another user (EPERM) runs too."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True
