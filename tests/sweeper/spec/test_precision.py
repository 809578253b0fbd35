"""Precision-targeted repeats by Stein's two-stage procedure: the total against the formula, the rule round by
round, its coverage in a pure simulation and through the engine, the spec section, and the rounds through Ray
(only configurations still short grow; resume runs nothing again)."""
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

import sweeper
from sweeper import SpecError
from sweeper.driver import RayOnDemand
from sweeper.spec import precision

P = {"metric": "metrics.a", "half_width": 0.1, "max_repeats": 200, "min_repeats": 10, "ci": 0.95}


def formula(sd, n1=10, h=0.1, ci=0.95):
    """The smallest N >= n1 with t_{n1-1} sd / sqrt(N) <= h, by brute force (the reference for the total)."""
    return next(n for n in range(n1, 100_000) if stats.t.ppf(0.5 + ci / 2, n1 - 1) * sd / math.sqrt(n) <= h)


def row(n, sd, unit="runs", n_datasets=None):
    return {"n": n, "n_datasets": n if n_datasets is None else n_datasets, "ci_unit": unit, "a_sd": sd,
            "a_mean": 0.0}


def units(rows):
    return precision.config_units(rows, P)


@pytest.mark.parametrize("sd", [0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
def test_the_first_stage_s_sd_fixes_the_total_at_the_formula(sd):
    stages = precision.Stages()
    counts = precision.next_counts(np.array([10]), units([row(10, sd)]), P, stages)
    assert counts[0] == stages.total[0] == formula(sd) and stages.first_n[0] == 10 and stages.first_sd[0] == sd
    reached = precision.stein_half_width(sd, 10, int(counts[0]), 0.95)
    assert reached <= 0.1 and (counts[0] == 10 or precision.stein_half_width(sd, 10, int(counts[0]) - 1, 0.95) > 0.1)
    # the next round found every unit: done, whatever the SD over all of them now is
    assert precision.next_counts(counts, units([row(int(counts[0]), 3 * sd + 1)]), P, stages).tolist() == \
        counts.tolist()


def test_failed_units_are_made_up_and_the_cap_holds():
    p = {**P, "max_repeats": 100}
    stages = precision.Stages()
    rows = [row(10, 5.0),   # needs thousands: capped
            row(10, 0.01),  # tight at the first stage
            row(0, None),   # nothing ran ok: left alone
            row(1, None),   # nine of ten failed: the first stage is made up first
            row(24, 0.3, "datasets", n_datasets=8)]  # crossed: datasets are the unit; two of ten failed
    counts = np.array([10, 10, 10, 10, 10])
    out = precision.next_counts(counts, units(rows), p, stages)
    assert out.tolist() == [100, 10, 10, 19, 10 + formula(0.3, n1=8) - 8]
    assert stages.first_n == {0: 10, 1: 10, 4: 8}
    # the next round: 3 of the crossed configuration's new datasets failed, so 3 more are asked for
    n_got = formula(0.3, n1=8) - 3
    again = precision.next_counts(out, units([row(100, 5.0), row(10, 0.01), row(0, None), row(9, 0.2),
                                              row(3 * n_got, 0.3, "datasets", n_datasets=n_got)]), p, stages)
    assert again.tolist() == [100, 10, 10, 19 + formula(0.2, n1=9) - 9, out[4] + 3] and stages.first_n[3] == 9


def simulate_rule(sigma, h, sequences, rng, fail=0.0, p=P):
    """The rule over `sequences` configurations of normal units N(0, sigma), round by round as the driver runs
    it (units failing with probability `fail`): (the two-stage interval's coverage of 0, the naive t
    interval's over the same units, the mean count)."""
    p = {**p, "half_width": h, "max_repeats": 100_000}
    counts, stages = np.full(sequences, p["min_repeats"]), precision.Stages()
    draws = [rng.normal(0.0, sigma, 10_000) for _ in range(sequences)]
    ok = [rng.random(10_000) >= fail for _ in range(sequences)]
    while True:
        got = [u[:c][k[:c]] for u, c, k in zip(draws, counts, ok)]
        rows = [row(len(g), float(np.std(g, ddof=1)) if len(g) > 1 else None) for g in got]
        grown = precision.next_counts(counts, units(rows), p, stages)
        if (grown == counts).all():
            break
        counts = grown
    two_stage = naive = 0
    for c, g in enumerate(got):
        half = precision.stein_half_width(stages.first_sd[c], stages.first_n[c], len(g), p["ci"])
        two_stage += abs(g.mean()) <= half
        naive += abs(g.mean()) <= stats.t.ppf(0.975, len(g) - 1) * np.std(g, ddof=1) / math.sqrt(len(g))
    return two_stage / sequences, naive / sequences, counts.mean()


@pytest.mark.parametrize("sigma, h, fail", [(1.0, 0.5, 0.0), (0.5, 0.5, 0.0), (1.0, 0.25, 0.1)])
def test_the_rule_covers_at_its_nominal_rate_over_10000_sequences(sigma, h, fail):
    """The two-stage interval covers within 0.95 +- 0.01 (its SE over 10,000 sequences is 0.0022); stopping
    at the first narrow enough interval (the rule before) covered 0.91, and the naive t interval over the
    same units as these still undercovers, so this test can tell the two apart."""
    covered, naive, mean_n = simulate_rule(sigma, h, 10_000, np.random.default_rng(7), fail)
    assert 0.94 <= covered <= 0.96
    if (1.96 * sigma / h) ** 2 > 10:  # most sequences go past their first stage (else the two are one)
        assert naive < covered - 0.005
    assert mean_n >= max(10, (1.96 * sigma / h) ** 2)  # never fewer units than the oracle would need


def test_the_spec_section_is_checked_with_file_and_key(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("study: tests.fixtures.linear\nseed: 1\ndata: {n: 10}\nrepeats: 3\n"
                    "precision:\n  metric: metrics.a\n  half_widht: 0.1\n  max_repeats: 5\n")
    with pytest.raises(SpecError, match=r"s.yaml:7.*precision.half_widht.*did you mean precision.half_width"):
        sweeper.load_spec(spec)
    for bad, key in (("{metric: metrics.a, half_width: -1, max_repeats: 5}", "precision.half_width"),
                     ("{metric: a, half_width: 0.1, max_repeats: 15}", "precision.metric"),
                     ("{metric: metrics.a, half_width: 0.1, max_repeats: 12, min_repeats: 13}", "precision")):
        with pytest.raises(SpecError, match=key):
            sweeper.load_spec(spec, [f"precision={bad}"])
    ok = sweeper.load_spec(spec, ["precision={metric: metrics.a, half_width: 0.1, max_repeats: 30}"])
    assert ok.precision["min_repeats"] == 10 and ok.repeats() == 30  # the plan holds every repeat it may use


@pytest.mark.usefixtures("ray_session")
def test_repeats_are_added_only_where_the_interval_is_too_wide_and_resume_keeps_them(tmp_path, linear_spec):
    spec, count = linear_spec
    # the slope of 30 points with x ~ U(-1, 1) has SD noise * sqrt(3 / 30) (a little more: 1/sum(x^2) varies)
    data = {k: v for k, v in spec["data"].items() if k != "calls"}  # a tmp path in the data would move its seeds
    spec.update(data={**data, "n": 30}, sweep={"data.noise": [0.02, 0.5]}, data_mode="independent")
    spec.pop("repeats")
    p = {"metric": "metrics.a", "half_width": 0.1, "max_repeats": 60}
    res = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False, precision=p)
    done = json.loads((res.dir / "precision.json").read_text())
    used = {c["data.noise"]: c for c in done["configurations"]}
    assert used[0.02]["repeats"] == 10 and used[0.02]["met"]  # tight at its first stage: never grew
    assert used[0.5]["first_stage_units"] == 10 and done["rounds"] == 2  # one first stage, one second
    assert used[0.5]["repeats"] == formula(used[0.5]["first_stage_sd"]) > 10  # Stein's total, exactly
    assert used[0.5]["met"] and used[0.5]["half_width"] <= 0.1
    configs = {r.axes["data.noise"]: r for r in sweeper.load(res.dir).configs("metrics.a")}
    a = configs[0.5].stat("a")  # the interval configs() gives is the two-stage one, not the t over all runs
    assert configs[0.5].n == used[0.5]["repeats"] and a.first_stage == 10 and "two-stage" in a.words()
    assert (a.high - a.low) / 2 == pytest.approx(used[0.5]["half_width"])
    assert (a.high - a.low) / 2 != pytest.approx(stats.t.ppf(0.975, a.n - 1) * a.sd / math.sqrt(a.n))
    plan = pq.read_table(res.dir / "plan.parquet")
    assert plan.num_rows == res.counts()["ok"] == sum(c["repeats"] for c in used.values()) == count()[1]

    def no_ray(self):
        raise AssertionError("a finished precision sweep replays its rounds without Ray")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RayOnDemand, "__call__", no_ray)
        again = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False, precision=p)
    assert count()[1] == plan.num_rows and again.dir == res.dir  # the same rounds replayed, nothing re-run
    assert json.loads((res.dir / "precision.json").read_text())["configurations"] == done["configurations"]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_400_configurations_through_the_engine_cover_at_their_nominal_rate(tmp_path):
    """400 configurations of one distribution (the slope of 30 noisy points; its intercept `b` only names the
    configuration), each repeated to +-0.05: configs()'s two-stage intervals cover the true slope in >= 0.93
    of them (nominal 0.95; the rule before covered 365/400 = 0.91)."""
    spec = {"study": "tests.fixtures.linear", "name": "coverage", "seed": 11, "data_mode": "independent",
            "data": {"n": 30, "a": 1.0, "b": 0.0, "noise": 0.3}, "sweep": {"data.b": [i / 100 for i in range(400)]}}
    p = {"metric": "metrics.a", "half_width": 0.05, "max_repeats": 80}
    res = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False, precision=p)
    rows = list(res.configs("metrics.a"))
    assert len(rows) == 400 and all(r.stat("a").first_stage == 10 for r in rows)
    covered = sum(r.stat("a").low <= 1.0 <= r.stat("a").high for r in rows)
    assert covered / 400 >= 0.93
    assert all((r.stat("a").high - r.stat("a").low) / 2 <= 0.05 for r in rows)
    assert 10 < np.mean([r.n for r in rows]) < 80


