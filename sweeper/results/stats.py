"""Statistics behind SweepResult: per-configuration means with Student-t intervals, paired and Welch
differences. Runs on one dataset are not independent draws of the data: where a group holds several
datasets and several runs on some of them, the unit of the interval is the dataset mean."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeper.columns import key_of
from sweeper.records import MIXED, ONE_DATASET, ConfigRow, Difference, Interval, RunStatus

SD = pc.VarianceOptions(ddof=1)


def t_interval(mean: float, sd: float, n: int, ci: float) -> tuple[float, float, float]:
    """(sem, low, high) of a mean of n values with sample sd; NaN where n < 2."""
    if n < 2 or sd is None or not math.isfinite(sd):
        return math.nan, math.nan, math.nan
    from scipy import (
        stats,  # here, not at import: every Ray worker imports the engine, few need SciPy
    )

    sem = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + ci / 2, n - 1)) * sem
    return sem, mean - half, mean + half


def _by_group(table: pa.Table, keys: list, aggs: list, n_groups: int, names: list) -> dict:
    """{name: list over groups 0..n_groups-1} of a group_by aggregation (None where a group has no rows)."""
    out = {name: [None] * n_groups for name in names}
    if table.num_rows == 0:
        return out
    agg = table.group_by(keys).aggregate(aggs)
    for row in agg.to_pylist():
        for name in names:
            out[name][row["_group"]] = row[name]
    return out


def _status_counts(runs: pa.Table, n_groups: int) -> dict:
    counts = {s: [0] * n_groups for s in ("ok", "failed", "pending")}
    for g, s in zip(runs.column("_group").to_pylist(), runs.column("status").to_pylist()):
        counts[s if s in counts else "failed"][g] += 1
    return counts


def describe(runs: pa.Table, values: list, by: list, metrics: list, ci: float, averaged_over: str | None,
             mixed=()) -> list:
    """One ConfigRow per group (`values`: each group's values of the axes `by`): n, n_failed, n_pending,
    n_datasets, ci_unit and per metric an Interval; `runs` has _group, status, data_key and the metric columns.
    `mixed`: the groups that pool several data configurations (no interval: their datasets are no replicates)."""
    n_groups = len(values)
    counts = _status_counts(runs, n_groups)
    ok = runs.filter(pc.equal(runs.column("status"), RunStatus.OK.value))
    ds = _by_group(ok, ["_group"], [("data_key", "count_distinct")], n_groups, ["data_key_count_distinct"])
    n_datasets = [d or 0 for d in ds["data_key_count_distinct"]]
    units = [MIXED if g in mixed else ci_unit(n, d) for g, (n, d) in enumerate(zip(counts["ok"], n_datasets))]
    per_metric = {m.removeprefix("metrics."): _metric_stats(ok, m, n_groups, units, ci) for m in metrics}
    split = {m.removeprefix("metrics."): _variance_split(ok, m, units) for m in metrics}
    return [ConfigRow(dict(zip(by, values[g])), counts["ok"][g], counts["failed"][g], counts["pending"][g],
                      n_datasets[g], units[g],
                      {name: Interval(*s[g][:5], counts["ok"][g], units[g], ci, n_datasets[g], s[g][5],
                                      counts["ok"][g] - s[g][6] - s[g][5], *split[name].get(g, (math.nan,) * 2))
                       for name, s in per_metric.items()}, averaged_over)
            for g in range(n_groups)]


def _variance_split(ok: pa.Table, m: str, units: list) -> dict:
    """{group: (data variance, fitting variance)} of metric `m` where the group's runs are crossed (several
    datasets, several fits on some: unit "datasets"), by `variance_components` with datasets as groups."""
    crossed = {g for g, u in enumerate(units) if u == "datasets"}
    if not crossed or not ok.num_rows:
        return {}
    by: dict = {}
    for g, key, v in zip(*(ok.column(c).to_pylist() for c in ("_group", "data_key", m))):
        if g in crossed and v is not None:
            by.setdefault(g, ([], []))
            by[g][0].append(v)
            by[g][1].append(key)
    parts = {g: variance_components(values, keys) for g, (values, keys) in by.items()}
    return {g: (p["var_between"], p["var_within"]) for g, p in parts.items()}


def ci_unit(n: int, n_datasets: int) -> str:
    """What a configuration's interval is over: dataset means (several datasets, several runs on some),
    fits on one dataset (no interval), or runs."""
    if n_datasets > 1 and n > n_datasets:
        return "datasets"
    return ONE_DATASET if n_datasets == 1 and n > 1 else "runs"


def _metric_stats(ok: pa.Table, m: str, n_groups: int, units: list, ci: float) -> list:
    """Per group (mean, sd, sem, low, high, NaNs, values) of metric `m` over the group's unit (`units`)."""
    ok, nans = _nan_as_null(ok, m, n_groups)  # a fit may say "no value" with NaN: left out, and counted
    stats = lambda c: [(c, "mean"), (c, "stddev", SD), (c, "count"), (c, "min"), (c, "max")]  # noqa: E731
    names = lambda c: [f"{c}_{s}" for s in ("mean", "stddev", "count", "min", "max")]  # noqa: E731
    per_run = _by_group(ok, ["_group"], stats(m), n_groups, names(m))
    means = ok.group_by(["_group", "data_key"]).aggregate([(m, "mean")]) if ok.num_rows else ok
    means = means.rename_columns(["_m" if c == f"{m}_mean" else c for c in means.column_names])
    per_data = _by_group(means, ["_group"], stats("_m"), n_groups, names("_m"))
    out = []
    for g in range(n_groups):
        src, p = (per_data, "_m") if units[g] == "datasets" else (per_run, m)
        mean, sd, n = src[f"{p}_mean"][g], src[f"{p}_stddev"][g], src[f"{p}_count"][g] or 0
        if n > 1 and src[f"{p}_min"][g] == src[f"{p}_max"][g]:
            sd = 0.0  # equal values: no spread (the sum of squares leaves rounding, e.g. 1.4e-17)
        # fits on one dataset say nothing about other datasets: their spread is the fitting SD, no CI
        interval = (math.nan,) * 3 if units[g] in (ONE_DATASET, MIXED) else t_interval(mean, sd, n, ci)
        out.append((math.nan if mean is None else mean, math.nan if sd is None else sd, *interval, nans[g],
                    per_run[f"{m}_count"][g] or 0))
    return out


