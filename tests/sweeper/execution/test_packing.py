"""`pack: K`: compatible runs (the study's pack_key) go to the study's fit_packed, up to K at a time, each on
its own dataset; results, retries and resume stay per run, and the run ids do not change."""
import pytest

import sweeper

pytestmark = pytest.mark.usefixtures("ray_session")


def spec(tmp_path, **extra):
    return {"study": "tests.fixtures.packable", "name": "packable", "seed": 4,
            "data": {"n": 50, "a": 1.0, "b": 0.0, "noise": 0.2},
            "fit": {"calls": str(tmp_path / "fit.calls"), "solo": False, "crash_marker": ""},
            "sweep": {"data.a": [1.0, 2.0]}, "data_mode": "independent", "repeats": 4, **extra}


def sizes(tmp_path) -> list:
    path = tmp_path / "fit.calls"
    return sorted(int(x) for x in path.read_text().split()) if path.exists() else []


def test_packed_runs_equal_solo_runs_and_say_they_were_packed(tmp_path):
    solo = sweeper.run(spec(tmp_path), out=tmp_path / "solo", progress=False, report=False)
    assert sizes(tmp_path) == []  # pack: 1 (the default) never calls fit_packed
    packed = sweeper.run(spec(tmp_path, pack=3), out=tmp_path / "packed", progress=False, report=False)
    assert sizes(tmp_path) == [3, 3]  # 4 runs per slope: a pack of 3, and one alone (the plain fit)
    assert packed.dir.name == solo.dir.name  # pack is an execution setting: the same sweep id and run ids
    a, b = (r.table.sort_by("run_id").to_pylist() for r in (solo, packed))
    assert [r["run_id"] for r in a] == [r["run_id"] for r in b]
    assert all(x["metrics.a"] == y["metrics.a"] and x["metrics.seed_used"] == y["metrics.seed_used"]
               for x, y in zip(a, b))
    assert sum("(packed 3)" in r["device"] for r in b) == 6


def test_a_pack_lost_with_its_worker_is_retried_run_by_run_and_resume_keeps_what_ran(tmp_path):
    s = spec(tmp_path, pack=4, retries=1)
    s["fit"]["crash_marker"] = str(tmp_path / "crashed")
    res = sweeper.run(s, out=tmp_path / "out", progress=False, report=False)
    t = res.table.to_pylist()
    assert all(r["status"] == "ok" for r in t) and len(t) == 8
    retried = [r for r in t if r["attempt"] == 2]
    assert len(retried) == 4 and all("packed" not in r["device"] for r in retried)  # alone on their retry
    again = sweeper.run(s, out=tmp_path / "out", progress=False, report=False)
    assert again.counts()["ok"] == 8 and sizes(tmp_path).count(4) == 2  # nothing ran again


def test_runs_the_study_keeps_apart_go_alone(tmp_path):
    s = spec(tmp_path, pack=8)
    s["sweep"]["fit.solo"] = [False, True]
    sweeper.run(s, out=tmp_path / "out", progress=False, report=False)
    assert sizes(tmp_path) == [4, 4]  # the solo arm's 8 runs never reach fit_packed


def test_pack_is_checked_like_every_key(tmp_path):
    with pytest.raises(sweeper.SpecError, match="pack.*expected an integer >= 1"):
        sweeper.load_spec(spec(tmp_path, pack=0))
