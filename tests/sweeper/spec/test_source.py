"""Spec loading: inheritance, sessions, overrides, provenance and validation errors (no Ray)."""
import textwrap
from pathlib import Path

import pytest

from sweeper import SpecError, expand, load_spec
from sweeper.cli import main


def write(dirpath: Path, name: str, text: str) -> Path:
    p = dirpath / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


BASE = """\
study: tests.fixtures.linear
seed: 1
data:
  n: 50
  a: 1.0
  b: 0.0
  noise: 0.1
fit:
  bootstrap: false
  opt: {lr: 0.1, steps: [1, 2, 3]}
"""


def test_extends_deep_merges_with_provenance(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "mid.yaml", """\
        extends: base.yaml
        fit:
          opt: {steps: [9]}
        """)
    child = write(tmp_path, "sub/child.yaml", """\
        extends: ../mid.yaml
        data:
          n: 80
        sweep:
          data.a: [1.0e9, 1e4]
        """)
    spec = load_spec(child)
    assert spec.data == {"n": 80, "a": 1.0, "b": 0.0, "noise": 0.1}
    assert spec.fit["opt"] == {"lr": 0.1, "steps": [9]}  # dict merged, list replaced
    assert spec.sweep["data.a"] == [1e9, 1e4] and all(isinstance(v, float) for v in spec.sweep["data.a"])
    assert spec.origins["data.n"] == f"{child}:3"
    assert spec.origins["data.a"] == f"{tmp_path / 'base.yaml'}:5"
    assert spec.origins["fit.opt.steps"].startswith(str(tmp_path / "mid.yaml"))
    assert spec.origins["fit.opt.lr"].startswith(str(tmp_path / "base.yaml"))
    assert spec.name == "child"


def test_sessions_become_a_sweep_axis(tmp_path):
    write(tmp_path, "parent.yaml", BASE + "session_dir: ./sessions\nsessions: [s1, s2]\n")
    write(tmp_path, "sessions/s1.yaml", "data: {n: 11}\n")
    write(tmp_path, "sessions/s2.yaml", "session: s2\ndata: {n: 22, b: 5.0}\nfit: {opt: {lr: 0.5}}\n")
    spec = load_spec(tmp_path / "parent.yaml", ["data.noise=0.3"])
    assert spec.sessions["s1"]["data"] == {"n": 11, "a": 1.0, "b": 0.0, "noise": 0.3}
    assert spec.sessions["s2"]["fit"]["opt"] == {"lr": 0.5, "steps": [1, 2, 3]}
    plan = expand(spec)
    assert [r.session for r in plan.runs] == ["s1", "s2"]
    assert plan.runs[1].data["b"] == 5.0 and plan.runs[1].data["noise"] == 0.3
    assert len(plan.data_keys) == 2


def test_overrides_are_typed_and_checked(tmp_path):
    p = write(tmp_path, "s.yaml", BASE)
    spec = load_spec(p, ["data.n=64", "fit.opt.lr=1e-3", "+fit.extra=[1, 2]", "sweep.data.a=[1, 2, 3]"])
    assert spec.data["n"] == 64 and spec.fit["opt"]["lr"] == 1e-3 and spec.fit["extra"] == [1, 2]
    assert spec.sweep == {"data.a": [1, 2, 3]}
    assert spec.origins["data.n"] == "override 'data.n=64'"
    with pytest.raises(SpecError, match=r"no such key.*\+fit.typo"):
        load_spec(p, ["fit.typo=1"])


def test_cli_config_origin_prints_files_and_lines(tmp_path, capsys):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\ndata: {n: 7}\n")
    assert main(["config", str(child), "--origin"]) == 0
    out = capsys.readouterr().out
    assert f"data.n: {child}:2" in out and f"data.a: {tmp_path / 'base.yaml'}:5" in out


def test_study_errors(tmp_path):
    p = write(tmp_path, "a.yaml", BASE.replace("tests.fixtures.linear", "tests.fixtures.no_such_module"))
    with pytest.raises(SpecError, match="no module .tests.fixtures.no_such_module. .looked in the working directory, beside the spec") as e:
        load_spec(p)
    assert e.value.key == "study" and e.value.where == f"{p}:1"
    p = write(tmp_path, "b.yaml", BASE.replace("tests.fixtures.linear", "json"))
    with pytest.raises(SpecError, match="no callable simulate or fit"):
        load_spec(p)


