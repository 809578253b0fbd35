"""`sweep slurm`: a readable sbatch script that runs a sweep on a SLURM allocation, its submission, and the
state of the jobs submitted for a sweep directory (squeue, else sacct)."""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweeper.errors import SpecError
from sweeper.store.sweep_store import SweepStore

STOPPED_RC = 128 + signal.SIGUSR1  # the driver's exit status when asked to stop before the time limit


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """What the job asks SLURM for, and how it starts Ray. None leaves a setting to the cluster's default."""
    nodes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None      # CPUs of each node given to Ray (default: all of the node's)
    mem: str | None = None                # per node, SLURM syntax: 64G
    time: str | None = None               # walltime, SLURM syntax: 90, 1:30:00, 2-00:00:00
    partition: str | None = None
    account: str | None = None
    setup: str | None = None              # a shell line that activates the environment on the nodes
    warn_s: int | None = None             # seconds before the time limit to stop (default: 300, or a tenth)
    classic: bool = False                 # `ray start --head` / `srun ray start` instead of symmetric-run
    port: int = 6379


def walltime_s(text: str) -> int:
    """Seconds of a SLURM time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise SpecError(f"{text!r} is not a SLURM time (e.g. 90, 1:30:00, 2-00:00:00)", key="--time")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-H[:M[:S]]
        return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if c is not None:
        return a * 3600 + b * 60 + c
    return a * 60 + (b or 0)


def warning_s(opts: SlurmOptions) -> int:
    """How long before the time limit the sweep is asked to stop: enough to save, well inside the limit."""
    limit = walltime_s(opts.time) if opts.time else None
    warn = opts.warn_s if opts.warn_s is not None else (300 if limit is None else min(300, max(limit // 10, 10)))
    if limit is not None and warn >= limit:
        raise SpecError(f"the stop warning ({warn} s) must come before the time limit ({opts.time} = {limit} s)",
                        key="--warn")
    return warn


def sweep_command(spec_path, overrides, out) -> str:
    """The driver's command line inside the job: connect to the allocation's Ray, no progress bar in a log."""
    args = ["python", "-u", "-m", "sweeper.cli", "run", str(Path(spec_path).resolve()), *overrides,
            "--out", str(Path(out).resolve()), "--address", "auto", "--no-progress"]
    return shlex.join(args)


def render_script(store: SweepStore, name: str, command: str, opts: SlurmOptions) -> str:
    """The sbatch script's text (templates/sweep.sbatch)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("sweeper.execution", "templates"), undefined=StrictUndefined,
                      keep_trailing_newline=True)
    fields = {k: v for k, v in dataclasses.asdict(opts).items() if k != "warn_s"}
    return env.get_template("sweep.sbatch").render(
        **fields, name=name, command=command, warn_s=warning_s(opts), stopped_rc=STOPPED_RC,
        written=time.strftime("%Y-%m-%d %H:%M %Z"), script=shlex.quote(str(store.paths.sbatch.resolve())),
        study_dir=shlex.quote(str(store.root.resolve())), slurm_dir=store.paths.slurm_dir.resolve(),
        sweeps_dir=shlex.quote(str(store.root.parent.resolve())), workdir=shlex.quote(str(Path.cwd())),
        env_bin=Path(sys.executable).parent)


def submit(store: SweepStore) -> str:
    """sbatch the study's script; records and returns the job id."""
    try:
        out = subprocess.run(["sbatch", "--parsable", str(store.paths.sbatch)], capture_output=True, text=True,
                             timeout=60)
    except FileNotFoundError:
        raise SpecError("sbatch is not on PATH: submit from a SLURM login node, or run the script there with "
                        f"sbatch {store.paths.sbatch}", key="--submit") from None
    if out.returncode != 0:
        raise SpecError(f"sbatch refused the job: {out.stderr.strip() or out.stdout.strip()}",
                        where=str(store.paths.sbatch), key="--submit")
    job_id = out.stdout.strip().split(";")[0]
    add_job(store, job_id, "submitted")
    return job_id


def jobs(store: SweepStore) -> list:
    """The SLURM jobs of this sweep ({job_id, when}: "submitted <time>" or "started <time>"), oldest first."""
    return store.read_json(store.paths.slurm_jobs, default=[])


def add_job(store: SweepStore, job_id: str, event: str) -> None:
    """List a job, stamped now: `event` is "submitted" (by `sweep slurm --submit`) or "started" (seen running)."""
    when = f"{event} {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    store.write_json(store.paths.slurm_jobs, [*jobs(store), {"job_id": job_id, "when": when}])


def note_job(store: SweepStore) -> None:
    """Inside a SLURM job (however it was submitted), list the job for `sweep status`."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if job_id and job_id not in {j["job_id"] for j in jobs(store)}:
        add_job(store, job_id, "started")


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Each job's state line from squeue (jobs SLURM still holds), else sacct, else 'unknown to SLURM now'."""
    states = _query(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%M|%l|%R"], job_ids,
                    lambda f: f"{f[1]}, ran {f[2]} of {f[3]}" + (f" ({f[4]})" if f[4] not in ("", "None") else ""))
    missing = [j for j in job_ids if j not in states]
    if missing:
        states.update(_query(["sacct", "-n", "-P", "-X", "-j", ",".join(missing), "-o",
                              "JobID,State,Elapsed,ExitCode"], missing,
                             lambda f: f"{f[1]}, ran {f[2]}, exit code {f[3]}"))
    return {j: states.get(j, "unknown to SLURM now (finished long ago, or accounting is off)") for j in job_ids}


def _query(cmd: list[str], job_ids: list[str], describe) -> dict[str, str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return {}
    rows = [line.split("|") for line in out.stdout.splitlines() if line.strip()]
    return {f[0]: describe(f) for f in rows if f[0] in job_ids} if out.returncode == 0 else {}


def write_job(spec_path, overrides, out, opts: SlurmOptions, max_runs=None) -> SweepStore:
    """Plan the sweep, write spec/plan/code into its sweep directory and the sbatch script beside them."""
    from sweeper.spec.plan import expand
    from sweeper.spec.resolved import load_spec
    from sweeper.store.prepare import prepare, sweep_store

    spec = load_spec(spec_path, overrides)
    if spec.path is None or spec.study.ref is None:
        raise SpecError("`sweep slurm` needs a spec file whose study is an importable module", key="study")
    plan = expand(spec, max_runs)
    store = sweep_store(spec, out)
    store.lock.check_free()
    prepare(store, spec, plan)
    command = sweep_command(spec_path, [*overrides, *([f"--max-runs={max_runs}"] if max_runs else [])], out)
    store.write_sbatch(render_script(store, spec.name, command, opts))
    return store
