"""The fast expansion (hash texts composed from each point's JSON, seeds cached per data point) gives exactly
the run ids, data keys and seeds of the plain per-run definition; a plan too large is refused before any work."""
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sweeper
from sweeper.cli import main
from sweeper.hashing import short_hash
from sweeper.spec.plan import plan_size

SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_infinity=True, allow_nan=True, width=64),
                    st.booleans(), st.none(), st.text(max_size=6))


def _seed(seed: int, *words) -> int:
    """The definition of a run seed: SeedSequence(seed) spawned at a position given by content-hash words, its
    first 63 bits (what seeds.spawned computes for many keys at once)."""
    key = tuple(int(w, 16) if isinstance(w, str) else int(w) for w in words)
    ss = np.random.SeedSequence(seed, spawn_key=key)
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def reference(spec):
    """The definition: each hash over its whole dict, each seed from its own SeedSequence."""
    version, out = spec.study.version or "0", []
    for r in sweeper.expand(spec).runs:
        session, data, fit = r.session, r.data, r.fit
        data_hash, fit_hash = short_hash({"session": session, "data": data}, 16), short_hash(fit, 16)
        seed_data = _seed(spec.seed, data_hash, r.repeat_data)
        words = (data_hash, r.repeat_data, fit_hash, r.repeat_fit, 1) if spec.seeds == "independent" else \
            (data_hash, r.repeat_data, r.repeat_fit, 2)
        seed_fit = _seed(spec.seed, *words)
        out.append((short_hash({"study": spec.study_name, "version": version, "data": data, "fit": fit,
                                "session": session, "seeds": [seed_data, seed_fit]}, 16),
                    short_hash({"study": spec.study_name, "version": version, "data": data, "session": session,
                                "seed": seed_data}, 16), seed_data, seed_fit))
    return out


@settings(max_examples=40, deadline=None)
@given(axes=st.lists(st.lists(SCALARS, min_size=1, max_size=3, unique_by=repr), min_size=1, max_size=3),
       repeats=st.integers(1, 3), seeds=st.sampled_from(["paired", "independent"]),
       mode=st.sampled_from(["shared", "independent"]), name=st.text(min_size=1, max_size=5).filter(
           lambda s: "/" not in s))
def test_fast_ids_equal_the_definition(axes, repeats, seeds, mode, name):
    sweep = {f"fit.x{i}": values for i, values in enumerate(axes)}
    try:
        spec = sweeper.load_spec({"study": "tests.fixtures.linear", "name": name, "seed": 9, "repeats": repeats,
                                  "seeds": seeds, "data_mode": mode, "data": {"n": 5, "a": 1.0, "b": 0.0,
                                                                              "noise": 0.1},
                                  "fit": {f"x{i}": 0 for i in range(len(axes))}, "sweep": sweep})
    except sweeper.SpecError:
        return  # two equal values on one axis (1 and 1.0, True and 1): refused, as tested elsewhere
    runs = sweeper.expand(spec).runs
    assert len(runs) == plan_size(spec) == math.prod(map(len, axes)) * repeats
    assert [(r.run_id, r.data_key, r.seed_data, r.seed_fit) for r in runs] == reference(spec)


def test_a_plan_over_the_limit_is_refused_in_one_line(capsys):
    spec = {"study": "tests.fixtures.linear", "name": "big", "seed": 1, "data": {"n": 5, "a": 1.0, "b": 0.0,
                                                                                 "noise": 0.1},
            "fit": {"k": 0}, "sweep": {"data.a": [float(i) for i in range(1000)], "fit.k": list(range(2000))}}
    with pytest.raises(sweeper.SpecError, match=r"2,000,000 runs \(data.a \(1000\) x fit.k \(2000\), repeats 1\), "
                                                r"more than the limit of 1,000,000; pass --max-runs 2000000"):
        sweeper.expand(sweeper.load_spec(spec))
    small = {**spec, "sweep": {"data.a": [1.0, 2.0], "fit.k": list(range(30))}}
    assert len(sweeper.expand(sweeper.load_spec(small), max_runs=60).runs) == 60
    with pytest.raises(sweeper.SpecError, match="pass --max-runs 60"):
        sweeper.expand(sweeper.load_spec(small), max_runs=59)


