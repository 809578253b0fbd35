"""SweepResult: the one read API over a sweep directory. `sweeper.run` returns one, `sweeper.load` opens one;
reports and the CLI read results only through it (never by path)."""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeper.columns import decode, key_of, override
from sweeper.records import Difference, RunRecord, RunStatus
from sweeper.results import stats
from sweeper.results.rows import Rows
from sweeper.spec import precision
from sweeper.store.sweep_store import SweepStore

PLAN_COLUMNS = {"run_id", "data_key", "session", "repeat_data", "repeat_fit", "seed_data", "seed_fit", "params"}


def load(path, study=None) -> "SweepResult":
    """The results of a sweep directory (outputs/<name>/<sweep_id>); `study` re-simulates unsaved datasets."""
    return SweepResult(SweepStore.open(path), study=study)


class LazyArrays(Mapping):
    """A run's arrays.npz, each array read when asked for."""

    def __init__(self, path: Path):
        self.path = path

    def _names(self) -> list:
        if not self.path.is_file():
            return []
        with np.load(self.path, allow_pickle=False) as f:
            return list(f.files)

    def __getitem__(self, name):
        if name not in self._names():
            raise KeyError(f"{name!r}: this run saved arrays {self._names()}")
        with np.load(self.path, allow_pickle=False) as f:
            return f[name]

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())


@dataclass
class RunResult:
    """One run: its config, metrics, status and error, and (read on demand) history, arrays, files and log."""

    run_id: str
    status: str
    error: str | None
    metrics: dict
    config: dict
    store: SweepStore = field(repr=False)

    @property
    def history(self) -> pa.Table | None:
        return self.store.read_history(self.run_id)

    @property
    def arrays(self) -> LazyArrays:
        return LazyArrays(self.store.paths.arrays(self.run_id))

    @property
    def files(self) -> dict:
        return self.store.run_files(self.run_id)

    @property
    def log(self) -> str:
        return self.store.read_log(self.run_id)


