import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    """SLURM jobs start and stop a Ray of their own on this machine (only their own: RAY_TMPDIR); their tests
    check that no Ray is left after a job, so they run before any test starts one."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (started on first use, stopped at the end)."""
    import ray

    # a local Ray of its own: Ray's default token mode would write a token into this machine's ~/.ray (auth is tested
    # with real clusters in tests/sweeper/execution/test_real_cluster.py and cluster_scenarios.py)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def linear_spec(tmp_path):
    """A dict spec of the linear study whose simulate/fit calls are counted in files under tmp_path."""
    calls_sim, calls_fit = tmp_path / "simulate.calls", tmp_path / "fit.calls"

    def count():
        lines = lambda p: p.read_text().splitlines() if p.exists() else []  # noqa: E731
        return len(lines(calls_sim)), len(lines(calls_fit))

    spec = {"study": "tests.fixtures.linear", "name": "linear", "seed": 3,
            "data": {"n": 100, "a": 2.0, "b": -1.0, "noise": 0.1, "calls": str(calls_sim)},
            "fit": {"bootstrap": True, "calls": str(calls_fit)},
            "sweep": {"data.a": [1.0, 2.0]}, "repeats": 3}
    return spec, count
