"""Bad input: every malformed spec or override stops `sweep run` before any work, exit 2, nothing written,
one message naming the file (and line) or the override, and the key."""
import textwrap
from pathlib import Path

import pytest

from sweeper.cli import main
from tests import REPO

LINEAR = """\
study: tests.fixtures.linear
seed: 1
data: {n: 50, a: 1.0, b: 0.0, noise: 0.1}
fit: {bootstrap: false}
"""
DOSE = str(REPO / "studies" / "ptychography" / "specs" / "dose_response.yaml")

# (id, files {name: text} -- spec.yaml is run unless `spec` names another, overrides, key, message fragment)
CASES = [
    ("yaml-syntax", {"spec.yaml": LINEAR + "sweep: {data.a: [1, 2}\n"}, [], None, "YAML syntax error"),
    ("repeats-string", {"spec.yaml": LINEAR + 'repeats: "three"\n'}, [], "repeats", "integer"),
    ("repeats-zero", {"spec.yaml": LINEAR + "repeats: 0\n"}, [], "repeats", "integer >= 1"),
    ("nphotons-string", {}, ["data.nphotons=lots"], "data.nphotons", "valid number, unable to parse string"),
    ("nphotons-negative", {}, ["data.nphotons=-1e4"], "data.nphotons", "greater than 0, got -10000.0"),
    ("nphotons-zero", {}, ["data.nphotons=0"], "data.nphotons", "greater than 0, got 0"),
    ("nphotons-swept-zero", {}, ["sweep.data.nphotons=[1e9, 0]"], "data.nphotons", "greater than 0, got 0"),
    ("unknown-param-did-you-mean", {"spec.yaml": "study: studies.recovery.parameter_recovery\nseed: 1\n"
                                                 "data: {nsample: 100}\n"}, [], "data.nsample",
     "not a parameter of study parameter_recovery; did you mean data.nsamples?"),
    ("unknown-fit-method", {"spec.yaml": "study: studies.recovery.parameter_recovery\nseed: 1\nfit: {method: sgd}\n"}, [],
     "fit.method", "Input should be 'L-BFGS-B', 'Nelder-Mead', 'Powell' or 'TNC'"),
    ("swept-bad-value-names-sweep-line", {"spec.yaml": "study: studies.recovery.parameter_recovery\nseed: 1\n"
                                                       "sweep:\n  data.nsamples: [100, 0]\n"}, [],
     "data.nsamples", "spec.yaml:4: data.nsamples: Input should be greater than or equal to 1"),
    ("probe-larger-than-N", {}, ["data.probe_radius=20.0"], "data.probe_radius", "does not fit in an N=32"),
    ("sweep-missing-key", {"spec.yaml": LINEAR + "sweep: {data.nope: [1, 2]}\n"}, [], "sweep.data.nope",
     "not a parameter of the study or the spec; did you mean data.noise?"),
    ("sweep-empty-list", {"spec.yaml": LINEAR + "sweep: {data.a: []}\n"}, [], "sweep.data.a", "empty"),
    ("sweep-not-a-list", {"spec.yaml": LINEAR + "sweep: {data.a: 3}\n"}, [], "sweep.data.a", "list"),
    ("sweep-outside-data-fit", {"spec.yaml": LINEAR + "sweep: {model.a: [1]}\n"}, [], "sweep.model.a",
     "data.<key> or fit.<key>"),
    ("zip-unequal", {"spec.yaml": LINEAR + "zip: {data.a: [1, 2], data.b: [1]}\n"}, [], "zip", "equal lengths"),
    ("swept-and-zipped", {"spec.yaml": LINEAR + "sweep: {data.a: [1, 2]}\nzip: {data.a: [3, 4]}\n"}, [],
     "data.a", "not both"),
    ("unknown-executor", {"spec.yaml": LINEAR + "executor: slurm\n"}, [], "executor", "task, actor"),
    ("unknown-data-mode", {"spec.yaml": LINEAR + "data_mode: sometimes\n"}, [], "data_mode", "shared"),
    ("crossed-int-repeats", {"spec.yaml": LINEAR + "data_mode: crossed\nrepeats: 3\n"}, [], "repeats",
     "{data: D, fit: F}"),
    ("num-gpus-negative", {"spec.yaml": LINEAR + "resources: {num_gpus: -1}\n"}, [], "resources.num_gpus", ">= 0"),
    ("num-cpus-string", {"spec.yaml": LINEAR + "resources: {num_cpus: two}\n"}, [], "resources.num_cpus", "number"),
    ("num-gpus-above-cluster", {"spec.yaml": LINEAR + "resources: {num_gpus: 1}\n"}, [], "resources.num_gpus",
     "largest node has 0"),
    ("unknown-top-key", {"spec.yaml": LINEAR + "repeat: 3\n"}, [], "repeat", "unknown key (did you mean 'repeats'?"),
    ("missing-seed", {"spec.yaml": LINEAR.replace("seed: 1\n", "")}, [], "seed", "no default"),
    ("negative-seed", {"spec.yaml": LINEAR.replace("seed: 1", "seed: -5")}, [], "seed", "integer >= 0"),
    ("missing-study", {"spec.yaml": LINEAR.replace("study: tests.fixtures.linear\n", "")}, [], "study", "missing"),
    ("save-datasets-string", {"spec.yaml": LINEAR + "save_datasets: maybe\n"}, [], "save_datasets", "true or false"),
    ("missing-session-file", {"spec.yaml": LINEAR + "sessions: [gone]\n"}, [], None, "gone.yaml does not exist"),
    ("extends-cycle", {"spec.yaml": "extends: other.yaml\n" + LINEAR, "other.yaml": "extends: spec.yaml\n"}, [],
     "extends", "inheritance cycle"),
    ("extends-missing", {"spec.yaml": "extends: nowhere.yaml\n" + LINEAR}, [], None, "does not exist"),
    ("study-raises-on-import", {"spec.yaml": LINEAR.replace("tests.fixtures.linear", "raising_study_mod"),
                                "raising_study_mod.py": "raise RuntimeError('no licence server')\n"}, [],
     "study", "RuntimeError: no licence server"),
    ("study-without-fit", {"spec.yaml": LINEAR.replace("tests.fixtures.linear", "json")}, [], "study",
     "no callable simulate or fit"),
    ("override-unknown-key", {"spec.yaml": LINEAR}, ["data.nope=1"], "data.nope", "no such key"),
    ("override-did-you-mean", {}, ["data.nphoton=1e5"], "data.nphoton", "did you mean data.nphotons?"),
    ("override-echoes-what-was-typed", {"spec.yaml": LINEAR}, ["repeats=abc"], "repeats",
     "override 'repeats=abc'"),
    ("override-bad-value", {"spec.yaml": LINEAR}, ["data.a=[1,"], "data.a", "cannot read the value"),
    ("override-not-key-value", {"spec.yaml": LINEAR}, ["justtext"], None, "key=value"),
    ("report-metric-number", {"spec.yaml": LINEAR + "report: {metric: 3}\n"}, [], "report.metric", "metric name"),
    ("empty-name", {"spec.yaml": LINEAR + "name: ''\n"}, [], "name", "expected a name"),
    ("true-for-a-count", {}, ["fit.epochs=true"], "fit.epochs", "expected a number, got True"),
    ("swept-key-base-out-of-range", {}, ["data.nphotons=-1", "sweep.data.nphotons=[1e9, 1e4]"], "data.nphotons",
     "the value data.nphotons takes where it is not swept"),
]