def test_sweep_plan_summarises_a_large_plan(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("study: tests.fixtures.linear\nseed: 1\ndata: {n: 5, a: 1.0, b: 0.0, noise: 0.1}\n"
                    "fit: {k: 0}\nsweep: {data.a: [1.0, 2.0, 3.0], fit.k: [RANGE]}\nrepeats: 2\n"
                    .replace("RANGE", ", ".join(map(str, range(40)))))
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "240 runs, 3 datasets" in out and "data.a: 3 values (1.0 ... 3.0)" in out
    assert "fit.k: 40 values (0 ... 39)" in out and "first 5 and last 5 of 240 runs" in out
    assert len(out.splitlines()) < 25
    assert main(["plan", str(spec), "--max-runs", "100"]) == 2
    assert "pass --max-runs 240" in capsys.readouterr().err


def per_run_table(plan):
    """plan.parquet as the per-run definition builds it: one Python value per run and column."""
    from sweeper.columns import table_from_columns
    from sweeper.hashing import canonical_json

    runs = plan.runs
    axes = list(runs[0].axes) if runs else []
    return table_from_columns({
        "run_id": [r.run_id for r in runs], "data_key": [r.data_key for r in runs],
        "session": [r.session for r in runs],
        **{k: [getattr(r, k) for r in runs] for k in ("repeat_data", "repeat_fit", "seed_data", "seed_fit")},
        **{k: [r.axes[k] for r in runs] for k in axes if k != "session"},
        "params": [canonical_json({"data": r.data, "fit": r.fit}) for r in runs]})


@settings(max_examples=30, deadline=None)
@given(data_axis=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=3, unique=True),
       fit_axis=st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True),
       zipped=st.integers(1, 3), mode=st.sampled_from(["shared", "independent", "crossed"]),
       seeds=st.sampled_from(["paired", "independent"]), sessions=st.booleans())
def test_the_columnar_plan_equals_the_per_run_definition(data_axis, fit_axis, zipped, mode, seeds, sessions):
    """Columns built from distinct values and indices (points x repeats) give plan.parquet exactly as one row
    per run would: data and fit axes, zip rows, sessions, every data mode and seed mode."""
    spec = {"study": "tests.fixtures.linear", "name": "cols", "seed": 3, "data_mode": mode, "seeds": seeds,
            "repeats": {"data": 2, "fit": 2} if mode == "crossed" else 2,
            "data": {"n": 5, "a": 1.0, "b": 0.0, "noise": 0.1}, "fit": {"k": 0, "m": 0},
            "sweep": {"data.a": data_axis, "fit.k": fit_axis},
            "zip": {"data.noise": [0.1 * (i + 1) for i in range(zipped)], "fit.m": list(range(zipped))}}
    if sessions:  # session files beside the spec; each session sets its own params, a sweep axis of its own
        import tempfile

        from sweeper.yaml_dialect import dump_yaml

        folder = Path(tempfile.mkdtemp())
        (folder / "s1.yaml").write_text("data: {b: 1.0}\n")
        (folder / "s2.yaml").write_text("fit: {k: 5}\n")
        (folder / "spec.yaml").write_text(dump_yaml({**spec, "sessions": ["s1", "s2"]}))
        spec = folder / "spec.yaml"
    plan = sweeper.expand(sweeper.load_spec(spec))
    assert len(plan) == plan_size(plan.spec)
    assert plan.table().equals(per_run_table(plan), check_metadata=True)
    assert [(r.run_id, r.data_key, r.seed_data, r.seed_fit) for r in plan.runs] == reference(plan.spec)
    assert len(set(plan.run_ids())) == len(plan)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**70), keys=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**33),
                                                           st.integers(0, 3)), min_size=1, max_size=20))
def test_vectorised_seeds_equal_numpy_seed_sequence(seed, keys):
    from sweeper.spec.seeds import spawned

    assert spawned(seed, [list(c) for c in zip(*keys)]).tolist() == [_seed(seed, *k) for k in keys]
