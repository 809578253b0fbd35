"""The driver's memory is O(in flight), not O(runs): a sweep of 10^5 trivial runs, each on its own dataset,
with the scheduler's containers counted and the process's RSS read at every tick of its wait loop."""
import os
import types

import numpy as np
import pytest

import sweeper
from sweeper.execution import scheduler as sched
from sweeper.execution.queues import RunQueue
from sweeper.execution.saver import Saver

RUNS = 100_000


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _simulate(data, seed):
    return {"x": np.zeros(1)}


def _fit(dataset, params, seed):
    return {"metrics": {"m": float(seed % 7)}}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_the_driver_holds_what_is_in_flight_not_every_run(tmp_path, monkeypatch):
    """Before: every Run object made up front (99,936 waiting at once in a 10^5-run sweep), every dataset's
    metadata kept (99,628), and a future per run while the writer lagged (126,657); the driver's RSS grew
    700 MB while scheduling. Now each stays under a bound that does not grow with the sweep."""
    seen = {"start": None, "rss": 0.0, "new": 0, "meta": 0, "writes": 0, "in_flight": 0, "ticks": 0}
    owner = {}
    run, tick = sched.Scheduler.run, Saver.tick

    def run_(self):
        owner["s"], seen["start"] = self, _rss_mb()
        return run(self)

    def tick_(self):
        s = owner["s"]
        seen["ticks"] += 1
        seen["rss"] = max(seen["rss"], _rss_mb())
        seen["new"] = max(seen["new"], len(s.queue.new))
        seen["meta"] = max(seen["meta"], len(s.datasets.meta))
        seen["writes"] = max(seen["writes"], self.outstanding)
        seen["in_flight"] = max(seen["in_flight"], sum(map(len, s.queue.pending.values())))
        return tick(self)

    monkeypatch.setattr(sched.Scheduler, "run", run_)
    monkeypatch.setattr(Saver, "tick", tick_)
    study = types.SimpleNamespace(simulate=_simulate, fit=_fit, __name__="many")
    res = sweeper.run({"study": study, "name": "many", "seed": 1, "data_mode": "independent", "repeats": RUNS},
                      out=tmp_path / "out", progress=False, report=False)
    assert res.counts()["ok"] == RUNS and seen["ticks"] > 100
    assert seen["new"] <= 2 * RunQueue.CHUNK            # runs made ahead of submission
    assert seen["meta"] <= 1_000                        # datasets' metadata kept (those in use)
    # writes not yet done: the backlog, plus a run and its dataset for each run in flight when it filled
    assert seen["writes"] <= Saver.BACKLOG + 2 * seen["in_flight"] + 10 and seen["in_flight"] < RUNS / 4
    assert seen["rss"] - seen["start"] < 300, seen      # MB over the sweep (it grew 700 MB before)
