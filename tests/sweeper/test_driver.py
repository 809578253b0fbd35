"""Sweeps through Ray: shared/independent/crossed data, failures, resume, retries, the store and the lock."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import sweeper
from sweeper.execution import crashes
from sweeper.store.sweep_store import SweepStore
from sweeper import LockError
from tests import REPO

pytestmark = pytest.mark.usefixtures("ray_session")


def test_shared_mode_simulates_once_per_data_point(tmp_path, linear_spec):
    spec, count = linear_spec
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    assert count() == (2, 6)
    t = res.table.to_pandas()
    assert len(t) == 6 and (t.status == "ok").all()
    for a, group in t.groupby("data.a"):
        assert group.data_sha256.nunique() == 1 and group.data_key.nunique() == 1
        assert group["metrics.data_sum"].nunique() == 1  # every run read the very same arrays
        assert group["metrics.a"].nunique() == 3  # bootstrap fits differ by fit seed
        assert abs(group["metrics.a"].mean() - a) < 0.1  # the slope's sd is 0.018: 0.05 failed 1 in ~100 runs
    assert t.data_sha256.nunique() == 2
    saved = sorted(p.name for p in (res.dir / "datasets").iterdir())
    assert len(saved) == 4 and all(n.endswith((".npz", ".json")) for n in saved)
    meta = json.loads((res.dir / "datasets" / saved[0].replace(".npz", ".json")).read_text())
    assert meta["sha256"] in set(t.data_sha256)


def test_independent_mode_new_dataset_per_repeat(tmp_path, linear_spec):
    spec, count = linear_spec
    spec.update(data_mode="independent")
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    assert count() == (6, 6)
    t = res.table.to_pandas()
    assert t.data_sha256.nunique() == 6 and t["metrics.data_sum"].nunique() == 6


def test_crossed_mode_d_datasets_times_f_fits(tmp_path, linear_spec):
    spec, count = linear_spec
    spec.update(data_mode="crossed", repeats={"data": 2, "fit": 3}, sweep={"data.a": [1.5]})
    t = sweeper.run(spec, out=tmp_path / "out", progress=False).table.to_pandas()
    assert count() == (2, 6) and len(t) == 6
    assert t.groupby("repeat_data").data_sha256.nunique().tolist() == [1, 1]
    assert t.data_sha256.nunique() == 2


def test_failed_fit_is_a_row_and_the_sweep_goes_on(tmp_path, linear_spec):
    spec, count = linear_spec
    spec["sweep"] = {"data.a": [1.0, 2.0], "fit.fail": [False, True]}
    spec["fit"]["fail"] = False
    spec["repeats"] = 1
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    t = res.table.to_pandas()
    assert sorted(t.status) == ["failed", "failed", "ok", "ok"]
    failed = t[t.status == "failed"]
    assert failed["fit.fail"].all() and failed.error.str.contains("this fit was asked to fail").all()
    assert failed.error.str.contains("Traceback").all()
    assert res.counts() == {"ok": 2, "failed": 2, "pending": 0}
    # a re-run retries only the failed runs
    before = count()
    sweeper.run(spec, out=tmp_path / "out", progress=False)
    assert count() == (before[0], before[1] + 2)


def test_resume_runs_only_what_is_missing(tmp_path, linear_spec, caplog):
    spec, count = linear_spec
    out = tmp_path / "out"
    res = sweeper.run(spec, out=out, progress=False)
    assert count() == (2, 6)
    # forget two finished runs of one data point and break the other dataset's file
    t = res.table.to_pandas()
    lost = t[t["data.a"] == 1.0].run_id[:2].tolist()
    forget(res.dir, lost)
    res2 = sweeper.run(spec, out=out, progress=False)
    assert count() == (2, 8)  # the saved dataset was reused: no simulate
    assert sorted(res2.table.column("run_id").to_pylist()) == sorted(t.run_id)
    assert res2.table.to_pandas().set_index("run_id").loc[lost, "data_sha256"].nunique() == 1
    # a truncated dataset is detected by its hash and simulated again, with the same content
    key = t[t["data.a"] == 2.0].data_key.iloc[0]
    npz = res.dir / "datasets" / f"{key}.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    forget(res.dir, [t[t["data.a"] == 2.0].run_id.iloc[0]])
    with caplog.at_level("WARNING", logger="sweeper"):
        res3 = sweeper.run(spec, out=out, progress=False)
    assert f"dataset {key} cannot be read" in caplog.text and "simulated again" in caplog.text
    assert count() == (3, 9)
    assert res3.table.to_pandas().query("`data.a` == 2.0").data_sha256.nunique() == 1
    assert sweeper.run(spec, out=out, progress=False).counts()["ok"] == 6 and count() == (3, 9)


def forget(root, run_ids):
    """Rewrite the run records without `run_ids`: the sweep forgets they ran."""
    records = SweepStore(root).records
    kept = [r for rid, r in records.all().items() if rid not in run_ids]
    for shard in records.shards():
        shard.unlink()
    records.append(kept)


def test_a_torn_records_shard_is_detected_and_only_its_runs_run_again(tmp_path, linear_spec, caplog):
    spec, count = linear_spec
    out = tmp_path / "out"
    res = sweeper.run(spec, out=out, progress=False)
    records = SweepStore(res.dir).records
    first = list(records.all().values())
    for shard in records.shards():
        shard.unlink()
    records.append(first[:4])
    torn = records.append(first[4:])
    torn.write_bytes(torn.read_bytes()[:-20])  # a shard cut short (a copy or a disk that failed mid-write)
    with caplog.at_level("WARNING", logger="sweeper"):
        assert sweeper.load(res.dir).counts() == {"ok": 6, "failed": 0, "pending": 0}  # results.parquet
        assert SweepStore(res.dir).completed(res.table.column("run_id").to_pylist()) == \
            {r["run_id"] for r in first[:4]}
    assert "are torn" in caplog.text and torn.name in caplog.text
    before = count()
    again = sweeper.run(spec, out=out, progress=False)
    assert count() == (before[0], before[1] + 2)  # the torn shard's two runs, and only they, ran again
    assert again.counts() == {"ok": 6, "failed": 0, "pending": 0}
    assert torn.with_name(torn.name + ".torn").is_file() and not torn.exists()
    assert again.table.column("run_id").to_pylist() == res.table.column("run_id").to_pylist()


def test_a_directory_with_the_old_per_run_result_files_resumes_without_running_again(tmp_path, linear_spec):
    spec, count = linear_spec
    out = tmp_path / "out"
    res = sweeper.run(spec, out=out, progress=False)
    sd = SweepStore(res.dir)
    for rid, record in sd.records.all().items():  # the layout before run records: runs/<id>/result.json
        (sd.paths.runs / rid).mkdir(parents=True, exist_ok=True)
        (sd.paths.runs / rid / "result.json").write_text(json.dumps(record))
    for shard in sd.records.shards():
        shard.unlink()
    (res.dir / "results.parquet").unlink()
    assert sweeper.load(res.dir).counts()["ok"] == 6  # read from the old files
    before = count()
    again = sweeper.run(spec, out=out, progress=False)
    assert count() == before and again.counts()["ok"] == 6
    assert len(sd.records.all()) == 6  # adopted as the first shard


def test_store_layout_and_results_open_in_pandas(tmp_path, linear_spec):
    spec, _ = linear_spec
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    assert res.dir.parent.parent == tmp_path / "out" and res.dir.parent.name == "linear"
    for f in ("spec.yaml", "plan.parquet", "results.parquet"):
        assert (res.dir / f).is_file()
    rid = res.table.column("run_id")[0].as_py()
    run_dir = res.dir / "runs" / rid
    assert {p.name for p in run_dir.iterdir()} == {"arrays.npz", "history.parquet"}  # no per-run result files
    assert pq.read_table(run_dir / "history.parquet").column("loss").to_pylist()[:2] == [1.0, 0.5]
    with np.load(run_dir / "arrays.npz", allow_pickle=False) as f:
        assert f["residuals"].shape == (100,)
    df = pd.read_parquet(res.dir / "results.parquet")
    expected = {"run_id", "data_key", "status", "error", "duration_s", "attempt", "node", "repeat_data",
                "repeat_fit", "seed_data", "seed_fit", "data.a", "data.n", "fit.bootstrap", "metrics.a", "metrics.b"}
    assert expected <= set(df.columns) and len(df) == 6
    assert (df.attempt == 1).all() and df.node.notna().all() and (df.duration_s >= 0).all()
    assert not list(res.dir.rglob("*.pkl")) and not list(res.dir.rglob("*.tmp"))
    assert list((res.dir / "figures").glob("*.png"))
    # a corrupted results.parquet is rebuilt from the runs
    (res.dir / "results.parquet").write_bytes(b"garbage")
    assert sweeper.load(res.dir).table.num_rows == 6


def test_second_sweep_into_a_locked_directory_refuses(tmp_path, linear_spec):
    spec, count = linear_spec
    from sweeper.store.prepare import sweep_store

    sd = sweep_store(sweeper.load_spec(spec), tmp_path / "out")
    sd.lock.acquire()  # held by this (live) process, as a running sweep would hold it
    try:
        with pytest.raises(LockError, match="another sweep"):
            sweeper.run(spec, out=tmp_path / "out", progress=False)
        assert count() == (0, 0)
    finally:
        sd.lock.release()
    # a lock left by a dead process is taken over
    sd.root.mkdir(parents=True, exist_ok=True)
    sd.paths.lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    assert sweeper.run(spec, out=tmp_path / "out", progress=False).counts()["ok"] == 6


def _die_once_fit(dataset, params, seed):
    marker = params["marker"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker process dies mid-run, as on a lost node
    return {"metrics": {"n": float(len(dataset["x"]))}}


def test_worker_death_is_retried(tmp_path):
    study = types.SimpleNamespace(
        simulate=lambda data, seed: {"x": np.random.default_rng(seed).random(data["n"])},
        fit=_die_once_fit, __name__="die_once")
    spec = {"study": study, "name": "die", "seed": 1, "data": {"n": 5}, "fit": {"marker": str(tmp_path / "m")},
            "retries": 1}
    t = sweeper.run(spec, out=tmp_path / "out", progress=False).table.to_pandas()
    assert t.status.tolist() == ["ok"] and t.attempt.tolist() == [2] and t["metrics.n"].tolist() == [5.0]


def _always_die_fit(dataset, params, seed):
    print("loading the model: 1.2 GB")
    print(f"the last words of seed {seed}", flush=True)
    os._exit(1)


def test_a_crashed_worker_names_its_run_and_keeps_its_last_output(tmp_path):
    study = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(data["n"])}, fit=_always_die_fit,
                                  __name__="always_dies")
    spec = {"study": study, "name": "dies", "seed": 1, "data": {"n": 5}, "retries": 1}
    with pytest.raises(sweeper.SweepFailed, match="all 1 runs failed with WorkerCrashedError"):
        sweeper.run(spec, out=tmp_path / "out", progress=False, report=False)
    res = sweeper.load(next((tmp_path / "out" / "dies").iterdir()))
    (row,) = res.table.to_pylist()
    assert row["status"] == "failed" and row["attempt"] == 2
    assert row["error"].startswith("WorkerCrashedError: the worker died while fitting the run")
    assert f"run {row['run_id']}, the last line it printed: the last words of seed {row['seed_fit']}" in row["error"]
    log = res.run(row["run_id"]).log
    assert "loading the model: 1.2 GB" in log and "worker-" in log


def _segfault_fit(dataset, params, seed):
    import ctypes

    print("about to read address 0", flush=True)
    ctypes.string_at(0)


def test_a_segfaulting_fit_is_summed_up_first_in_one_line_and_its_stack_kept_in_run_log(tmp_path, capfd):
    """Ray prints a paragraph per dead worker; the sweep says once what killed them and where in the study,
    first, and keeps the fault handler's stack in each run's run.log."""
    study = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(2)}, fit=_segfault_fit,
                                  __name__="segfaults")
    spec = {"study": study, "name": "segfaults", "seed": 1, "data": {}, "fit": {"k": 0}, "retries": 0,
            "sweep": {"fit.k": [1, 2]}}
    line = _segfault_fit.__code__.co_firstlineno + 4  # its ctypes.string_at(0)
    with pytest.raises(sweeper.SweepFailed, match=rf"^all 2 runs failed with WorkerCrashedError: the worker died "
                                                  rf"while fitting the run: Fatal Python error: Segmentation fault "
                                                  rf"in _segfault_fit \(.*test_driver.py:{line}\); its stack is in "
                                                  rf"the run's run.log \(the results are saved in"):
        sweeper.run(spec, out=tmp_path / "out", progress=False, report=False)
    time.sleep(1.0)  # Ray's error messages come asynchronously: give a late one time to print
    printed = capfd.readouterr()
    assert "A worker died" not in printed.out + printed.err
    res = sweeper.load(next((tmp_path / "out" / "segfaults").iterdir()))
    for row in res.runs(status="failed"):
        assert "Stack (most recent call first)" in res.run(row.run_id).log


def test_a_crash_s_cause_is_the_fatal_error_and_the_study_s_frame():
    said = f"""about to read
