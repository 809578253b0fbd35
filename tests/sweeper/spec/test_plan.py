"""Sweep expansion: grid sizes, data modes, stable ids and seeds (no Ray)."""
import pytest

from sweeper import expand, load_spec


def spec(**kw):
    base = {"study": "tests.fixtures.linear", "name": "t", "seed": 5,
            "data": {"n": 10, "a": 1.0, "b": 0.0, "noise": 0.1}, "fit": {"bootstrap": True},
            "sweep": {"data.a": [1.0, 2.0], "fit.bootstrap": [True, False]}}
    base.update(kw)
    return load_spec(base)


def test_grid_and_ids_are_stable():
    p1, p2 = expand(spec(repeats=3)), expand(spec(repeats=3))
    assert len(p1.runs) == 2 * 2 * 3
    assert [r.run_id for r in p1.runs] == [r.run_id for r in p2.runs]
    assert len({r.run_id for r in p1.runs}) == 12
    assert spec(repeats=3).sweep_id() == spec(repeats=3).sweep_id() != spec(repeats=2).sweep_id()
    other_seed = expand(load_spec({**spec().to_dict(), "seed": 6, "repeats": 3}))
    assert not {r.run_id for r in other_seed.runs} & {r.run_id for r in p1.runs}


def test_adding_a_value_keeps_the_other_runs():
    small = {r.run_id for r in expand(spec()).runs}
    big = {r.run_id for r in expand(spec(sweep={"data.a": [1.0, 2.0, 3.0], "fit.bootstrap": [True, False]})).runs}
    assert small < big


def test_shared_mode_one_dataset_per_data_point():
    plan = expand(spec(data_mode="shared", repeats=4))
    assert len(plan.data_keys) == 2  # two values of data.a; fit axis and repeats share
    for key in plan.data_keys:
        seeds = {r.seed_data for r in plan.runs if r.data_key == key}
        assert len(seeds) == 1
    # paired seeds: the fit arms (bootstrap on/off) of a data point and repeat share one fit seed
    by_cell = {}
    for r in plan.runs:
        by_cell.setdefault((r.data_key, r.repeat_fit), set()).add(r.seed_fit)
    assert len(by_cell) == 8 and all(len(s) == 1 for s in by_cell.values())
    assert len({r.seed_fit for r in plan.runs}) == 8


def test_independent_seeds_give_every_arm_its_own():
    plan = expand(spec(data_mode="shared", repeats=4, seeds="independent"))
    assert len({r.seed_fit for r in plan.runs}) == len(plan.runs) == 16
    paired = expand(spec(data_mode="shared", repeats=4))
    assert not {r.run_id for r in plan.runs} & {r.run_id for r in paired.runs}


def test_independent_mode_one_dataset_per_repeat():
    plan = expand(spec(data_mode="independent", repeats=4, sweep={"data.a": [1.0, 2.0]}))
    assert len(plan.runs) == 8 and len(plan.data_keys) == 8
    assert len({r.seed_data for r in plan.runs}) == 8


def test_crossed_mode_d_times_f():
    plan = expand(spec(data_mode="crossed", repeats={"data": 3, "fit": 4}, sweep={"data.a": [1.0]}))
    assert len(plan.runs) == 12 and len(plan.data_keys) == 3
    assert sorted({(r.repeat_data, r.repeat_fit) for r in plan.runs}) == [(d, f) for d in range(3) for f in range(4)]


def test_zip_moves_axes_together():
    plan = expand(spec(sweep={"data.a": [1.0, 2.0]}, zip={"data.n": [10, 20, 30], "data.b": [0.0, 0.5, 1.0]}))
    assert len(plan.runs) == 6
    assert {(r.data["n"], r.data["b"]) for r in plan.runs} == {(10, 0.0), (20, 0.5), (30, 1.0)}


def test_plan_table_lists_every_run():
    plan = expand(spec(repeats=2))
    t = plan.table()
    assert t.num_rows == 8 and {"run_id", "data_key", "seed_data", "seed_fit", "data.a"} <= set(t.column_names)


@pytest.mark.parametrize("values", [[1.0, 1.0], [1, 1.0], [True, 1], [[1, 2], [1, 2]]])
def test_repeated_sweep_value_is_an_error(values):
    from sweeper import SpecError

    with pytest.raises(SpecError, match="sweep.data.a: values .* are equal") as e:
        spec(sweep={"data.a": values})
    assert "indistinguishable" in str(e.value)
