"""What a scientist reads after a sweep: the end-of-run summary, the report's direction and axes rules,
figures that never pool silently, report.html with working links, and bad spec files."""
import re
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

import sweeper
from sweeper.report import figures
from sweeper.cli import main

LINEAR = """\
study: tests.fixtures.linear
seed: 2
description: Does least squares recover the slope a as the noise grows?
data: {n: 40, a: 1.0, b: 0.0, noise: 0.1}
fit: {bootstrap: true, fail: false}
"""


def write(tmp_path, text, name="spec.yaml") -> str:
    (tmp_path / name).write_text(textwrap.dedent(text))
    return str(tmp_path / name)


@pytest.fixture(scope="module")
def three_axes(tmp_path_factory, ray_session):
    """data.a (2) x data.noise (3) x fit.fail (2), 2 repeats: failures in one arm of fit.fail."""
    tmp = tmp_path_factory.mktemp("three")
    spec = write(tmp, LINEAR + "sweep: {data.a: [1.0, 2.0], data.noise: [0.01, 0.1, 1.0], fit.fail: [false, true]}\n"
                 "repeats: 2\nreport: {metric: metrics.a, maximize: true, axes: [data.noise, data.a]}\n")
    return sweeper.run(spec, out=tmp / "out", progress=False)


def test_run_ends_with_counts_and_each_distinct_error(tmp_path, ray_session, capsys):
    spec = write(tmp_path, LINEAR + "sweep: {fit.fail: [false, true], data.a: [1.0, 2.0]}\n")
    assert main(["run", spec, "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "2 ok, 2 failed, 0 pending" in err
    assert "2 run(s) failed with: RuntimeError: this fit was asked to fail" in err and "run.log" in err
    assert "report: " in err and "report.html" in err


def test_run_with_no_report_leaves_the_page_to_sweep_report(tmp_path, ray_session, capsys):
    spec = write(tmp_path, LINEAR + "sweep: {data.a: [1.0, 2.0]}\n")
    assert main(["run", spec, "--out", str(tmp_path / "out"), "--no-progress", "--no-report"]) == 0
    out, err = capsys.readouterr()
    root = Path(out.strip().splitlines()[-1])
    assert "2 ok, 0 failed, 0 pending" in err and "report: " not in err
    assert not (root / "report.html").exists() and not list(root.glob("figures/**/*.png"))
    assert main(["report", str(root)]) == 0
    assert (root / "report.html").is_file()


def test_figures_facet_small_and_name_what_they_average(three_axes):
    assert figures.layout(three_axes, ["data.noise", "data.a"]) == (["fit.fail"], [])
    facet, pooled = figures.layout(three_axes, ["data.noise"], max_panels=2)
    assert facet == ["data.a"] and pooled == ["fit.fail"]
    rows = three_axes.configs("a", by=["data.noise", "data.a"])
    text = figures.caption(rows, 0.95, pooled)
    # shared data: every point is fits of one dataset, so there are no error bars, and the caption says why
    assert "fits on one dataset" in text and "fitting variance" in text and "averaged over fit.fail" in text
    assert "CI" not in text
    assert figures.log_scale([0.01, 0.1, 1.0]) and not figures.log_scale([1.0, 2.0])
    assert not figures.log_scale(["scale", 0.05]) and not figures.log_scale([-1.0, 100.0])
    assert figures.log_scale([0, 0.01, 1.0]) and not figures.log_scale([0, 0.1, 1.0])
    sweep_dir = three_axes.dir / "figures" / "sweep"
    assert {"heatmap_a.png", "a_vs_data_noise.png", "a_vs_data_a.png"} <= {p.name for p in sweep_dir.iterdir()}
    own = {p.name for p in (three_axes.dir / "figures").glob("*.png")}
    assert own == {"metrics_by_data_a.png", "metrics_by_data_noise.png", "metrics_by_fit_fail.png"}


def test_heatmap_marks_failed_cells_and_panels_per_other_axis(three_axes, tmp_path, monkeypatch):
    texts, titles = [], []
    plt = figures.pyplot()
    real = plt.subplots

    def spy(*args, **kw):
        fig, axs = real(*args, **kw)
        for ax in axs.flat:
            monkeypatch.setattr(ax, "text", lambda *a, _t=ax.text, **k: (texts.append(a[2]), _t(*a, **k))[1])
            monkeypatch.setattr(ax, "set", lambda _s=ax.set, **k: (titles.append(k.get("title")), _s(**k))[1])
        return fig, axs

    monkeypatch.setattr(plt, "subplots", spy)
    figures.heatmap(three_axes, "metrics.a", "data.noise", "data.a", tmp_path / "h.png", maximize=True)
    assert titles == ["fit.fail=False", "fit.fail=True"]
    assert sum(t.startswith("failed (2)") for t in texts) == 6 and sum("n=2" in t for t in texts) == 6


def test_report_html_links_resolve(three_axes):
    page = three_axes.dir / "report.html"
    html = page.read_text()

    class Links(HTMLParser):
        found = []

        def handle_starttag(self, tag, attrs):
            self.found += [v for k, v in attrs if k in ("href", "src")]

    parser = Links()
    parser.feed(html)
    assert len(parser.found) > 10
    for link in parser.found:
        assert not link.startswith(("/", "http")) and (page.parent / link).is_file(), link
    assert "Does least squares recover the slope" in html
    assert "RuntimeError: this fit was asked to fail" in html and "run.log" in html
    assert "sweep run" in html and "data.a=2.0" in html and "95% CI" in html
    assert re.search(r"numpy \d", html) and "git commit" in html or "versions" in html


def test_report_direction_comes_from_the_flag_or_the_spec_for_its_own_metric(three_axes, capsys):
    root = str(three_axes.dir)
    assert main(["report", root]) == 0  # the spec's metric and direction
    assert "best metrics.a" in capsys.readouterr().out
    assert main(["report", root, "--metric", "b"]) == 2
    assert "say --maximize or --minimize for b" in capsys.readouterr().err
    assert main(["report", root, "--metric", "b", "--minimize"]) == 0
    assert main(["report", root, "--metric", "metrics.a"]) == 0  # the spec's metric, its direction


def test_pinned_axis_drops_out_of_report_axes(tmp_path, ray_session, caplog):
    spec = write(tmp_path, LINEAR + "sweep: {data.a: [1.0, 2.0], data.noise: [0.1, 0.2]}\n"
                 "report: {metric: metrics.a, maximize: true, axes: [data.a, data.noise]}\n")
    with caplog.at_level("WARNING", logger="sweeper"):
        res = sweeper.run(spec, ["data.a=2.0"], out=tmp_path / "out", progress=False)
    assert "pins data.a" in caplog.text and res.spec["report"]["axes"] == ["data.noise"]
    assert res.counts()["ok"] == 2 and (res.dir / "figures" / "sweep" / "a_vs_data_noise.png").is_file()


def test_unknown_report_metric_is_one_line_after_the_results_are_saved(tmp_path, ray_session, capsys):
    spec = write(tmp_path, LINEAR + "report: {metric: metrics.nope}\n")
    assert main(["run", spec, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sweep: error:") and "spec.yaml:6: report.metric: no metric 'metrics.nope'" in err
    assert "the results have: metrics.a, metrics.b, metrics.data_sum" in err
    (root,) = (tmp_path / "out" / "spec").iterdir()
    assert sweeper.load(root).counts()["ok"] == 1 and (root / "report.html").is_file()


@pytest.mark.parametrize("name, content, fragment", [
    ("figure.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
    ("dup.yaml", (LINEAR + "seed: 3\n").encode(), "dup.yaml:6: duplicate key 'seed' (first set on line 2)"),
    ("nested.yaml", (LINEAR + "sweep:\n  data.a: [1]\n  data.a: [2]\n").encode(), "nested.yaml:8: duplicate key"),
])
def test_bad_spec_files_are_one_line_errors(tmp_path, capsys, name, content, fragment):
    (tmp_path / name).write_bytes(content)
    assert main(["run", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and name in err[0] and not (tmp_path / "out").exists()


def test_a_directory_as_spec_is_a_one_line_error(tmp_path, capsys):
    assert main(["plan", str(tmp_path)]) == 2
    assert "is a directory, not a spec file" in capsys.readouterr().err


def test_status_of_a_study_name_directory_lists_its_sweeps(three_axes, capsys):
    assert main(["status", str(Path(three_axes.dir).parent)]) == 0
    out = capsys.readouterr().out
    assert f"12 ok, 12 failed, 0 pending of 24 runs in {three_axes.dir}" in out and "Does least squares" in out
    assert main(["status", str(Path(three_axes.dir).parent.parent)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def _sim(data, seed):
    return {"x": __import__("numpy").random.default_rng(seed).normal(size=data["n"])}


def _fit(dataset, params, seed):
    return {"metrics": {"mean": float(dataset["x"].mean()) * params["k"]}}


def test_report_of_a_sweep_whose_study_lived_in_a_script(tmp_path, ray_session, capsys):
    study = __import__("types").SimpleNamespace(simulate=_sim, fit=_fit, __name__="notebook_study")
    res = sweeper.run({"study": study, "name": "nb", "seed": 1, "data": {"n": 20}, "fit": {"k": 1},
                       "sweep": {"fit.k": [1, 2]}, "repeats": 2}, out=tmp_path, progress=False)
    assert main(["report", str(res.dir), "--metric", "mean", "--maximize"]) == 0
    out = capsys.readouterr().out
    assert "metrics_by_fit_k.png" in out and "fit.k=2" in out


def _many_metrics_fit(dataset, params, seed):
    return {"metrics": {f"m{i}": float(i + params["k"]) for i in range(9)}}


def test_every_link_on_the_page_points_to_a_file(tmp_path, ray_session):
    """A sweep without report.metric has no figures/sweep/summary.csv: the page must not link to it (the
    metrics past the first six are then named as being in results.parquet)."""
    import types

    import numpy as np

    study = types.SimpleNamespace(simulate=lambda data, seed: {"x": np.zeros(2)}, fit=_many_metrics_fit,
                                  __name__="many")
    res = sweeper.run({"study": study, "name": "many", "seed": 1, "data": {}, "fit": {"k": 0},
                       "sweep": {"fit.k": [0, 1]}}, out=tmp_path, progress=False)
    page = res.paths.report_html.read_text()
    links = re.findall(r'(?:href|src)="([^"#:]+)"', page)
    assert links and all((res.dir / h).is_file() for h in links), [h for h in links if not (res.dir / h).is_file()]
    assert "3 more metrics in results.parquet" in page


def test_a_spec_whose_metric_has_no_better_direction_ranks_nothing(tmp_path, ray_session, capsys):
    spec = write(tmp_path, LINEAR + "sweep: {data.a: [1.0, 2.0]}\nreport: {metric: metrics.a, direction: none}\n")
    res = sweeper.run(spec, out=tmp_path / "out", progress=False)
    assert res.spec["report"] == {"metric": "metrics.a", "maximize": None}
    page = (res.dir / "report.html").read_text()
    assert "Best configuration" not in page and "Findings" not in page and "Ranked by" not in page
    assert main(["report", str(res.dir)]) == 0
    assert "best metrics.a" not in capsys.readouterr().out


def test_sweep_report_names_an_unknown_axis_or_metric_in_one_line(three_axes, capsys):
    for flags, words in ((["--axes", "data.a", "data.nope"], "--axes: 'data.nope' is not a swept axis"),
                         (["--metric", "metrics.nope"], "--metric: no metric 'metrics.nope'; the results have")):
        assert main(["report", str(three_axes.dir), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_sweep_report_elsewhere_finds_the_study_beside_its_spec_and_keeps_the_findings(tmp_path):
    """`sweep report DIR` run from another folder imports the study from beside the spec the sweep ran from,
    as `sweep run` did, so report.html keeps the study's findings."""
    import os
    import subprocess
    import sys

    from tests import REPO

    (tmp_path / "beside.py").write_text(textwrap.dedent('''\
        import sweeper
        from tests.fixtures.linear import fit, simulate
        study = sweeper.Study("beside", simulate, fit,
                              findings=(sweeper.Finding("metrics.a", "fit.bootstrap", False),))
        '''))
    (tmp_path / "beside.yaml").write_text("study: beside\nseed: 2\nrepeats: 3\ndata_mode: independent\n"
                                          "data: {n: 30, a: 1.0, b: 0.0, noise: 0.2}\nfit: {bootstrap: false}\n"
                                          "sweep: {fit.bootstrap: [false, true]}\n")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}  # a local Ray of its own
    run = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", "beside.yaml", "--out", "out", "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    root = run.stdout.strip().splitlines()[-1]
    (tmp_path / root / "report.html").unlink()
    again = subprocess.run([sys.executable, "-m", "sweeper.cli", "report", str(tmp_path / root)], cwd="/", env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    page = (tmp_path / root / "report.html").read_text()
    assert "cannot be imported" not in again.stderr and "fit.bootstrap True − False" in page
