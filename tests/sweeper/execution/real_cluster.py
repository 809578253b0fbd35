"""A real two-node Ray cluster on this machine, as a user starts one: `ray start --head` (no CPUs: every run goes
to the worker) and `ray start --address` for a worker node in its own mount namespace (`unshare -m`), where
tmpfs mounts hide folders the driver can see (the study's, the output's). Token authentication is on, with a
token of the cluster's own (never ~/.ray/auth_token). Only this cluster's processes are stopped at the end:
`ray stop` would end every Ray on the machine."""
from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def unshare_works() -> bool:
    """Whether this process may make a mount namespace and mount a tmpfs in it (root, or a permissive kernel)."""
    probe = tempfile.mkdtemp(prefix="unsh")
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {probe}"],
                              capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    finally:
        os.rmdir(probe)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    """Every port a Ray node opens, chosen free: two nodes on one machine must not share any."""
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    low = free_ports(1)[0] // 100 * 100  # a worker port range of the node's own
    return [f"{name}={port}" for name, port in zip(names, free_ports(len(names)))] + \
        [f"--min-worker-port={20000 + low % 20000}", f"--max-worker-port={20000 + low % 20000 + 99}"]


def auth_env(root: Path, token: bool = True) -> dict:
    """The environment of every process of the cluster and of its driver: token auth with a token file of the
    cluster's own, or (token=False) auth off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    if not token:
        return {**env, "RAY_AUTH_MODE": "disabled"}
    path = root / "auth_token"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


@contextlib.contextmanager
def two_nodes(hide: list[Path], worker_cpus: int = 2, token: bool = True):
    """Yields (address, env): the head's GCS address and the environment a driver joins it with."""
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths must fit 107 chars
    env = auth_env(root, token)
    port = free_ports(1)[0]
    common = ["--disable-usage-stats", "--block"]
    head = ["ray", "start", "--head", f"--port={port}", "--num-cpus=0", f"--temp-dir={root / 'head'}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_ports(1)[0]}", *_node_ports(), *common]
    mounts = " && ".join(f"mount -t tmpfs tmpfs {shlex.quote(str(p))}" for p in hide)
    worker = ["ray", "start", f"--address=127.0.0.1:{port}", f"--num-cpus={worker_cpus}",
              f"--temp-dir={root / 'worker'}", *_node_ports(), *common]
    procs = []
    try:
        procs.append(subprocess.Popen(head, env=env, stdout=subprocess.DEVNULL, stderr=open(root / "head.err", "w"),
                                      start_new_session=True))
        _wait_for_port(port, procs[0], root / "head.err")
        procs.append(subprocess.Popen(["unshare", "-m", "sh", "-c", f"{mounts} && exec {shlex.join(worker)}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=open(root / "worker.err", "w"),
                                      start_new_session=True))
        _wait_for_nodes(f"127.0.0.1:{port}", env, 2, procs, root)
        yield f"127.0.0.1:{port}", env
    finally:
        _stop(procs, root)


def _wait_for_port(port: int, proc, err: Path, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start --head exited: {err.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.5)
    raise RuntimeError(f"the head did not listen on {port} within {timeout} s")


NODES = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
         "print(sum(n['Alive'] for n in ray.nodes()))")


def _wait_for_nodes(address: str, env: dict, n: int, procs: list, root: Path, timeout: float = 90) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if procs[-1].poll() is not None:
            raise RuntimeError(f"the worker node exited: {(root / 'worker.err').read_text()[-2000:]}")
        out = subprocess.run([sys.executable, "-c", NODES, address], env=env, capture_output=True, text=True,
                             timeout=60)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(1)
    raise RuntimeError(f"{n} nodes did not join within {timeout} s")


def _stop(procs: list, root: Path) -> None:
    """SIGTERM to each `ray start --block` (it stops its node's Ray), then SIGKILL to whatever of this cluster
    is left: its process groups and the processes naming its temp dir."""
    for p in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    subprocess.run(["pkill", "-9", "-f", str(root)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
