"""Another Ray on this machine, as a user's `ray start --head` from another environment would leave running:
started under its own temp dir and stopped by killing only its own processes (never `ray stop`, which would
end every Ray on the machine)."""
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests import REPO
from tests.sweeper.execution.real_cluster import auth_env



@contextlib.contextmanager
def foreign_ray():
    """Yields a callable that says whether the other Ray is still alive; its `ray_tmpdir` is the RAY_TMPDIR under
    which a plain `ray.init()` finds this cluster, as it finds a user's `ray start --head` under /tmp/ray."""
    root = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {**auth_env(Path(root)), "PYTHONPATH": str(REPO)}  # token authentication on, with a token of its own
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(["ray", "start", "--head", f"--port={port}", f"--temp-dir={root}/ray", "--num-cpus=1",
                    "--include-dashboard=false", "--disable-usage-stats"], env=env, capture_output=True,
                   check=True, timeout=120)
    try:
        def alive() -> bool:
            return subprocess.run(["pgrep", "-f", f"{root}/"], capture_output=True).returncode == 0

        alive.ray_tmpdir = root
        yield alive
    finally:
        pids = subprocess.run(["pgrep", "-f", f"{root}/|ray.util.client.server --address=[^ ]*:{port} "],
                              capture_output=True, text=True).stdout.split()
        for pid in pids:  # its processes and their children, as a SLURM job's own clean-up does
            subprocess.run(["pkill", "-9", "-P", pid])
        subprocess.run(["kill", "-9", *pids], capture_output=True)
        time.sleep(2)
        shutil.rmtree(root, ignore_errors=True)