@pytest.mark.usefixtures("ray_session")
def test_a_finding_is_repeated_until_its_paired_differences_are_that_tight(tmp_path):
    """`precision: {finding: 0}`: both arms of each comparison grow together to the total the first stage's
    SD of their paired differences fixes, and compare() (so the finding's sentence) gives the two-stage
    interval, no wider than asked."""
    from tests.fixtures import linear

    study = sweeper.Study("lin", linear.simulate, linear.fit, findings=(sweeper.Finding("metrics.a", "fit.bootstrap", False),))
    spec = {"study": study, "name": "paired", "seed": 4, "data_mode": "independent",
            "data": {"n": 30, "a": 1.0, "b": 0.0, "noise": 0.3}, "fit": {"bootstrap": False},
            "sweep": {"data.noise": [0.1, 0.3], "fit.bootstrap": [False, True]}}
    p = {"finding": 0, "half_width": 0.06, "max_repeats": 80}
    res = sweeper.run(spec, out=tmp_path / "out", progress=False, report=False, precision=p)
    done = json.loads((res.dir / "precision.json").read_text())
    assert done["finding"] == 0 and done["metric"] == "metrics.a" and len(done["configurations"]) == 2
    by_noise = {c["data.noise"]: c for c in done["configurations"]}
    for noise, c in by_noise.items():
        assert c["repeats"] == formula(c["first_stage_sd"], h=0.06) and c["met"]
        n = {r.axes["fit.bootstrap"]: r.n for r in res.configs("metrics.a") if r.axes["data.noise"] == noise}
        assert n == {False: c["repeats"], True: c["repeats"]}  # both arms grew together
    assert by_noise[0.3]["repeats"] > by_noise[0.1]["repeats"]
    (d,) = [d for d in res.compare("metrics.a", "fit.bootstrap", False) if d.at["data.noise"] == 0.3]
    assert "two-stage" in d.test and (d.ci_high - d.ci_low) / 2 == pytest.approx(by_noise[0.3]["half_width"])
    assert by_noise[0.3]["half_width"] <= 0.06
    with pytest.raises(SpecError, match=r"precision.finding.*declares 1 finding"):
        sweeper.load_spec({**spec, "precision": {**p, "finding": 1}})
    with pytest.raises(SpecError, match=r"either metric .* or finding"):
        sweeper.load_spec({**spec, "precision": {**p, "metric": "metrics.a"}})