class SweepResult:
    """A finished (or partly finished) sweep: the results table, statistics by configuration, runs, datasets."""

    def __init__(self, store: SweepStore, table: pa.Table | None = None, study=None, figures=(),
                 plan: pa.Table | None = None, spec: dict | None = None):
        """`plan` and `spec` (plan.parquet's table, spec.yaml's mapping) are read from the store unless the
        driver, which holds them, hands them over."""
        self.store, self.paths, self.dir, self.study = store, store.paths, store.root, study
        self.plan = plan if plan is not None else store.read_plan()
        self.spec = spec if spec is not None else store.read_spec()
        self.table = table if table is not None else store.read_results(self.plan.column("run_id").to_pylist())
        self.figures = list(figures)
        self._grouped: dict = {}
        self._levels: dict = {}
        self._decoded: dict = {}

    # -- what was planned and what came back ----------------------------------------------------------------
    @cached_property
    def axes(self) -> list:
        """The swept (and zipped) keys, in the spec's order; `session` first when the spec has sessions."""
        axes = [c for c in self.plan.column_names if c not in PLAN_COLUMNS]
        if any(self.plan.column("session").to_pylist()):
            axes = ["session", *axes]
        return axes

    @property
    def metrics(self) -> list:
        return [c for c in self.table.column_names if c.startswith("metrics.")]

    def to_pandas(self):
        return self.table.to_pandas()

    def counts(self) -> dict:
        status = self.table.column("status").to_pylist() if self.table.num_rows else []
        return {"ok": status.count("ok"), "failed": status.count("failed"),
                "pending": self.plan.num_rows - len(status)}

    @cached_property
    def _runs(self) -> pa.Table:
        """Every planned run, in plan order, with its status ("pending" if it has no result) and metrics."""
        ids = self.plan.column("run_id").to_pylist()
        res = self.table
        pos = {r: i for i, r in enumerate(res.column("run_id").to_pylist())} if res.num_rows else {}
        take = pa.array([pos.get(r) for r in ids], pa.int64())
        cols = {c: self.plan.column(c) for c in ("run_id", "data_key", "repeat_data", "repeat_fit", "seed_fit")}
        status = res.column("status").take(take) if res.num_rows else pa.nulls(len(ids), pa.string())
        cols["status"] = pc.fill_null(status, "pending")
        cols.update({m: res.column(m).take(take) for m in self.metrics})
        return pa.table(cols)

    def _groups(self, axes: list) -> tuple[list, list]:
        """(each configuration's typed values of `axes`, in plan order; the configuration of every plan row),
        grouped once per set of axes."""
        if tuple(axes) not in self._grouped:
            self._grouped[tuple(axes)] = self._group(axes)
        return self._grouped[tuple(axes)]

    def _group(self, axes: list) -> tuple[list, list]:
        values = {a: self._planned(a) for a in axes}
        index, firsts, group = {}, [], []
        for i in range(self.plan.num_rows):
            v = [values[a][i] for a in axes]
            k = key_of(v)
            if k not in index:
                index[k] = len(firsts)
                firsts.append(v)
            group.append(index[k])
        return firsts, group

    # -- statistics -------------------------------------------------------------------------------------
    def configs(self, metric=None, ci: float = 0.95, by: list | None = None) -> Rows:
        """One ConfigRow per configuration: its axis values, n (ok runs), n_failed, n_pending, n_datasets and
        per metric an Interval: mean, sd (ddof 1), sem and a two-sided Student-t CI of the mean (`.table`: the
        same as columns `<metric>_mean`, ...). `by`: keep only these axes (the others are pooled;
        `averaged_over` names them). Runs of one dataset are not independent: where a configuration has
        several datasets and several runs on some of them (crossed data), the CI is over dataset means
        (`ci_unit`)."""
        metrics = self.metric_names(metric)
        by = list(self.axes if by is None else by)
        self.check_axes(by)
        values, group = self._groups(by)
        runs = self._runs.append_column("_group", pa.array(group, pa.int64()))
        pooled = [a for a in self.axes if a not in by]
        rows = stats.describe(runs, values, by, metrics, ci, ", ".join(pooled) if pooled else None,
                              self._mixed(by, pooled))
        if not pooled:
            rows = self._two_stage(rows, ci)
        nan_counted = {n for r in rows for n, s in r.stats.items() if s.n_nan}
        missing_counted = {n for r in rows for n, s in r.stats.items() if s.n_missing}
        split = {n for r in rows for n, s in r.stats.items() if math.isfinite(s.var_data)}
        return Rows(rows, nan_counted=nan_counted, missing_counted=missing_counted, split=split)

    def _two_stage(self, rows: list, ci: float) -> list:
        """The precision metric's intervals as Stein's two-stage procedure gives them (the first stage's t and
        SD over all the units), where `precision:` chose the repeats of these configurations."""
        done = self.precision_rounds()
        name = (done or {}).get("metric", "").removeprefix("metrics.")
        if not done or done.get("finding") is not None or len(done["configurations"]) != len(rows) or \
                name not in (rows[0].stats if rows else {}):
            return rows
        out = []
        for row, c in zip(rows, done["configurations"]):
            if not all(_same(v, c.get(a)) for a, v in row.axes.items()):
                return rows  # not the configurations precision.json describes
            s = row.stats[name]
            if not c.get("first_stage_units") or s.unit not in ("runs", "datasets") or not math.isfinite(s.mean):
                out.append(row)
                continue
            n = s.n_datasets if s.unit == "datasets" else s.n
            half = precision.stein_half_width(c["first_stage_sd"], c["first_stage_units"], n, ci)
            two_stage = dataclasses.replace(s, low=s.mean - half, high=s.mean + half,
                                            first_stage=c["first_stage_units"])
            out.append(dataclasses.replace(row, stats={**row.stats, name: two_stage}))
        return out

    def _mixed(self, by: list, pooled: list) -> set:
        """The groups of `by` that pool runs of several data configurations (a pooled data axis or session
        takes more than one value in them)."""
        data_axes = [a for a in pooled if a.startswith("data.") or a == "session"]
        if not data_axes:
            return set()
        _, coarse = self._groups(by)
        _, fine = self._groups([*by, *data_axes])
        seen: dict = {}
        for g, f in zip(coarse, fine):
            seen.setdefault(g, set()).add(f)
        return {g for g, fines in seen.items() if len(fines) > 1}

    def best(self, metric: str, mode: str = "max", ci: float = 0.95) -> dict | None:
        """The configuration with the best mean `metric`, its CI, n, run ids and the exact overrides
        (`key=value`) that run it alone. None if no configuration has a mean (an ok run with a value)."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode is 'min' or 'max', got {mode!r}")
        metric = self.metric_names(metric)[0]
        configs = self.configs(metric, ci)
        rows = [(i, r) for i, r in enumerate(configs) if r.n > 0 and math.isfinite(r.stat(metric).mean)]
        if not rows:
            return None
        skipped = sum(r.n > 0 for r in configs) - len(rows)  # ok runs, but NaN ("no value") in every one
        index, pick = (max if mode == "max" else min)(rows, key=lambda ir: ir[1].stat(metric).mean)
        s = pick.stat(metric)
        return {"metric": metric, "mode": mode, "axes": pick.axes, "interval": s, "mean": s.mean, "sd": s.sd,
                "ci_low": s.low, "ci_high": s.high, "ci": ci, "n": pick.n, "n_failed": pick.n_failed,
                "n_datasets": pick.n_datasets, "ci_unit": pick.ci_unit,
                "run_ids": self.configurations()[index]["run_ids"], "overrides": self.overrides(pick.axes),
                "skipped": skipped}

    def configurations(self) -> list[dict]:
        """Every configuration in plan order: {"axes": typed values, "overrides": key=value strings, "run_ids"}."""
        values, group = self._groups(self.axes)
        ids = self.plan.column("run_id").to_pylist()
        out = [{"axes": dict(zip(self.axes, v)), "run_ids": []} for v in values]
        for rid, g in zip(ids, group):
            out[g]["run_ids"].append(rid)
        for c in out:
            c["overrides"] = self.overrides(c["axes"])
        return out

    def overrides(self, config: dict) -> list[str]:
        """`key=value` strings that pin every swept axis to the values in `config` (sessions cannot be pinned)."""
        return [override(a, config[a]) for a in self.axes if a != "session"]

    def compare(self, metric: str, axis: str, baseline, by: list | None = None, ci: float = 0.95,
                adjust: str | None = None, pair_by: str | None = None) -> Rows:
        """For every other value of `axis`: a Difference, the mean difference of `metric` to `baseline` with its CI.

        Runs are matched by (the other axes, repeat). Where every matched pair shares its dataset and fit
        seed (paired seeds, `seeds: paired`), the test is a paired t on the differences (on their dataset
        means where datasets carry several pairs); otherwise a paired t over the datasets both arms share, or
        Welch's t over dataset means (over runs where each dataset has one). `ci_unit` and `test` say which.
        Arms fitted on one dataset get the difference and `fit_sd`, no interval and no p value.
        `pair_by="repeat"`: arms on datasets of their own, paired by repeat by design (one object and scan a
        repeat, each arm its own noise): a paired t over the repeat-matched differences.
        `adjust="holm"` adds `p_holm`: Holm's step-down adjustment over every p value of the table (several
        arms or axis values tested at once).
        `by`: the other axes kept apart (default: all of them, one row each); the rest are pooled, matched
        within them, and named in `averaged_over`."""
        metric = self.metric_names(metric)[0]
        self.check_axes([axis])
        others = [a for a in self.axes if a != axis]
        keep = list(others if by is None else by)
        self.check_axes(keep)
        if axis in keep:
            raise ValueError(f"{axis} is the compared axis; it cannot also be in `by`")
        if not self.has_level(axis, baseline):
            levels = self.levels(axis)
            raise ValueError(f"{baseline!r} is not a value of {axis}; values: {sorted(set(map(repr, levels)))}")
        if adjust not in (None, "holm"):
            raise ValueError(f"adjust is None or 'holm', got {adjust!r}")
        if pair_by not in (None, "repeat"):
            raise ValueError(f"pair_by is None or 'repeat', got {pair_by!r}")
        match = [a for a in others if a not in keep] + ["repeat_data", "repeat_fit"]
        pooled = ", ".join(a for a in others if a not in keep)
        rows = stats.compare_rows(self.runs(RunStatus.OK), metric, axis, baseline, keep, match, ci, pooled,
                                  by_repeat=pair_by == "repeat")
        if by is None:
            rows = self._two_stage_differences(rows, ci)
        if adjust == "holm":
            rows = [dataclasses.replace(r, p_holm=q) for r, q in zip(rows, stats.holm([r.p_value for r in rows]))]
        return Rows(rows)

    def _two_stage_differences(self, rows: list, ci: float) -> list:
        """The intervals of the comparisons `precision: {finding: ...}` repeated, as Stein's two-stage procedure
        gives them: the first stage's t and SD of the paired differences over all the pairs."""
        done = self.precision_rounds()
        if not done or done.get("finding") is None or not rows or (rows[0].metric, rows[0].axis) != \
                (done["metric"], done["axis"]) or key_of(rows[0].baseline) != key_of(done["baseline"]):
            return rows
        out = []
        for d in rows:
            target = {**d.at, d.axis: d.level}
            c = next((c for c in done["configurations"] if all(_same(v, c.get(k)) for k, v in target.items())), None)
            if c is None or not c.get("first_stage_units") or not math.isfinite(d.diff):
                out.append(d)
                continue
            half = precision.stein_half_width(c["first_stage_sd"], c["first_stage_units"], d.n, ci)
            out.append(dataclasses.replace(d, ci_low=d.diff - half, ci_high=d.diff + half,
                                           test=f"{d.test}, two-stage (t and SD of the first {c['first_stage_units']})"))
        return out

    def has_level(self, axis: str, value) -> bool:
        """Whether `value` is a planned value of `axis` (as configurations match: 1 == 1.0)."""
        return any(key_of(v) == key_of(value) for v in self.levels(axis))

    def levels(self, axis: str) -> list:
        """The distinct planned values of a swept axis, typed, in first-planned order (decoded once)."""
        self.check_axes([axis])
        if axis not in self._levels:
            self._levels[axis] = list({key_of(v): v for v in self._planned(axis)}.values())
        return self._levels[axis]

    def _planned(self, axis: str) -> list:
        """Every plan row's typed value of `axis` (plan.parquet's column decoded once, shared by the groups,
        the levels and the records)."""
        if axis not in self._decoded:
            self._decoded[axis] = decode(self.plan, axis)
        return self._decoded[axis]

    def contrast(self, metric: str, config: dict, baseline: dict, ci: float = 0.95) -> Difference:
        """`config` minus `baseline` (two configurations, as {axis: value}) in `metric`, over the right unit as
        `compare` chooses it: paired where their runs share dataset and fit seed by repeat, else over the
        datasets they share, else Welch; on one dataset, the difference and the fitting SD only."""
        metric = self.metric_names(metric)[0]
        records = self.runs(RunStatus.OK)

        def members(cfg):
            return [r for r in records if all(key_of(r[a]) == key_of(v) for a, v in cfg.items())]

        diff = stats.difference(members(baseline), members(config), metric, ["repeat_data", "repeat_fit"], ci)
        return Difference({}, "configuration", config, baseline, metric, **diff)

    def runs(self, status=None) -> list[RunRecord]:
        """Every planned run in plan order, as a RunRecord (a pending one from the plan, without metrics);
        `status`: only runs of this RunStatus (or of these). `record["fit.loss"]` is the planned axis value."""
        if status is None:
            return list(self._records)
        wanted = {RunStatus(status)} if isinstance(status, str) else {RunStatus(s) for s in status}
        return [r for r in self._records if r.status in wanted]

    @cached_property
    def _records(self) -> list[RunRecord]:
        stored = self.store.read_records()
        columns = {c: self.plan.column(c).to_pylist() for c in PLAN_COLUMNS}
        axes = {a: self._planned(a) for a in self.axes if a != "session"}
        out = []
        for i, rid in enumerate(columns["run_id"]):
            record = stored.get(rid) or _pending(columns, i)
            out.append(dataclasses.replace(record, axes={a: v[i] for a, v in axes.items()}))
        return out

    def metric_names(self, metric) -> list:
        """Full metric column names ("psnr" -> "metrics.psnr"; None: all); a ValueError lists what exists."""
        if metric is None:
            return self.metrics
        names = [metric] if isinstance(metric, str) else list(metric)
        out = [m if m.startswith("metrics.") else f"metrics.{m}" for m in names]
        missing = [m for m in out if m not in self.metrics]
        if missing:
            raise ValueError(f"no metric {missing[0]!r}; the results have: {', '.join(self.metrics) or '(none yet)'}")
        return out

    def check_axes(self, axes) -> None:
        """A ValueError naming the swept axes if any of `axes` is not one."""
        for a in axes:
            if a not in self.axes:
                raise ValueError(f"{a!r} is not a swept axis; the axes: {', '.join(self.axes) or '(none)'}")

    # -- what the sweep directory says of itself ----------------------------------------------------------
    def provenance(self) -> dict:
        """provenance.json: when and where it ran, the git commit, the spec file, versions ({} if missing)."""
        return self.store.read_json(self.paths.provenance)

    def spec_text(self) -> str:
        """spec.yaml as written: the resolved spec with where each value came from."""
        return self.store.read_spec_text()

    def precision_rounds(self) -> dict | None:
        """What `precision:` repeated, round by round (precision.json), or None without it."""
        return self.store.read_json(self.paths.precision) if self.paths.precision.is_file() else None

    def slurm_jobs(self) -> list[dict]:
        """The SLURM jobs `sweep slurm --submit` launched for this sweep ({job_id, when}), oldest first."""
        return self.store.read_json(self.paths.slurm_jobs, default=[])

    def history(self, run_id: str) -> pa.Table | None:
        """A run's history.parquet (one row per epoch), or None."""
        return self.store.read_history(run_id)

    def log_path(self, run_id: str) -> Path:
        """Where a run's run.log is (written when the run printed or failed)."""
        return self.paths.run_log(run_id)

    # -- runs, datasets, errors -------------------------------------------------------------------------
    def run(self, run_id: str) -> RunResult:
        """One run's config, metrics, status, error, history, arrays, files and log."""
        r = self.store.read_record(run_id)
        if r is None:
            planned = run_id in set(self.plan.column("run_id").to_pylist())
            raise KeyError(f"run {run_id} {'has not run yet' if planned else 'is not in this sweep'}")
        config = {k: getattr(r, k) for k in CONFIG_KEYS}
        return RunResult(run_id, r.status, r.error, r.metrics, config, self.store)

    def dataset(self, data_key: str) -> dict:
        """A dataset's arrays, checked against the sha256 recorded when it was made; simulated again from its
        params and seed where it was not saved (the study must be importable, or given to `load`)."""
        saved = self.store.load_dataset(data_key)
        if saved is not None:
            return saved[0]
        if self.paths.dataset(data_key)[0].is_file():
            raise ValueError(f"dataset {data_key} does not match its recorded sha256 (see the log)")
        return self._simulate_again(data_key)

    def _simulate_again(self, data_key: str) -> dict:
        from sweeper.hashing import arrays_sha256

        keys = self.plan.column("data_key").to_pylist()
        if data_key not in keys:
            raise KeyError(f"no dataset {data_key} in this sweep")
        i = keys.index(data_key)
        params = json.loads(self.plan.column("params")[i].as_py())["data"]
        study = self.study if self.study is not None else self.find_study()
        data = study.simulate(params, self.plan.column("seed_data")[i].as_py())
        recorded = {r["data_key"]: r.get("data_sha256") for r in self.table.select(
            [c for c in ("data_key", "data_sha256") if c in self.table.column_names]).to_pylist()}
        if recorded.get(data_key) and arrays_sha256(data) != recorded[data_key]:
            raise ValueError(f"dataset {data_key} simulated again differs from the one the runs used "
                             "(the study's code changed?)")
        return data

    def find_study(self):
        """The study spec.yaml names, found as `sweep run` found it: in the working directory, then beside the
        spec file it ran from; a SpecError if it does not import here."""
        from sweeper.study import resolve

        spec_path = self.provenance().get("spec_path")
        return resolve(self.spec.get("study"), f"{spec_path}:1" if spec_path else None)

    def errors(self) -> list[dict]:
        """Failed runs grouped by the first line of their error: [{error, n, run_ids}], most frequent first."""
        groups: dict = {}
        if "error" in self.table.column_names:
            failed = self.table.filter(pc.equal(self.table.column("status"), "failed"))
            for rid, err in zip(failed.column("run_id").to_pylist(), failed.column("error").to_pylist()):
                groups.setdefault(error_line(err), []).append(rid)
        return [{"error": e, "n": len(ids), "run_ids": ids}
                for e, ids in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


CONFIG_KEYS = ("run_id", "data_key", "session", "data", "fit", "repeat_data", "repeat_fit", "seed_data", "seed_fit")


def _same(value, stored) -> bool:
    """Whether an axis value equals one read back from precision.json (JSON has no tuples, and floats print alike)."""
    return json.dumps(value, default=str) == json.dumps(stored, default=str)


def _pending(plan: dict, i: int) -> RunRecord:
    """The record of a planned run that has none yet: what it will be given."""
    params = json.loads(plan["params"][i])
    return RunRecord(plan["run_id"][i], RunStatus.PENDING, plan["data_key"][i], attempt=0,
                     repeat_data=plan["repeat_data"][i], repeat_fit=plan["repeat_fit"][i],
                     seed_data=plan["seed_data"][i], seed_fit=plan["seed_fit"][i],
                     session=plan["session"][i] or None, data=params["data"], fit=params["fit"])


def error_line(error: str | None) -> str:
    """The line of an error that says what went wrong: a traceback's final exception line, else the first."""
    lines = [ln.strip() for ln in (error or "").strip().splitlines() if ln.strip()]
    if not lines:
        return "(no error text)"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]
