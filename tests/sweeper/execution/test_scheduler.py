"""The scheduler's pieces without Ray: datasets alive and their counts, the run queue with retries, the saver."""
import threading
from types import SimpleNamespace

import pytest

from sweeper.execution.executors import Executor, TaskExecutor
from sweeper.execution.queues import Batcher, DatasetPool, RunQueue
from sweeper.execution.saver import Saver
from sweeper.records import RunRecord, RunStatus


def runs(spec: dict):
    """{data key: number of runs} as run stand-ins, in that order."""
    return [SimpleNamespace(data_key=k, run_id=f"{k}{i}") for k, n in spec.items() for i in range(n)]


def test_a_dataset_is_made_once_and_dropped_after_its_last_run():
    made = []
    pool = DatasetPool(runs({"a": 3, "b": 1}), limit=1,
                       make=lambda r: (made.append(r.data_key) or f"ref-{r.data_key}", f"meta-{r.data_key}", None))
    todo = runs({"a": 3, "b": 1})
    refs = [pool.take(r) for r in todo[:3]]
    assert refs == ["ref-a"] * 3 and made == ["a"] and "a" not in pool.refs  # the runs in flight hold it
    assert not pool.can_open("b")  # one dataset alive at most: "a" still has runs in flight
    for r in todo[:3]:
        pool.give_back(r)
    assert pool.can_open("b") and pool.take(todo[3]) == "ref-b" and made == ["a", "b"]
    assert set(pool.waiting) == {"meta-a", "meta-b"}