@pytest.mark.usefixtures("ray_session")
def test_shared_data_grows_fits_on_its_one_dataset(tmp_path, linear_spec):
    spec, count = linear_spec
    spec.update(sweep={"data.a": [1.0]}, fit={**spec["fit"], "bootstrap": True})
    spec.pop("repeats")
    res = sweeper.run(spec, out=tmp_path / "out", progress=False,
                      precision={"metric": "metrics.a", "half_width": 0.004, "max_repeats": 40})
    c = json.loads((res.dir / "precision.json").read_text())["configurations"][0]
    assert count()[0] == 1 and c["repeats"] > 10 and c["unit"] == "fits on one dataset"
    page = (res.dir / "report.html").read_text()
    assert "<h2>Precision</h2>" in page and f"<td>{c['repeats']}</td><td>{c['repeats']} (fits on one dataset)" in page


def test_a_metric_the_study_does_not_declare_is_refused_at_load(tmp_path):
    from tests.fixtures import linear

    declared = sweeper.Study("lin", linear.simulate, linear.fit, metrics=("a", "b", "data_sum"))
    spec = {"study": declared, "seed": 1, "data": {"n": 10, "a": 1.0, "b": 0.0, "noise": 0.1}}
    p = {"metric": "metrics.aa", "half_width": 0.1, "max_repeats": 20}
    with pytest.raises(SpecError, match=r"precision.metric.*metrics.aa is not a metric of the study \(did you mean "
                                        r"metrics.a\? it reports metrics.a, metrics.b, metrics.data_sum\)"):
        sweeper.load_spec({**spec, "precision": p})
    assert sweeper.load_spec({**spec, "precision": {**p, "metric": "metrics.b"}}).precision["metric"] == "metrics.b"
    typo = sweeper.Study("lin", linear.simulate, linear.fit, metrics=("a", "b"), findings=(sweeper.Finding("metrics.c"),))
    with pytest.raises(SpecError, match=r"findings\[0\].*metrics.c is not a metric"):
        sweeper.load_spec({**spec, "study": typo})
    undeclared = sweeper.Study("lin", linear.simulate, linear.fit)  # nothing declared: checked after round 1
    assert sweeper.load_spec({**spec, "study": undeclared, "precision": p}).precision["metric"] == "metrics.aa"