def _nan_as_null(ok: pa.Table, metric: str, n_groups: int) -> tuple[pa.Table, list]:
    """The table with the metric's NaNs as nulls (which Arrow's aggregations skip), and NaNs per group."""
    col = ok.column(metric)
    if not pa.types.is_floating(col.type) or not ok.num_rows:
        return ok, [0] * n_groups
    nan = pc.fill_null(pc.is_nan(col), False)
    counts = [0] * n_groups
    for g, is_nan in zip(ok.column("_group").to_pylist(), nan.to_pylist()):
        counts[g] += is_nan
    cleaned = pc.if_else(nan, pa.scalar(None, col.type), col)
    return ok.set_column(ok.column_names.index(metric), metric, cleaned), counts


def mean_ci(values, ci: float, clusters=None) -> dict:
    """Mean of `values` with a t interval and the p value of mean = 0; with `clusters` (e.g. data keys)
    holding several values each, the unit is the cluster mean."""
    values = np.asarray(values, float)
    unit = "pairs"
    if clusters is not None and len(set(clusters)) > 1 and len(set(clusters)) < len(values):
        values = cluster_means(values, clusters)[1]
        unit = "datasets"
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    sd = float(values.std(ddof=1)) if n > 1 else math.nan
    from scipy import stats

    _, low, high = t_interval(mean, sd, n, ci)
    p = float(stats.ttest_1samp(values, 0.0).pvalue) if n > 1 and sd > 0 else math.nan
    return {"n": n, "ci_unit": unit, "diff": mean, "ci_low": low, "ci_high": high, "p_value": p}


def welch(a, b, ci: float) -> dict:
    """Difference of means a - b with Welch's t interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    out = {"n": len(a) + len(b), "ci_unit": "runs", "diff": float(a.mean() - b.mean()) if len(a) and len(b) else math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    if len(a) > 1 and len(b) > 1 and (a.std() > 0 or b.std() > 0):
        from scipy import stats

        res = stats.ttest_ind(a, b, equal_var=False)
        low, high = res.confidence_interval(ci)
        out.update(ci_low=float(low), ci_high=float(high), p_value=float(res.pvalue))
    return out


def _arm(records: list, metric: str, match: list) -> dict:
    """The records with a value of `metric` (not None, not NaN), by their match key."""
    return {key_of([r[m] for m in match]): r for r in records
            if r.get(metric) is not None and not (isinstance(r[metric], float) and math.isnan(r[metric]))}


def difference(base: list, arm: list, metric: str, match: list, ci: float, by_repeat: bool = False) -> dict:
    """The arm minus the baseline, over the right unit. Matched pairs that share dataset and fit seed: a paired
    t over the differences (their dataset means where datasets carry several pairs). Otherwise arms on the
    same datasets: a paired t over the datasets' mean differences; arms on different datasets: Welch over
    dataset means (over runs where each dataset has one run). Everything on one dataset: the difference and
    the fitting SD, with no interval and no p (fits of one dataset say nothing of other datasets).
    `by_repeat`: the arms are paired by repeat though on datasets of their own (a design that gives each repeat
    one object, scan and probe, and each arm its own noise): a paired t over the matched differences."""
    b, a = _arm(base, metric, match), _arm(arm, metric, match)
    common = [k for k in a if k in b]
    if by_repeat and common:
        res = {**mean_ci([a[k][metric] - b[k][metric] for k in common], ci), "test": "paired t by repeat"}
    elif common and all(a[k]["data_key"] == b[k]["data_key"] and a[k]["seed_fit"] == b[k]["seed_fit"]
                      for k in common):
        diffs, keys = [a[k][metric] - b[k][metric] for k in common], [a[k]["data_key"] for k in common]
        res = one_dataset(diffs) if len(set(keys)) == 1 else {**mean_ci(diffs, ci, keys), "test": "paired t"}
    else:
        res = _unpaired(list(a.values()), list(b.values()), metric, ci)
    return {"fit_sd": math.nan, **res, "n_value": len(a), "n_baseline": len(b)}


def cluster_means(values, clusters) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct clusters, sorted; the mean of `values` in each)."""
    labels, idx = np.unique(np.asarray(clusters), return_inverse=True)
    return labels, np.bincount(idx, weights=np.asarray(values, float)) / np.bincount(idx)


