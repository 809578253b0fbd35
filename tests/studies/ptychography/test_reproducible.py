"""The same run, the same numbers: a PINN run's metrics do not depend on what ran beside it (the other arms
of its sweep before it in the same worker processes, a warm actor that trained other runs first) or on
running alone. Tiny sizes; exact equality, to the last digit."""
import json

import pytest

import sweeper
from tests import REPO

SPEC = REPO / "studies" / "ptychography" / "specs" / "dose_response.yaml"
TINY = ["data.N=16", "data.object_size=64", "data.n_lines=20", "data.probe_radius=4.0", "data.n_train=64",
        "data.test_step=4.0", "fit.epochs=3", "fit.width=8", "fit.depth=2", "repeats=1"]


def _metrics(result) -> dict:
    """{(photons, model, loss): the run's metrics as exact text (NaN included)}."""
    return {(r.data["nphotons"], r.fit["model"], r.fit["loss"]): json.dumps(r.metrics, sort_keys=True)
            for r in result.runs(status="ok")}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_run_s_numbers_do_not_depend_on_what_ran_beside_it(tmp_path):
    run = lambda name, extra: sweeper.run(SPEC, TINY + extra, out=tmp_path / name, progress=False, report=False)  # noqa: E731
    together = _metrics(run("together", []))                              # 2 doses x 3 arms, tasks
    assert len(together) == 6
    alone = _metrics(run("alone", ["fit.model=pinn", "fit.loss=nll"]))  # only the NLL runs
    warm = _metrics(run("warm", ["executor=actor"]))                     # warm actors, runs one after another
    assert set(alone) == {(1e9, "pinn", "nll"), (1e4, "pinn", "nll")}
    assert all(alone[k] == together[k] for k in alone)
    assert warm == together