Fatal Python error: Segmentation fault

Stack (most recent call first):
  File "/usr/lib/python3.11/ctypes/__init__.py", line 519 in string_at
  File "/home/me/mystudy.py", line 9 in fit
  File "{Path(crashes.__file__).parent / 'worker.py'}", line 149 in _fit
  File "/site/ray/_private/worker.py", line 1069 in main_loop
"""
    assert crashes.cause(said) == "Fatal Python error: Segmentation fault in fit (/home/me/mystudy.py:9)"
    assert crashes.cause(said.replace(str(Path(crashes.__file__).parent), "/elsewhere")) == \
        "Fatal Python error: Segmentation fault"  # no engine frame: which one is the study's is unknown
    assert crashes.cause("the last words\n") is None and crashes.cause(None) is None


def _kinds(d, p, s):
    kinds = {"inf": {"metrics": {"m": float("inf")}}, "list": [1, 2], "listmetric": {"metrics": {"m": [1.0, 2.0]}},
             "text": {"metrics": {"m": "0.5"}},
             "nan": {"metrics": {"m": float("nan") if s % 2 else 1.0, "k": 2.0}}}
    return kinds[p["kind"]]


def test_invalid_fit_results_fail_with_the_reason_and_nan_is_counted(tmp_path):
    study = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(3)}, fit=_kinds, __name__="bad_results")
    spec = {"study": study, "name": "bad", "seed": 1, "data": {"n": 3}, "fit": {"kind": "nan"}, "repeats": 12,
            "sweep": {"fit.kind": ["nan", "inf", "list", "listmetric", "text"]}}
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    t = res.table.to_pandas()
    failed = t[t["fit.kind"] != "nan"].groupby("fit.kind").error.first()
    assert (t[t["fit.kind"] != "nan"].status == "failed").all()
    assert "'m' is infinite" in failed["inf"] and "must return a dict" in failed["list"]
    assert "'m' is a list, not a number" in failed["listmetric"] and "'m' is a str" in failed["text"]
    assert len(res.errors()) == 4  # one line per kind of error, not per run
    nan_runs = t[t["fit.kind"] == "nan"]
    assert (nan_runs.status == "ok").all() and nan_runs["metrics.m"].isna().any()
    row = next(r for r in res.configs(["metrics.m", "metrics.k"]).to_pylist() if r["fit.kind"] == "nan")
    n_nan = int(nan_runs["metrics.m"].isna().sum())
    assert row["m_nan"] == n_nan and row["m_mean"] == 1.0 and row["n"] == 12 and row["k_mean"] == 2.0
    assert row["m_sd"] == 0.0  # over the 12 - n_nan runs with a value
    assert f"({n_nan} NaN left out)" in (res.dir / "report.html").read_text()


def task_sizes(monkeypatch, method: str) -> list:
    """The number of runs in each task the TaskExecutor's `method` submits, as the sweep goes."""
    from sweeper.execution.executors import TaskExecutor

    sizes, submit = [], getattr(TaskExecutor, method)
    monkeypatch.setattr(TaskExecutor, method, lambda self, runs, *a: sizes.append(len(runs)) or submit(self, runs, *a))
    return sizes


