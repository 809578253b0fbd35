"""The vocabulary of a run's result (sweeper/records.py): what a fit may return, a run record's stored form and
its results columns."""
import json
import math
import sys

import pytest

from sweeper.records import FitResult, InvalidFitResult, RunOutcome, RunRecord, RunStatus


def test_a_fit_result_is_coerced_once_and_says_what_is_wrong():
    out = FitResult.coerce({"metrics": {"a": 1, "b": 2.5}, "files": {"x.txt": b"1"}, "device": 0})
    assert out.metrics == {"a": 1.0, "b": 2.5} and type(out.metrics["a"]) is float and out.device is None
    assert FitResult.coerce(out) == out  # a FitResult passes through, checked again
    for bad, words in [([], "must return a dict"), ({}, "no 'metrics'"), ({"metrics": {"a": True}}, "'a' is a bool"),
                       ({"metrics": {"a": math.inf}}, "infinite"), ({"metrics": {}, "history": [1]}, "'history'"),
                       ({"metrics": {}, "files": {"run.log": b""}}, "plain file names"),
                       ({"metrics": {}, "files": {"a/b": b""}}, "plain file names")]:
        with pytest.raises(InvalidFitResult, match=words):
            FitResult.coerce(bad)
    assert math.isnan(FitResult.coerce({"metrics": {"a": math.nan}}).metrics["a"])  # NaN: "no value"


def _run(**kw):
    from types import SimpleNamespace

    return SimpleNamespace(run_id="r1", data_key="d1", repeat_data=0, repeat_fit=2, seed_data=7, seed_fit=9,
                           session=None, data={"n": 3, "probe": {"sigma": 1.5}}, fit={"lr": 0.1}, **kw)


def test_a_record_is_made_from_the_run_and_its_outcome_and_reads_back_equal():
    outcome = RunOutcome(RunStatus.OK, attempt=2, metrics={"m": 1.5}, node="n@h", device="cpu", duration_s=0.5)
    record = RunRecord.of(_run(), outcome, data_sha256="abc")
    stored = json.loads(json.dumps(record.to_json()))
    assert stored["status"] == "ok" and stored["data"] == {"n": 3, "probe": {"sigma": 1.5}}
    assert RunRecord.from_json(stored) == record and RunRecord.from_json(stored).status is RunStatus.OK
    assert record["data.probe.sigma"] == 1.5 and record["metrics.m"] == 1.5 and record["repeat_fit"] == 2
    assert list(record.columns)[:3] == ["run_id", "data_key", "status"] and "session" not in record.columns
    with pytest.raises(KeyError, match="run r1 has no such column"):
        record["metrics.nope"]


def test_records_written_before_read_back():
    """A record as earlier versions wrote it (a run's result.json: extra keys, NaN as text) is read."""
    old = {"run_id": "r", "status": "failed", "error": "boom", "metrics": {"m": "nan", "s": "text"}, "config": {},
           "attempt": None, "data": {"x": 1}}
    record = RunRecord.from_json(old)
    assert record.status is RunStatus.FAILED and record.attempt == 1 and record.error == "boom"
    assert math.isnan(record.metrics["m"]) and record.metrics["s"] == "text" and record["data.x"] == 1


def test_the_vocabulary_is_a_leaf():
    """records.py imports neither Ray nor pyarrow: a study module can use it where neither is installed."""
    import subprocess

    code = ("import sys; import sweeper.records; "
            "print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