def test_metadata_sets_the_limit_from_the_first_size_only():
    pool = DatasetPool(runs({"a": 1, "b": 1}), limit=4, make=lambda r: (r.data_key, f"m{r.data_key}", None))
    for r in runs({"a": 1, "b": 1}):
        pool.take(r)
    assert pool.known("ma", {"nbytes": 100, "sha256": "x"}, lambda n: 1000 // n) == ("a", "a")
    assert pool.limit == 10 and pool.meta["a"]["sha256"] == "x"
    pool.known("mb", {"nbytes": 1, "sha256": "y"}, lambda n: 1000 // n)
    assert pool.limit == 10 and not pool.waiting
    failed = DatasetPool(runs({"c": 1}), limit=4, make=lambda r: ("c", "mc", None))
    failed.take(runs({"c": 1})[0])
    assert failed.known("mc", None, lambda n: 1) == ("c", "c") and failed.limit == 4 and "c" not in failed.meta


def test_a_saved_dataset_comes_with_its_metadata():
    pool = DatasetPool(runs({"a": 2}), limit=2, make=lambda r: ("put-a", None, {"sha256": "s", "nbytes": 8}))
    assert pool.take(runs({"a": 1})[0]) == "put-a" and pool.meta["a"]["sha256"] == "s" and not pool.waiting


def test_run_queue_keeps_a_datasets_runs_together_and_retries_while_attempts_last():
    todo = [SimpleNamespace(data_key=k, run_id=i) for i, k in enumerate("abab")]
    q = RunQueue(todo, retries=1)
    assert q and q.unsubmitted() == 4 and q.head() is todo[0]
    assert [r.run_id for r in q.next_batch(5)] == [0, 2] and [r.run_id for r in q.next_batch(5)] == [1, 3]
    assert q.unsubmitted() == 0 and q.head() is None and not q
    run = todo[0]
    assert q.lost(run, "ref", 1) and list(q.retry) == [(run, "ref", 2)] and q
    assert not q.lost(run, "ref", 2)  # out of attempts: a failed run
    q.retry.clear()
    assert not q
    q.pending["r"] = [(run, "ref", 1)]
    assert q


def test_a_plan_s_runs_are_made_a_chunk_at_a_time_in_dataset_order(monkeypatch):
    """The queue holds the runs near its head, not one Run per planned run: 2 datasets x 10 fits, made 3 at a
    time; every run comes out once, each dataset's runs together, datasets in order of first use."""
    import sweeper
    from sweeper.spec import plan as planmod

    spec = sweeper.load_spec({"study": "tests.fixtures.linear", "seed": 1, "data": {"n": 4, "a": 1.0, "b": 0.0, "noise": 0.1},
                              "fit": {"bootstrap": False},
                              "data_mode": "shared",
                              "repeats": 5, "sweep": {"fit.bootstrap": [False, True], "data.noise": [0.1, 0.2]}})
    plan = planmod.expand(spec)
    keys = plan.data_key.to_pylist()
    assert len(set(keys)) == 2 and keys != sorted(keys, key=keys.index)  # plan order interleaves the datasets
    made = []
    monkeypatch.setattr(RunQueue, "CHUNK", 3)
    monkeypatch.setattr(plan, "runs_at", lambda rows, real=plan.runs_at: made.append(len(rows)) or real(rows))
    q = RunQueue(plan, retries=0)
    assert q.unsubmitted() == 20 and not made  # nothing made until asked
    first = q.head()
    assert made == [3] and len(q.new) == 3
    out = [first.data_key, *(r.data_key for r in q.next_batch(2))]
    while q.head() is not None:
        out += [r.data_key for r in q.next_batch(4)]
        assert len(q.new) <= 4
    assert len(out) == 21 and max(made) <= 4  # the head is counted twice: it is also the first batch's first run
    assert out[1:] == sorted(keys, key=keys.index)


def test_a_batch_takes_runs_of_the_head_dataset_only():
    q = RunQueue([SimpleNamespace(data_key=k, run_id=i) for i, k in enumerate("aaabb")], retries=1)
    assert [r.run_id for r in q.next_batch(2)] == [0, 1]
    assert [r.run_id for r in q.next_batch(5)] == [2]  # never across datasets
    assert [r.run_id for r in q.next_batch(5)] == [3, 4] and not q.new


def test_batches_aim_at_a_tenth_of_a_second_of_work_and_stay_single_for_slow_runs():
    b = Batcher(enabled=True)
    assert b.size == 1
    for _ in range(Batcher.WARMUP):
        b.record(0.002)
    assert b.size == 50  # 0.1 s / 2 ms
    for _ in range(200):
        b.record(0.5)
    assert b.size == 1  # slow runs go one per task
    fast = Batcher(enabled=True)
    for _ in range(10):
        fast.record(1e-7)
    assert fast.size == Batcher.MAX
    off = Batcher(enabled=False)
    for _ in range(10):
        off.record(0.001)
    assert off.size == 1  # the actor executor: one run per call


def test_saver_writes_on_one_thread_appends_records_in_batches_and_raises_a_failed_write(monkeypatch):
    threads, written, shards = set(), [], []

    class Dir:
        def write_run_parts(self, record, outcome):
            threads.add(threading.get_ident())
            written.append(int(record.run_id))

        def append_records(self, records):
            threads.add(threading.get_ident())
            if records:
                shards.append([int(r.run_id) for r in records])

        def save_dataset(self, key, data, meta):
            raise OSError("disk full")

    monkeypatch.setattr(Saver, "FLUSH_ROWS", 4)
    saver = Saver(Dir())
    for i in range(5):
        saver.run(RunRecord(str(i), RunStatus.OK), None)
    saver.tick()  # the oldest has not waited FLUSH_S: nothing yet beyond the full batch
    saver.pool.submit(lambda: None).result()
    assert shards == [[0, 1, 2, 3]]
    monkeypatch.setattr(Saver, "FLUSH_S", 0.0)
    saver.tick()
    saver.pool.submit(lambda: None).result()
    assert shards == [[0, 1, 2, 3], [4]]
    saver.run(RunRecord("5", RunStatus.OK), None)
    saver.close()
    assert shards == [[0, 1, 2, 3], [4], [5]]
    assert written == list(range(6)) and len(threads) == 1 and threading.get_ident() not in threads
    failing = Saver(Dir())
    failing.dataset("k", {}, {})
    with pytest.raises(OSError, match="disk full"):
        failing.close()


def test_a_writer_behind_holds_the_scheduler_back_at_its_backlog(monkeypatch):
    """A store slower than the runs: past BACKLOG waiting writes the saver says so (the scheduler then takes no
    more runs) and, once the writes are done, frees them: the driver holds the backlog, not every result."""
    gate = threading.Event()

    class Slow:
        def write_run_parts(self, record, outcome):
            gate.wait(10)

        def append_records(self, records):
            pass

    monkeypatch.setattr(Saver, "BACKLOG", 5)
    saver = Saver(Slow())
    for i in range(4):
        saver.run(RunRecord(str(i), RunStatus.OK), None)
    assert not saver.backlogged()
    saver.run(RunRecord("4", RunStatus.OK), None)
    assert saver.backlogged() and saver.backlogged(wait_s=0.05)  # the writer is stuck: still behind
    gate.set()
    assert not saver.backlogged(wait_s=5.0) and saver.outstanding < 5
    saver.close()
    assert saver.outstanding == 0


def test_executors_share_one_explicit_interface():
    from sweeper.execution.actors import ActorExecutor

    assert issubclass(TaskExecutor, Executor) and issubclass(ActorExecutor, Executor)
    with pytest.raises(TypeError, match="abstract"):
        Executor()


def test_a_failed_write_stops_the_saver_keeps_what_comes_and_tries_once_more_at_close():
    """The first OSError (a full disk) is the saver's `failure` at once; runs that come after are kept, not
    dropped, and written by close's last try if space came back; close raises the failure all the same (the
    scheduler stopped starting runs at it)."""
    full = {"on": False}
    parts, shards = [], []

    class Dir:
        def write_run_parts(self, record, outcome):
            if full["on"]:
                raise OSError(28, "No space left on device", "/out/runs/x/arrays.npz")
            parts.append(record.run_id)

        def append_records(self, records):
            if full["on"]:
                raise OSError(28, "No space left on device", "/out/records/x.parquet")
            shards.append([r.run_id for r in records])

    saver = Saver(Dir())
    saver.run(RunRecord("0", RunStatus.OK), None)
    saver.pool.submit(lambda: None).result()
    assert saver.failure is None
    full["on"] = True
    for i in (1, 2):
        saver.run(RunRecord(str(i), RunStatus.OK), None)
    saver.pool.submit(lambda: None).result()
    assert saver.failure is not None and saver.failure.errno == 28 and len(saver.unwritten) == 2
    full["on"] = False  # space again before the sweep ends
    with pytest.raises(OSError, match="No space left"):
        saver.close()
    assert parts == ["0", "1", "2"] and sorted(sum(shards, [])) == ["0", "1", "2"]


def test_the_bookkeeping_holds_what_is_alive_not_every_dataset_ever_taken():
    """10^4 datasets taken and given back one after another: `can_open` looks at the live set only, which
    stays at one key, and the in-flight counts forget finished datasets; the saver forgets finished writes."""
    from types import SimpleNamespace

    runs = [SimpleNamespace(data_key=f"k{i}", run_id=str(i)) for i in range(10_000)]
    pool = DatasetPool(runs, 4, lambda run: (f"ref-{run.data_key}", None, {"sha256": "x"}))
    for run in runs:
        assert pool.can_open(run.data_key)
        pool.take(run)
        assert len(pool.live) == 1 and len(pool.in_flight) == 1
        pool.give_back(run)
    assert not pool.live and not pool.in_flight and not pool.refs

    class Dir:
        def write_run_parts(self, record, outcome):
            pass

        def append_records(self, records):
            pass

    saver = Saver(Dir())
    for i in range(2000):
        saver.run(RunRecord(str(i), RunStatus.OK), None)
        if i % 100 == 99:
            saver.pool.submit(lambda: None).result()
            saver.tick()
            assert saver.outstanding == 0  # a count of the writes not done, no future kept per run
    saver.close()


def test_a_dataset_done_with_is_forgotten_and_one_in_use_is_not():
    """The pool keeps the datasets in use: a dataset's metadata and count go once no run of it is left to take
    or in flight (an independent sweep of 10^5 datasets must not keep 10^5 metadata dicts)."""
    todo = runs({"a": 2})
    pool = DatasetPool(todo, limit=2, make=lambda r: ("put-a", None, {"sha256": "s", "nbytes": 8}))
    pool.take(todo[0])
    pool.give_back(todo[0])
    pool.forget("a")  # one run still to take
    pool.take(todo[1])
    pool.forget("a")  # one in flight
    assert pool.meta["a"]["sha256"] == "s"
    pool.give_back(todo[1])
    pool.forget("a")
    pool.forget("a")  # twice is harmless
    assert "a" not in pool.meta and "a" not in pool.remaining and not pool.live