def test_cheap_runs_go_several_to_a_task_and_a_failing_one_fails_alone(tmp_path, linear_spec, monkeypatch,
                                                                        ray_session):
    sizes = task_sizes(monkeypatch, "submit")
    spec, count = linear_spec
    spec.update(sweep={"fit.k": list(range(300))}, repeats=1, save_datasets=False)
    spec["fit"].update(k=0, fail=False, bootstrap=False, calls="")
    spec["zip"] = {}
    spec["sweep"]["fit.fail"] = [False, True]
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    t = res.table.to_pandas()
    assert len(t) == 600 and t.run_id.is_unique
    assert (t[t["fit.fail"]].status == "failed").all() and (t[~t["fit.fail"]].status == "ok").all()
    assert t[t.status == "failed"].error.str.contains("this fit was asked to fail").all()
    assert sum(sizes) == 600 and sizes[0] == 1 and max(sizes) > 10  # one at a time, then batches
    assert len(sizes) < 200


def test_single_user_datasets_are_simulated_and_fitted_in_one_task(tmp_path, linear_spec, monkeypatch,
                                                                     ray_session):
    from sweeper.execution.queues import Batcher

    sizes = task_sizes(monkeypatch, "submit_fused")
    spec, count = linear_spec
    spec.update(data_mode="independent", repeats=80, sweep={}, save_datasets=True)
    spec["fit"].update(bootstrap=False, calls="")
    spec["data"].update(calls="")
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    t = res.table.to_pandas()
    assert len(t) == 80 and (t.status == "ok").all() and t.data_sha256.notna().all()
    assert t.data_sha256.nunique() == 80 and len(list(res.paths.datasets.glob("*.npz"))) == 80  # each saved
    for key in t.data_key[:5]:
        res.dataset(key)  # the saved data matches the hash its run recorded
    # every run fused (one per task until their cost is known, then several cheap ones to a task)
    assert sizes[:Batcher.WARMUP] == [1] * Batcher.WARMUP and max(sizes) > 1 and sum(sizes) == 80