def test_inheritance_errors(tmp_path):
    write(tmp_path, "x.yaml", "extends: y.yaml\nseed: 1\n")
    write(tmp_path, "y.yaml", "extends: x.yaml\n")
    with pytest.raises(SpecError, match=r"inheritance cycle: x.yaml -> y.yaml -> x.yaml") as e:
        load_spec(tmp_path / "x.yaml")
    assert e.value.key == "extends"
    write(tmp_path, "z.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(SpecError, match="does not exist") as e:
        load_spec(tmp_path / "z.yaml")
    assert e.value.where == f"{tmp_path / 'z.yaml'}:1"
    write(tmp_path, "p.yaml", BASE + "sessions: [gone]\n")
    with pytest.raises(SpecError, match="session file .*gone.yaml does not exist"):
        load_spec(tmp_path / "p.yaml")
    write(tmp_path, "syntax.yaml", "seed: [1, 2\n")
    with pytest.raises(SpecError, match="YAML syntax error"):
        load_spec(tmp_path / "syntax.yaml")


def test_an_override_of_a_swept_key_pins_it(tmp_path):
    p = write(tmp_path, "s.yaml", BASE + "sweep: {data.a: [1.0, 2.0], data.b: [0.0, 1.0]}\n")
    spec = load_spec(p, ["data.a=3.0"])
    assert spec.sweep == {"data.b": [0.0, 1.0]} and spec.data["a"] == 3.0
    assert {r.data["a"] for r in expand(spec).runs} == {3.0} and len(expand(spec).runs) == 2
    assert load_spec(p, ["sweep.data.a=[5.0]"]).sweep["data.a"] == [5.0]


def test_the_simulate_task_s_own_resources(linear_spec):
    spec, _ = linear_spec
    s = load_spec({**spec, "resources": {"num_cpus": 1, "simulate": {"num_gpus": 1}}})
    assert s.how.resources.asked() == {"num_cpus": 1, "num_gpus": 0} and s.how.simulate.asked() == {"num_gpus": 1}
    assert s.to_dict()["resources"]["simulate"] == {"num_gpus": 1}  # spec.yaml keeps it
    with pytest.raises(SpecError, match=r"resources.simulate.gpus: unknown key \(did you mean 'num_gpus'\? expected one of num_cpus, num_gpus"):
        load_spec({**spec, "resources": {"simulate": {"gpus": 1}}})
    with pytest.raises(SpecError, match=r"resources.simulate.num_gpus: fractional num_gpus must be below 1"):
        load_spec({**spec, "resources": {"simulate": {"num_gpus": 1.5}}})


def test_zipped_lists_may_repeat_values_but_not_rows(linear_spec):
    spec, _ = linear_spec
    spec = {**spec, "sweep": {}, "fit": {**spec["fit"], "k": 0, "j": 0}}
    s = load_spec({**spec, "zip": {"fit.k": [1, 1, 2], "fit.j": [1, 2, 2]}})
    assert len(expand(s).runs) == 3 * 3
    with pytest.raises(SpecError, match=r"zip: rows 1 and 3 of the zipped lists \(fit.k, fit.j\) are equal"):
        load_spec({**spec, "zip": {"fit.k": [1, 2, 1], "fit.j": [5, 6, 5]}})
    # pinning a zipped key keeps the remaining lists' distinct rows, the first of each, in order
    zips = {"fit.k": [1, 1, 2, 1], "fit.j": [1, 2, 2, 3]}
    pinned = load_spec({**spec, "zip": zips}, ["fit.j=7"])
    assert pinned.zip == {"fit.k": [1, 2]} and pinned.fit["j"] == 7
    # pinned to a value some rows hold, only those rows stay (fit.model=epie: the epie arm alone)
    assert load_spec({**spec, "zip": zips}, ["fit.k=2"]).zip == {"fit.j": [2]}
    assert load_spec({**spec, "zip": zips}, ["fit.k=1"]).zip == {"fit.j": [1, 2, 3]}
    assert load_spec({**spec, "zip": zips}, ["fit.j=2"]).zip == {"fit.k": [1, 2]}