@pytest.mark.parametrize("files, overrides, key, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_before_any_work(tmp_path, monkeypatch, capsys, request, files, overrides, key, fragment):
    if key == "resources.num_gpus" and "above" in request.node.name:
        request.getfixturevalue("ray_session")  # what the cluster has is only known once Ray is up
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    spec = str(tmp_path / "spec.yaml") if files else DOSE
    out = tmp_path / "out"
    assert main(["run", spec, *overrides, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    message = err.strip().splitlines()[-1]
    assert message.startswith("sweep: error:") and fragment in message
    if key:
        assert key in message
    assert (Path(spec).name in message) or "override" in message
    assert not out.exists()  # nothing written


def test_at_least_twenty_cases():
    assert len(CASES) >= 20


def test_missing_spec_file_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_resources_beyond_an_existing_cluster_warn_instead(ray_session, caplog):
    """On a cluster joined with --address the autoscaler may still add a GPU node: a warning, not an error."""
    from sweeper.driver import check_resources
    from sweeper.spec.resolved import load_spec

    spec = load_spec({"study": "tests.fixtures.linear", "seed": 1, "name": "gpu", "data": {"n": 5, "a": 1.0,
                      "b": 0.0, "noise": 0.1}, "fit": {}, "resources": {"num_gpus": 1}})
    with caplog.at_level("WARNING", logger="sweeper"):
        check_resources(spec, cluster_known=False)
    assert "each run asks for 1 GPU, but the largest node has 0" in caplog.text and "autoscaler" in caplog.text


def test_an_output_that_cannot_be_written_is_one_line_before_ray(tmp_path, capsys):
    """--out a file, or on a read-only file system: one line naming the path, exit 2, nothing written."""
    import os
    import subprocess

    (tmp_path / "spec.yaml").write_text(LINEAR)
    (tmp_path / "afile").write_text("")
    assert main(["run", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "afile"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and f"{tmp_path / 'afile'} is not a folder" in err[0]
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode:
        return  # a read-only mount needs root
    try:
        assert main(["run", str(tmp_path / "spec.yaml"), "--out", str(ro / "out"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{ro} is on a read-only file system" in err[0]
    finally:
        subprocess.run(["umount", str(ro)])