def _dataset_means(records: list, metric: str) -> dict:
    labels, means = cluster_means([r[metric] for r in records], [r["data_key"] for r in records])
    return dict(zip(labels.tolist(), means.tolist()))


def _unpaired(arm: list, base: list, metric: str, ci: float) -> dict:
    a, b = _dataset_means(arm, metric), _dataset_means(base, metric)
    if set(a) == set(b) and len(a) == 1:
        spread = np.std([r[metric] for r in arm], ddof=1) if len(arm) > 1 else math.nan
        return {**one_dataset([a[k] - b[k] for k in a]), "fit_sd": float(spread)}
    if set(a) == set(b):
        res = mean_ci([a[k] - b[k] for k in a], ci)
        return {**res, "ci_unit": "datasets", "test": "paired t over datasets"}
    several = len(a) < len(arm) or len(b) < len(base)
    res = welch(list(a.values()), list(b.values()), ci) if several else \
        welch([r[metric] for r in arm], [r[metric] for r in base], ci)
    return {**res, "ci_unit": "datasets" if several else "runs",
            "test": "Welch t over dataset means" if several else "Welch t"}


def holm(p_values: list) -> list:
    """Holm's step-down adjusted p values (family-wise error over the finite ones; NaN stays NaN)."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if p is not None and math.isfinite(p))
    out, running = [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        out[i] = running
    return out


def one_dataset(diffs: list) -> dict:
    """A difference measured on one dataset: its mean and the fitting SD; no interval, no p."""
    d = np.asarray(diffs, float)
    return {"n": len(d), "ci_unit": ONE_DATASET, "diff": float(d.mean()) if len(d) else math.nan,
            "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
            "fit_sd": float(d.std(ddof=1)) if len(d) > 1 else math.nan, "test": "none (one dataset)"}


def compare_rows(records: list, metric: str, axis: str, baseline, keep: list, match: list, ci: float,
                 averaged_over: str, by_repeat: bool = False) -> list[Difference]:
    """One Difference per (kept axes, value of `axis` other than baseline): the difference to the baseline."""
    groups: dict = {}
    for r in records:
        groups.setdefault(key_of([r[k] for k in keep]), []).append(r)
    rows = []
    for members in groups.values():
        base = [r for r in members if key_of(r[axis]) == key_of(baseline)]
        levels = {key_of(r[axis]): r[axis] for r in members}
        for level_key, level in levels.items():
            if level_key == key_of(baseline):
                continue
            arm = [r for r in members if key_of(r[axis]) == level_key]
            rows.append(Difference({k: members[0][k] for k in keep}, axis, level, baseline, metric,
                                   averaged_over=averaged_over,
                                   **difference(base, arm, metric, match, ci, by_repeat)))
    return rows


def variance_components(values, groups) -> dict:
    """Split the variance of `values` into between-group and within-group parts.

    One-way random-effects ANOVA (method of moments): within = MS_within, between =
    (MS_between - MS_within) / n0 (floored at 0), n0 = (N - sum n_i^2 / N) / (G - 1) for unequal
    group sizes. With crossed data, groups are datasets: between = data variance, within = fitting
    variance. A part that the design cannot estimate (one group; or one value per group, where the spread of
    the values mixes both) is NaN, and so is the share; `var_total` is then the values' own variance.
    """
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    keep = np.isfinite(values)
    values, groups = values[keep], groups[keep]
    labels, idx = np.unique(groups, return_inverse=True)
    g, n = len(labels), len(values)
    sizes = np.bincount(idx, minlength=g)
    means = np.bincount(idx, weights=values, minlength=g) / np.maximum(sizes, 1)
    grand = values.mean() if n else np.nan
    ss_within = float(((values - means[idx]) ** 2).sum())
    ss_between = float((sizes * (means - grand) ** 2).sum())
    within = ss_within / (n - g) if n > g else np.nan
    if g > 1 and np.isfinite(within):
        n0 = (n - (sizes ** 2).sum() / n) / (g - 1)
        between = max((ss_between / (g - 1) - within) / n0, 0.0)
    else:
        between = np.nan
    if np.isfinite(between):
        total = between + within
    else:  # one of the parts is not estimable: the total is the values' own variance
        total = float(values.var(ddof=1)) if n > 1 else np.nan
    return {"groups": g, "n": n, "var_between": float(between), "var_within": float(within),
            "var_total": float(total), "share_between": float(between / total) if total and np.isfinite(between)
            else np.nan}