def test_a_fit_that_comes_back_with_its_dataset_s_metadata_still_records_the_data_hash(tmp_path, linear_spec,
                                                                                       monkeypatch, ray_session):
    """One ray.wait may return a run's result before its dataset's metadata (CI saw one run in 80 without its
    data_sha256): here every wait returns results first, and every run still records the hash."""
    import ray

    from sweeper.execution.scheduler import Scheduler

    def results_first(waiting):  # everything in flight, given time, results (after the metadata refs) first
        ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0.5)
        return list(reversed(ready or ray.wait(waiting, num_returns=1)[0]))

    monkeypatch.setattr(Scheduler, "_ready", staticmethod(results_first))
    spec, _ = linear_spec
    spec.update(data_mode="independent", repeats=4, sweep={"fit.bootstrap": [True, False]})  # 2 runs a dataset
    t = sweeper.run(spec, out=tmp_path / "out", progress=False).table.to_pandas()
    assert len(t) == 8 and (t.status == "ok").all()
    assert t.data_sha256.notna().all() and t.groupby("data_key").data_sha256.nunique().eq(1).all()


def test_a_failing_simulate_fails_only_its_run_in_a_fused_task():
    from types import SimpleNamespace

    from sweeper.execution.worker import StudyRef, simulate_and_fit

    def simulate(data, seed):
        if data["bad"]:
            raise ValueError("no such dataset")
        return {"x": [1.0, 2.0]}

    study = SimpleNamespace(simulate=simulate, fit=lambda d, p, s: {"metrics": {"v": 1.0}}, setup=None,
                            name="s", ref=None)
    out = simulate_and_fit(StudyRef(obj=study), [("r1", {"bad": False}, 1, {}, 2, 1), ("r2", {"bad": True}, 3, {}, 4, 2)],
                           keep_data=False)
    assert out[0]["result"].status == "ok" and out[0]["meta"]["seed"] == 1 and out[0]["data"] is None
    assert out[1]["meta"] is None and out[1]["result"].status == "failed"
    assert "no such dataset" in out[1]["result"].error and out[1]["result"].attempt == 2


