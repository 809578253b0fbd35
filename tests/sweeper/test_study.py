"""The study contract: one Study type, declared parameters whose defaults enter the spec and the ids,
errors at the exact key, code-change detection, a study beside its spec, and the smaller mends."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import Field

import sweeper
from sweeper import Params, SpecError, Study
from sweeper.cli import main
from tests import REPO

ROOT = REPO


class SlopeData(Params):
    n: int = Field(50, gt=0)
    slope: float = 1.0
    noise: float = Field(0.5, ge=0)


class SlopeFit(Params):
    degree: int = Field(1, ge=1, le=3)


def slope_simulate(data, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, data["n"])
    return {"x": x, "y": data["slope"] * x + data["noise"] * rng.standard_normal(data["n"])}


def slope_fit(dataset, params, seed):
    return {"metrics": {"slope": float(np.polyfit(dataset["x"], dataset["y"], params["degree"])[-2])}}


SLOPE = Study("slope", slope_simulate, slope_fit, data_params=SlopeData, fit_params=SlopeFit)


def spec(**kw):
    return {"study": SLOPE, "name": "slope", "seed": 1, **kw}


def test_study_is_one_frozen_type_and_checks_itself():
    with pytest.raises(Exception, match="frozen|cannot assign"):
        SLOPE.name = "other"
    with pytest.raises(TypeError, match="simulate must be callable"):
        Study("x", None, slope_fit)
    with pytest.raises(TypeError, match="data_params must be a pydantic model"):
        Study("x", slope_simulate, slope_fit, data_params={"n": 1})


def test_declared_defaults_fill_the_spec_and_enter_the_ids():
    s = sweeper.load_spec(spec())
    assert s.data == {"n": 50, "slope": 1.0, "noise": 0.5} and s.fit == {"degree": 1}
    assert s.origins["data.noise"] == "study slope (default)"
    ids = [r.run_id for r in sweeper.expand(s).runs]

    class OtherDefault(SlopeData):
        noise: float = 0.25

    moved = Study("slope", slope_simulate, slope_fit, data_params=OtherDefault, fit_params=SlopeFit)
    assert [r.run_id for r in sweeper.expand(sweeper.load_spec(spec(study=moved))).runs] != ids
    explicit = sweeper.load_spec(spec(data={"noise": 0.5}))  # the default written out: the same runs
    assert [r.run_id for r in sweeper.expand(explicit).runs] == ids


def test_a_defaulted_key_can_be_swept_and_bad_values_name_their_key():
    plan = sweeper.expand(sweeper.load_spec(spec(sweep={"data.noise": [0.1, 0.2], "fit.degree": [1, 2]})))
    assert len(plan.runs) == 4 and {r.data["noise"] for r in plan.runs} == {0.1, 0.2}
    with pytest.raises(SpecError, match=r"sweep.fit.degree|fit.degree: Input should be less than or equal to 3"):
        sweeper.expand(sweeper.load_spec(spec(sweep={"fit.degree": [1, 4]})))
    with pytest.raises(SpecError, match=r"data.nn: not a parameter of study slope; did you mean data.n\?"):
        sweeper.expand(sweeper.load_spec(spec(data={"nn": 3})))


def test_spec_yaml_and_plan_record_the_defaults(tmp_path, ray_session):
    res = sweeper.run(spec(sweep={"data.slope": [1.0, 2.0]}), out=tmp_path, progress=False)
    assert res.spec["data"] == {"n": 50, "slope": 1.0, "noise": 0.5} and res.spec["fit"] == {"degree": 1}
    plan = pq.read_table(res.dir / "plan.parquet").to_pylist()
    assert all('"noise":0.5' in r["params"] and '"degree":1' in r["params"] for r in plan)
    assert len(res.configs("slope")) == 2 and res.counts()["ok"] == 2


def test_a_script_study_runs_without_tricks_and_says_it_cannot_rerun(tmp_path, ray_session, capsys):
    study = Study("inline", lambda d, s: {"x": np.full(3, d["v"])}, lambda ds, p, s: {"metrics": {"v": ds["x"][0]}})
    res = sweeper.run({"study": study, "seed": 2, "data": {"v": 1.5}}, out=tmp_path, progress=False)
    assert res.dir.parent.name == "inline" and res.counts()["ok"] == 1
    text = (res.dir / "spec.yaml").read_text()
    assert text.startswith("# the study was defined in a script") and "study: script:inline" in text
    assert main(["run", str(res.dir / "spec.yaml"), "--out", str(tmp_path / "again")]) == 2
    assert "was defined in a script or notebook, not an importable module" in capsys.readouterr().err


def test_module_references(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "two_studies.py").write_text(textwrap.dedent("""\
        from sweeper import Study
        def simulate(d, s): return {"x": 1}
        def fit(ds, p, s): return {"metrics": {"m": 1.0}}
        A = Study("a", simulate, fit)
        B = Study("b", simulate, fit)
    """))
    base = {"seed": 1, "name": "t"}
    with pytest.raises(SpecError, match="holds several Studies .A, B.; name one as two_studies:NAME"):
        sweeper.load_spec({**base, "study": "two_studies"})
    assert sweeper.load_spec({**base, "study": "two_studies:B"}).study.name == "b"
    assert sweeper.load_spec({**base, "study": "two_studies:B"}).study_ref == "two_studies:B"
    plain = sweeper.load_spec({**base, "study": "tests.fixtures.linear", "data": {}})
    assert plain.study.name == "tests.fixtures.linear" == plain.study_ref
    shipped = sweeper.load_spec({**base, "study": "studies.recovery.parameter_recovery"})
    assert shipped.study_ref == "studies.recovery.parameter_recovery:study" and shipped.data["nsamples"] == 1000


def test_a_study_beside_its_spec_is_found_without_pythonpath(tmp_path):
    (tmp_path / "beside_mod.py").write_text("def simulate(d, s): return {'x': 1}\ndef fit(ds, p, s): return "
                                            "{'metrics': {'m': 1.0}}\n")
    (tmp_path / "s.yaml").write_text("study: beside_mod\nseed: 1\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-m", "sweeper.cli", "plan", str(tmp_path / "s.yaml")], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1 runs, 1 datasets" in out.stdout


MODULE = '''\
"""A study whose code the test edits."""
import numpy as np


def simulate(data, seed):
    return {"x": np.random.default_rng(seed).normal(size=5)}


def fit(dataset, params, seed):
    return {"metrics": {"m": float(dataset["x"].mean())}}


def report(result, figures_dir):
    return []
'''


def test_changed_code_runs_under_a_new_directory_comments_do_not(tmp_path, monkeypatch, ray_session, caplog):
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = tmp_path / "edited_study.py"
    mod.write_text(MODULE)
    run = lambda: sweeper.run({"study": "edited_study", "seed": 1}, out=tmp_path / "out", progress=False)  # noqa
    first = run()
    sys.modules.pop("edited_study", None)
    mod.write_text(MODULE.replace("def fit(", "# a comment\ndef fit(").replace('"""A study', '"""Edited: a study')
                   .replace("    return []", "    return []  # the report changed, not the results"))
    assert run().dir == first.dir
    sys.modules.pop("edited_study", None)
    mod.write_text(MODULE.replace("dataset[\"x\"].mean()", "dataset[\"x\"].mean() + 1"))
    with caplog.at_level("WARNING", logger="sweeper"):
        second = run()
    assert second.dir != first.dir and second.dir.parent == first.dir.parent
    assert f"the code of study edited_study changed since {first.dir}" in caplog.text and "edited_study.py" in caplog.text
    assert sweeper.load(first.dir).table.column("metrics.m")[0].as_py() + 1 == pytest.approx(
        second.table.column("metrics.m")[0].as_py())
    assert (second.dir / "code.json").is_file()


def test_a_child_spec_removes_a_parent_axis_with_null(tmp_path):
    (tmp_path / "parent.yaml").write_text("study: tests.fixtures.linear\nseed: 1\n"
                                          "data: {n: 5, a: 1.0, b: 0.0, noise: 0.1}\n"
                                          "sweep: {data.a: [1.0, 2.0], data.n: [5, 10]}\n")
    (tmp_path / "child.yaml").write_text("extends: parent.yaml\nsweep: {data.a: null}\n")
    s = sweeper.load_spec(tmp_path / "child.yaml")
    assert s.sweep == {"data.n": [5, 10]} and len(sweeper.expand(s).runs) == 2


def test_ptychography_without_the_extra_names_it(tmp_path):
    code = ("import sys; sys.modules['keras'] = None\n"
            "from sweeper.cli import main\n"
            f"sys.exit(main(['plan', {str(ROOT / 'studies' / 'ptychography' / 'specs' / 'dose_response.yaml')!r}]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "pip install -e '.[ptycho]'" in out.stderr.strip().splitlines()[-1]


def test_engine_install_pulls_no_deep_learning_framework():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    frameworks = ("tensorflow", "keras", "jax", "torch")
    assert not [d for d in project["dependencies"] if d.startswith(frameworks)]
    assert {"tensorflow", "keras"} <= {d.split(">")[0] for d in project["optional-dependencies"]["ptycho"]}
    assert "python -m pip install -e \".[ptycho]\" && sweep run studies/ptychography/specs/dose_response.yaml" in \
        (ROOT / "README.md").read_text()


def test_config_origin_names_the_command_line_and_the_study_defaults(capsys):
    spec = str(ROOT / "studies" / "recovery" / "specs" / "parameter_recovery_crossed.yaml")
    assert main(["config", spec, "data.nsamples=300", "fit.tol=1e-6", "--origin"]) == 0
    out = capsys.readouterr().out
    assert "data.nsamples: override 'data.nsamples=300'" in out and "fit.tol: override 'fit.tol=1e-6'" in out
    assert "sweep.data.nsamples:" not in out  # the pinned axis is gone, with its origin
    assert main(["config", str(ROOT / "tests" / "data" / "minimal_recovery.yaml"), "--origin"]) == 0
    out = capsys.readouterr().out
    assert "nsamples: 1000" in out and "data.nsamples: study parameter_recovery (default)" in out


def test_unknown_keys_are_errors_whatever_base_class_the_study_declared():
    import pydantic

    class PlainData(pydantic.BaseModel):  # not sweeper.Params: pydantic alone would ignore an unknown key
        n: int = 50
        slope: float = 1.0
        noise: float = 0.5

    plain = Study("slope", slope_simulate, slope_fit, data_params=PlainData, fit_params=SlopeFit)
    with pytest.raises(SpecError, match=r"data.nn: not a parameter of study slope; did you mean data.n\?"):
        sweeper.expand(sweeper.load_spec(spec(study=plain, data={"slope": 2.0, "nn": 5})))
    assert len(sweeper.expand(sweeper.load_spec(spec(study=plain, data={"slope": 2.0}))).runs) == 1
    assert PlainData.model_validate({"nn": 5}).n == 50  # the study's own model is left as it was
