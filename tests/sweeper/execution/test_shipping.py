"""How the study reaches the workers (sweeper.execution.shipping), and runs that never return (timeout_s)."""
import importlib.util
import sys
import time

import pytest

import sweeper
from sweeper.errors import SpecError
from sweeper.execution import shipping
from sweeper.execution.queues import Deadlines

AR1 = '''import numpy as np


def simulate(data, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(data["n"])
    x = np.zeros(data["n"])
    for t in range(1, data["n"]):
        x[t] = data["phi"] * x[t - 1] + e[t]
    return {"x": x}


def fit(dataset, params, seed):
    x = dataset["x"]
    return {"metrics": {"phi_hat": float(x[1:] @ x[:-1] / (x[:-1] @ x[:-1]))}}
'''


def load_by_path(path, name, register):
    """A module loaded from its file under another name, as notebooks and scripts do."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("register", [True, False], ids=["in-sys.modules", "not-in-sys.modules"])
def test_a_study_loaded_by_file_path_runs_every_run(tmp_path, ray_session, register):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "study.py").write_text(AR1)
    name = f"ar1_{'reg' if register else 'unreg'}"
    mod = load_by_path(folder / "study.py", name, register)
    try:
        study = sweeper.Study("ar1", mod.simulate, mod.fit)
        result = sweeper.run({"study": study, "seed": 1, "data": {"n": 200, "phi": 0.5},
                              "sweep": {"data.phi": [0.2, 0.8]}, "repeats": 2, "data_mode": "independent"},
                             out=tmp_path / "out", progress=False, report=False)
    finally:
        sys.modules.pop(name, None)
    assert result.counts() == {"ok": 4, "failed": 0, "pending": 0}, result.errors()
    phis = {row["data.phi"]: row["phi_hat_mean"] for row in result.configs("phi_hat").to_pylist()}
    assert phis[0.8] > phis[0.2]


def test_a_module_loaded_under_another_name_ships_as_that_name(tmp_path):
    (tmp_path / "study.py").write_text(AR1)
    mod = load_by_path(tmp_path / "study.py", "ar1_renamed", register=True)
    try:
        study = sweeper.study.resolve(mod)
        [path] = shipping.study_paths(study)
    finally:
        sys.modules.pop("ar1_renamed", None)
    assert path.name == "ar1_renamed.py" and path.read_text() == AR1


def test_a_package_study_ships_its_top_package_and_what_it_imports():
    study = sweeper.study.resolve("studies.recovery.parameter_recovery")
    names = sorted(p.name for p in shipping.study_paths(study))
    assert "studies" in names and "sweeper" not in names


def test_code_too_big_to_ship_fails_before_ray_naming_the_largest_file(tmp_path, monkeypatch):
    pkg = tmp_path / "bigstudy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(AR1)
    (pkg / "weights.bin").write_bytes(b"\0" * 300_000)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"\0" * 10_000_000)  # excluded: not counted
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = sweeper.load_spec({"study": "bigstudy", "seed": 1, "data": {"n": 10, "phi": 0.1}})
        paths = shipping.study_paths(spec.study)
    finally:
        sys.modules.pop("bigstudy", None)
    shipping.check_size(spec, paths, limit=400_000)
    with pytest.raises(SpecError, match=r"weights\.bin \(0\.3 MiB\).*move data files out"):
        shipping.check_size(spec, paths, limit=200_000)


def test_deadlines_start_when_the_data_is_known_and_expire_once(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    d = Deadlines(10.0)
    d.start("a", 1, set())
    d.start("b", 2, {"k1"})  # two runs in one task: 20 s, from when k1 is known
    now[0] = 115.0
    assert d.overdue() == ["a"] and d.overdue() == []
    d.data_known("k1")
    now[0] = 134.0
    assert d.overdue() == []
    now[0] = 135.0
    assert d.overdue() == ["b"]
    assert d.finished("a") == 10.0 and d.finished("b") == 20.0 and d.finished("c") is None
    assert not Deadlines(None) and Deadlines(None).overdue() == []


@pytest.mark.parametrize("executor", ["task", "actor"])
def test_a_fit_that_never_returns_times_out_and_the_sweep_goes_on(tmp_path, ray_session, executor):
    t0 = time.monotonic()
    result = sweeper.run({"study": "tests.fixtures.hang", "name": "hang", "seed": 1, "fit": {"hang": 3, "sleep": 0.2},
                          "sweep": {"fit.k": list(range(6))}, "timeout_s": 8, "executor": executor},
                         out=tmp_path / "out", progress=False, report=False)
    took = time.monotonic() - t0
    rows = {int(r["fit.k"]): r for r in result.table.to_pylist()}
    assert took < 120 and result.counts() == {"ok": 5, "failed": 1, "pending": 0}, result.errors()
    assert rows[3]["status"] == "failed" and "timed out after 8 s" in rows[3]["error"] and rows[3]["attempt"] == 1
    assert all(rows[k]["status"] == "ok" for k in (0, 1, 2, 4, 5))
    assert result.spec["timeout_s"] == 8.0


def test_timeout_s_must_be_a_positive_number():
    base = {"study": "tests.fixtures.hang", "seed": 1}
    for bad in (0, -1, "10", True):
        with pytest.raises(SpecError, match="timeout_s"):
            sweeper.load_spec({**base, "timeout_s": bad})


EDITED = '''import numpy as np


def simulate(data, seed):
    return {"x": np.zeros(3)}


def fit(dataset, params, seed):
    return {"metrics": {"version": VERSION.0}}
'''


def test_an_edited_study_runs_its_new_code_in_the_same_long_lived_ray(tmp_path, ray_session, monkeypatch):
    """Two drivers, one Ray session, the study edited in between: each sweep runs the code it hashed."""
    import shutil

    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"study": "shipping_edited", "seed": 1, "sweep": {"data.j": [0, 1, 2]}, "data": {"j": 0}}
    versions = []
    try:
        for version in (1, 2):
            (tmp_path / "shipping_edited.py").write_text(EDITED.replace("VERSION", str(version)))
            shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
            sys.modules.pop("shipping_edited", None)  # a new driver process imports the file afresh
            result = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False)
            versions.append((result.dir, result.table.column("metrics.version").to_pylist()))
    finally:
        sys.modules.pop("shipping_edited", None)
    (dir1, v1), (dir2, v2) = versions
    assert v1 == [1.0] * 3 and v2 == [2.0] * 3 and dir1 != dir2
