"""The fast expansion (hash texts composed from each point's JSON, seeds cached per data point) gives exactly
the run ids, data keys and seeds of the plain per-run definition; a plan too large is refused before any work."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sweeper
from sweeper.cli import main
from sweeper.hashing import short_hash
from sweeper.spec.plan import _seed, plan_size

SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_infinity=True, allow_nan=True, width=64),
                    st.booleans(), st.none(), st.text(max_size=6))


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
        spec = sweeper.load_spec({"study": "tests.studies.linear", "name": name, "seed": 9, "repeats": repeats,
                                  "seeds": seeds, "data_mode": mode, "data": {"n": 5, "a": 1.0, "b": 0.0,
                                                                              "noise": 0.1},
                                  "fit": {f"x{i}": 0 for i in range(len(axes))}, "sweep": sweep})
    except sweeper.SpecError:
        return  # two equal values on one axis (1 and 1.0, True and 1): refused, as tested elsewhere
    runs = sweeper.expand(spec).runs
    assert len(runs) == plan_size(spec) == math.prod(map(len, axes)) * repeats
    assert [(r.run_id, r.data_key, r.seed_data, r.seed_fit) for r in runs] == reference(spec)


def test_a_plan_over_the_limit_is_refused_in_one_line(capsys):
    spec = {"study": "tests.studies.linear", "name": "big", "seed": 1, "data": {"n": 5, "a": 1.0, "b": 0.0,
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
    spec.write_text("study: tests.studies.linear\nseed: 1\ndata: {n: 5, a: 1.0, b: 0.0, noise: 0.1}\n"
                    "fit: {k: 0}\nsweep: {data.a: [1.0, 2.0, 3.0], fit.k: [RANGE]}\nrepeats: 2\n"
                    .replace("RANGE", ", ".join(map(str, range(40)))))
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "240 runs, 3 datasets" in out and "data.a: 3 values (1.0 ... 3.0)" in out
    assert "fit.k: 40 values (0 ... 39)" in out and "first 5 and last 5 of 240 runs" in out
    assert len(out.splitlines()) < 25
    assert main(["plan", str(spec), "--max-runs", "100"]) == 2
    assert "pass --max-runs 240" in capsys.readouterr().err