@pytest.mark.slow  # starts a cluster and a test session of its own
def test_a_live_foreign_ray_neither_captures_a_sweep_nor_is_harmed_by_it(tmp_path):
    """Another Ray running on the machine (`ray start --head` from elsewhere): `sweep run` without --address
    starts its own, every run succeeds, and the other Ray is still alive; so does the README's first example,
    and so do the tests that start a Ray of their own (the session's, test_actors' own)."""
    from tests.sweeper.execution.foreign_ray import foreign_ray
    from tests.test_readme import python_blocks

    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONPATH": str(REPO)}
    with foreign_ray() as alive:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                f"--basetemp={tmp_path / 't'}",
                                "tests/sweeper/execution/test_actors.py",
                                "tests/sweeper/test_cli_bad_input.py::"
                                "test_resources_beyond_an_existing_cluster_warn_instead",
                                "tests/test_readme.py::test_readme_python_example_runs"],
                               cwd=REPO, env={**env, "RAY_TMPDIR": alive.ray_tmpdir}, capture_output=True,
                               text=True, timeout=600)  # where a plain ray.init() would find the other Ray
        assert tests.returncode == 0, tests.stdout[-3000:]
        out = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", str(REPO / "tests/fixtures/linear.yaml"),
                              "--out", str(tmp_path / "out"), "--no-progress"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "6 ok, 0 failed" in out.stdout + out.stderr and alive()
        example = subprocess.run([sys.executable, "-c", python_blocks()[0]], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert example.returncode == 0, example.stderr[-3000:]
        assert alive()


def test_which_ray_a_sweep_uses(monkeypatch):
    """Without --address (or address=) a sweep starts a Ray of its own; RAY_ADDRESS and --address join one."""
    from sweeper.driver import ray_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(None) == "local" and ray_address("auto") == "auto"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address(None) == "10.0.0.1:6379" and ray_address("auto") == "auto"


def test_a_recorded_dead_cluster_does_not_capture_a_sweep(tmp_path):
    """A `ray start --head` cluster stopped without `ray stop` leaves /tmp/ray/ray_current_cluster behind; a
    plain `ray.init()` would try to join it (and give up after 60 s). A sweep starts its own Ray instead."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rd", dir="/tmp"))  # Ray's temp dir for this driver (RAY_TMPDIR):
    record = ray_tmp / "ray" / "ray_current_cluster"           # short, for Ray's socket paths; never /tmp/ray
    record.parent.mkdir(parents=True)
    record.write_text("127.0.0.1:9\n")  # nothing listens there
    try:
        spec = tmp_path / "s.yaml"
        spec.write_text("study: tests.fixtures.linear\nseed: 1\nname: dead\ndata: {n: 20, a: 1.0, b: 0.0, noise: 0.1}\n"
                        "fit: {}\nsweep: {data.a: [1.0, 2.0]}\n")
        env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(ray_tmp)}
        out = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", str(spec), "--out", str(tmp_path / "out"),
                              "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 ok, 0 failed, 0 pending" in out.stderr


def test_a_gpu_request_on_a_cpu_machine_fails_before_ray_starts(tmp_path, monkeypatch, capsys):
    """Checked against what this machine has, before Ray starts: one line naming the key, exit 2, nothing
    written, and Ray never started."""
    import ray

    from sweeper.cli import main
    from sweeper.driver import machine_resources

    if machine_resources()["GPU"]:
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    spec = tmp_path / "s.yaml"
    spec.write_text("study: tests.fixtures.linear\nseed: 1\nname: gpu\ndata: {n: 20, a: 1.0, b: 0.0, noise: 0.1}\n"
                    "fit: {}\nresources: {num_cpus: 1, num_gpus: 1}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "resources.num_gpus" in err and "asks for 1 GPU" in err and f"{spec}:6" in err
    assert not (tmp_path / "out").exists()


def _exiting_fit(dataset, params, seed):
    import sys as system

    system.exit(f"cannot fit with k={params['k']}")


def test_a_study_that_exits_fails_its_runs_with_its_message(tmp_path):
    """sys.exit in fit (or simulate) is that run's failure with the study's message, not a worker crash that
    is retried; a list metric fails with one error line, whatever the values."""
    study = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(3)}, fit=_exiting_fit,
                                  __name__="exits")
    spec = {"study": study, "name": "exits", "seed": 1, "data": {"n": 3}, "fit": {"k": 0}, "retries": 1,
            "sweep": {"fit.k": [1, 2]}}
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    t = res.table.to_pandas()
    assert (t.status == "failed").all() and (t.attempt == 1).all()
    assert all("fit called sys.exit('cannot fit with k=" in e for e in t.error)
    lists = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(3)},
                                  fit=lambda d, p, s: {"metrics": {"m": [p["k"], 1]}}, __name__="lists")
    res = sweeper.run({**spec, "study": lists, "name": "lists"}, out=tmp_path / "out", progress=False)
    assert [e["error"] for e in res.errors()] == ["metric 'm' is a list, not a number"]
    assert res.errors()[0]["n"] == 2


def _crashing_fit(dataset, params, seed):
    os._exit(1)  # the worker dies on every attempt


def test_a_sweep_whose_every_run_is_lost_raises_and_keeps_the_results(tmp_path):
    """All runs failing with one of Ray's infrastructure errors means the sweep did not work: sweeper.run
    raises, naming the error and its likely cause; the results (every run failed) are kept."""
    study = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(2)}, fit=_crashing_fit,
                                  __name__="crashes")
    spec = {"study": study, "name": "crashes", "seed": 1, "data": {}, "fit": {"k": 0}, "retries": 0,
            "sweep": {"fit.k": [1, 2]}}
    with pytest.raises(sweeper.SweepFailed, match=r"all 2 runs failed with WorkerCrashedError: the worker "
                                                  r"processes died .*the results are saved in"):
        sweeper.run(spec, out=tmp_path / "out", progress=False)
    (sweep_dir,) = (tmp_path / "out" / "crashes").iterdir()
    assert sweeper.load(sweep_dir).counts() == {"ok": 0, "failed": 2, "pending": 0}


def test_a_refused_second_driver_does_not_even_import_ray(tmp_path):
    """The lock is checked right after the spec loads: a second `sweep run` of a running sweep exits 3 before
    Ray is imported (let alone started)."""
    from sweeper.store.prepare import sweep_store

    spec = tmp_path / "s.yaml"
    spec.write_text("study: tests.fixtures.linear\nseed: 1\nname: lk\ndata: {n: 20, a: 1.0, b: 0.0, noise: 0.1}\n"
                    "fit: {}\nsweep: {data.a: [1.0, 2.0]}\n")
    store = sweep_store(sweeper.load_spec(str(spec)), tmp_path / "out")
    store.lock.acquire()
    try:
        code = (f"import sys; from sweeper.cli import main; rc = main(['run', {str(spec)!r}, '--out', "
                f"{str(tmp_path / 'out')!r}]); print(rc, 'ray' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        store.lock.release()
    assert out.stdout.split() == ["3", "False"], out.stderr[-1000:]
    assert "another sweep" in out.stderr


def test_a_dataset_is_a_dict_of_arrays_and_numbers():
    from sweeper.execution.worker import check_dataset

    assert check_dataset({"x": np.zeros(3), "n": 5, "scale": np.float64(2.0), "tag": "lines", "y": [1.0, 2.0]}) is None
    assert "got str" in check_dataset("a string")
    assert "got dict" in check_dataset({})
    assert "'meta' is a dict, not an array or number" in check_dataset({"x": np.zeros(3), "meta": {"a": 1}})
    assert "'z' is a NoneType" in check_dataset({"z": None})


def _picky_simulate(data, seed):
    if data["bad"] == 1:
        raise ValueError(f"no such dataset: bad={data['bad']}")
    if data["bad"] == 2:
        return "not a dict"
    return {"x": np.ones(3)}


@pytest.mark.usefixtures("ray_session")
def test_a_failing_simulate_is_said_in_the_study_s_words(tmp_path, capsys):
    """Runs whose shared dataset could not be simulated fail with the study's exception type and message:
    no Ray task header, no terminal colour codes in .errors(), run.log or report.html."""
    study = sweeper.Study("picky", _picky_simulate, lambda d, p, s: {"metrics": {"m": float(d["x"].sum())}})
    res = sweeper.run({"study": study, "seed": 1, "data": {"bad": 0}, "fit": {"k": 0}, "repeats": 2,
                       "sweep": {"data.bad": [0, 1, 2], "fit.k": [0, 1]}}, out=tmp_path, progress=False)
    assert res.counts() == {"ok": 4, "failed": 8, "pending": 0}
    assert sorted((e["error"], e["n"]) for e in res.errors()) == [
        ("TypeError: simulate must return a non-empty dict of arrays and scalars, got str", 4),
        ("ValueError: no such dataset: bad=1", 4)]
    failed = res.runs(sweeper.RunStatus.FAILED)
    texts = [r.error for r in failed] + [res.log_path(r.run_id).read_text() for r in failed]
    texts.append((res.dir / "report.html").read_text())
    assert not any("\x1b" in t or "ray::" in t for t in texts)
    assert all(r.error.startswith("Traceback") for r in failed)


def _big_fit(dataset, params, seed):
    return {"metrics": {"m": float(seed % 97)}, "arrays": {"noise": np.random.default_rng(seed).random(40_000)}}


@pytest.mark.usefixtures("ray_session")
def test_a_full_disk_stops_the_sweep_in_one_line_and_a_resume_makes_it_whole(tmp_path, capsys):
    """The output on a 2 MB file system, runs writing 320 kB each: the first failed write stops the sweep
    (no new runs start), `sweep run` ends with one line naming the cause, the path and what is saved (exit 1);
    with space again, the same command completes every run once."""
    import subprocess

    from sweeper.cli import main

    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(out)]).returncode:
        pytest.skip("a small file system of its own needs root (mount)")
    try:
        (tmp_path / "bigfit.py").write_text(
            "import numpy as np\nfrom tests.sweeper.test_driver import _big_fit as fit\n"
            "def simulate(data, seed):\n    return {'x': np.ones(3)}\n")
        (tmp_path / "big.yaml").write_text("study: bigfit\nseed: 3\ndata: {k: 0}\nfit: {j: 0}\nrepeats: 4\n"
                                           "save_datasets: false\nsweep: {data.k: [0, 1, 2, 3, 4, 5]}\n")
        command = ["run", str(tmp_path / "big.yaml"), "--out", str(out), "--no-progress", "--no-report"]
        assert main(command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("sweep: error: no space left on device writing ") and \
            "runs done are saved; free space and run the same command again" in err[-1], err[-1]
        saved = int(err[-1].split("(the ")[1].split(" of ")[0])
        assert 0 < saved < 24
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        assert main(command) == 0
        res = sweeper.load(next(p for p in (out / "big").iterdir() if p.is_dir()))
        assert res.counts() == {"ok": 24, "failed": 0, "pending": 0} and res.table.num_rows == 24
        assert sorted(res.table.column("run_id").to_pylist()) == sorted(res.plan.column("run_id").to_pylist())
    finally:
        subprocess.run(["umount", str(out)])


def test_memory_a_local_ray_would_not_have_is_an_error_before_ray(tmp_path, monkeypatch, capsys):
    """Ray gives a local node the memory beside its object store, well under the machine's physical memory:
    a run asking for 90% of the physical memory would wait for ever, so it is an error before Ray starts."""
    import ray

    from sweeper.cli import main
    from sweeper.driver import machine_resources

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < machine_resources()["memory"] < 0.9 * physical
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    spec = tmp_path / "s.yaml"
    spec.write_text("study: tests.fixtures.linear\nseed: 1\nname: mem\ndata: {n: 20, a: 1.0, b: 0.0, noise: 0.1}\n"
                    f"fit: {{}}\nresources: {{num_cpus: 1, memory: {int(0.9 * physical)}}}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "resources.memory" in err and "asks for" in err and f"{spec}:6" in err
