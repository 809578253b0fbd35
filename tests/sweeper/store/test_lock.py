"""The study directory's lock across nodes of a shared filesystem: pid on this host, heartbeat elsewhere."""
import json
import os
import socket
import time
from pathlib import Path

import pytest

from sweeper.store import lock as lockmod
from sweeper.errors import LockError
from sweeper.store.lock import DirLock


def planted(path, host, age_s, pid=4242):
    """A lock file as a driver on `host` would leave it, its last heartbeat `age_s` ago."""
    path.write_text(json.dumps({"pid": pid, "host": host}))
    t = time.time() - age_s
    os.utime(path, (t, t))


def test_a_live_driver_on_another_node_is_respected(tmp_path):
    planted(tmp_path / ".lock", "node-b", age_s=5)
    lk = DirLock(tmp_path / ".lock")
    assert lk.holder()["host"] == "node-b"
    with pytest.raises(LockError, match=r"pid 4242 on node-b, heartbeat 5 s ago"):
        lk.acquire()
    assert json.loads((tmp_path / ".lock").read_text())["host"] == "node-b"  # untouched


def test_a_dead_node_s_stale_lock_is_taken_over(tmp_path, caplog):
    planted(tmp_path / ".lock", "node-b", age_s=lockmod.STALE_S + 5)
    lk = DirLock(tmp_path / ".lock")
    assert lk.holder() is None
    lk.acquire()
    try:
        assert json.loads((tmp_path / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        assert "taking over the lock" in caplog.text and "node-b" in caplog.text
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # the stale one moved aside, then removed
    finally:
        lk.release()
    assert not (tmp_path / ".lock").exists()


def test_a_dead_pid_on_this_host_is_stale_whatever_its_heartbeat(tmp_path):
    planted(tmp_path / ".lock", socket.gethostname(), age_s=0, pid=2**22 + 12345)
    assert DirLock(tmp_path / ".lock").holder() is None


def test_the_heartbeat_keeps_a_held_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 0.05)
    lk = DirLock(tmp_path / ".lock")
    lk.acquire()
    try:
        old = time.time() - 3600
        os.utime(tmp_path / ".lock", (old, old))
        deadline = time.time() + 5
        while (tmp_path / ".lock").stat().st_mtime < time.time() - 60 and time.time() < deadline:
            time.sleep(0.02)
        assert time.time() - (tmp_path / ".lock").stat().st_mtime < 60  # touched again by the heartbeat
    finally:
        lk.release()


def test_release_leaves_a_lock_that_another_driver_took(tmp_path):
    lk = DirLock(tmp_path / ".lock")
    lk.acquire()
    planted(tmp_path / ".lock", "node-b", age_s=0)  # as if taken over by a driver that judged us dead
    lk.release()
    assert json.loads((tmp_path / ".lock").read_text())["host"] == "node-b"


def test_a_take_over_that_finds_a_live_lock_after_all_gives_it_back(tmp_path):
    planted(tmp_path / ".lock", "node-b", age_s=1)  # as if node-b took over between our look and our rename
    lk = DirLock(tmp_path / ".lock")
    with pytest.raises(LockError, match="node-b"):
        lk._take_over()
    assert json.loads((tmp_path / ".lock").read_text())["host"] == "node-b"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_a_live_driver_of_another_user_is_live():
    """os.kill(pid, 0) on another user's process raises PermissionError: that process runs, its lock holds.
    Root may signal anyone, so as root the check runs with an unprivileged effective user, against a process of
    a third user."""
    import subprocess

    if os.geteuid() != 0:
        assert lockmod._alive(1)  # init: always running, never ours
        return
    import pwd

    try:
        owner, checker = pwd.getpwnam("daemon"), pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no unprivileged users to play the two drivers")
    other = subprocess.Popen(["sleep", "30"], user=owner.pw_uid, group=owner.pw_gid)
    try:
        os.seteuid(checker.pw_uid)
        try:
            with pytest.raises(PermissionError):
                os.kill(other.pid, 0)  # what the lock sees: the process is there, but not ours to signal
            alive = lockmod._alive(other.pid)
        finally:
            os.seteuid(0)
        assert alive
    finally:
        other.kill()
        other.wait()
    assert not lockmod._alive(other.pid)


def test_the_heartbeat_survives_a_failed_touch_and_puts_back_a_removed_lock(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 0.05)
    real, failures = os.utime, []

    def flaky(path, *a, **k):  # os.utime is the process's: other threads' calls pass through untouched
        if Path(path) == tmp_path / ".lock" and len(failures) < 2:  # our first two beats fail (a hiccup)
            failures.append(path)
            raise OSError(5, "Input/output error")
        return real(path, *a, **k)

    lk = DirLock(tmp_path / ".lock")
    lk.acquire()
    try:
        monkeypatch.setattr(lockmod.os, "utime", flaky)
        old = time.time() - 3600
        real(tmp_path / ".lock", (old, old))
        deadline = time.time() + 5
        while (tmp_path / ".lock").stat().st_mtime < time.time() - 60 and time.time() < deadline:
            time.sleep(0.02)
        assert len(failures) == 2 and time.time() - (tmp_path / ".lock").stat().st_mtime < 60
        assert caplog.text.count("could not be touched") == 1  # said once, not every beat
        (tmp_path / ".lock").unlink()
        deadline = time.time() + 10  # a clock of its own: the first phase may have used the first one up
        while "it is back" not in caplog.text and time.time() < deadline:  # the sentence ends the put-back
            time.sleep(0.02)
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid() and "it is back" in caplog.text
    finally:
        lk.release()
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_the_lock_holds_its_holder_from_the_moment_it_exists(tmp_path, monkeypatch, links):
    """Written aside and linked into place, so another driver never reads an empty lock; where the filesystem
    has no hard links (EPERM), it is created in place and still exclusive."""
    if not links:
        def no_link(*a, **k):
            raise OSError(1, "Operation not permitted")
        monkeypatch.setattr(lockmod.os, "link", no_link)
    lk = DirLock(tmp_path / ".lock")
    lk.acquire()
    try:
        assert json.loads((tmp_path / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing left aside
        with pytest.raises(LockError, match="another sweep"):
            DirLock(tmp_path / ".lock").acquire()
    finally:
        lk.release()
    assert not (tmp_path / ".lock").exists()
