"""The actor executor: a warm pool reused across runs, crashes retried."""

import pytest

import sweeper


@pytest.fixture
def setup_log(tmp_path, monkeypatch):
    path = tmp_path / "setup.log"
    monkeypatch.setenv("SWEEPER_TEST_SETUP_LOG", str(path))  # inherited by actors started from here on
    return path


def spec(tmp_path, **fit):
    return {"study": "tests.fixtures.warm", "name": "warm", "seed": 1, "data": {"n": 10},
            "fit": {"i": 0, **fit}, "sweep": {"fit.i": list(range(8))}, "executor": "actor", "actors": 2,
            "retries": 1}


def test_pool_reuses_warm_actors(tmp_path, setup_log, ray_session):
    import ray

    ray_session.shutdown()  # the env var must reach the new workers
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"SWEEPER_TEST_SETUP_LOG": str(setup_log)}})
    t = sweeper.run(spec(tmp_path), out=tmp_path / "out", progress=False).table.to_pandas()
    assert (t.status == "ok").all() and len(t) == 8
    inits = setup_log.read_text().split()
    assert len(inits) == 2  # two actors set up once each, for eight runs
    assert set(t["metrics.pid"].astype(int).astype(str)) == set(inits)
    # a crash mid-run: Ray restarts the actor and the run is retried on the pool
    t = sweeper.run(spec(tmp_path, crash_marker=str(tmp_path / "crashed")), out=tmp_path / "out2",
                    progress=False).table.to_pandas()
    assert (t.status == "ok").all() and len(t) == 8
    crashed = t[t["fit.i"] == 1]
    assert crashed.attempt.tolist() == [2]
    assert (t[t["fit.i"] != 1].attempt == 1).all()
    # a new pool of two; the crashed actor's restart adds one more set-up if it came back before the end
    assert len(setup_log.read_text().split()) in (2 + 2, 2 + 2 + 1)


def test_pool_size_follows_resources():
    from sweeper.execution.actors import pool_size
    from sweeper.spec.models import Resources
    from sweeper.spec.resolved import load_spec

    s = load_spec({"study": "tests.fixtures.warm", "name": "w", "seed": 1, "data": {"n": 1}, "fit": {},
                   "executor": "actor", "resources": {"num_cpus": 1, "num_gpus": 0.5}})
    assert pool_size(s.how, {"CPU": 16, "GPU": 2}) == 4  # two actors share each GPU
    how = s.how.model_copy(update={"resources": Resources(num_cpus=2, num_gpus=0)})
    assert pool_size(how, {"CPU": 5}) == 2  # one CPU is left for simulate tasks
    assert pool_size(how, {"CPU": 4}) == 1
    how = s.how.model_copy(update={"resources": Resources(num_cpus=1, num_gpus=1)})
    with pytest.raises(RuntimeError, match="no actor fits"):
        pool_size(how, {"CPU": 4, "GPU": 0})
