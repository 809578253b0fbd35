"""The vocabulary of one run's result, from the worker to a figure: what a fit returns (`FitResult`), a run's
state (`RunStatus`), one run as stored (`RunRecord`, the one place the record format lives), and what the
results API answers with (`Interval`, `ConfigRow`, `Difference`). A leaf: no Ray, no pyarrow."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property

# a run directory's own files: a fit's `files` may not take these names
RESERVED_FILES = frozenset({"config.yaml", "result.json", "arrays.npz", "history.parquet", "run.log"})


class RunStatus(StrEnum):
    """Where a run stands: ok and failed runs have a record; a pending one has none yet."""

    OK = "ok"
    FAILED = "failed"
    PENDING = "pending"


class InvalidFitResult(ValueError):
    """What a fit returned is not a result; the message says why in one line."""


@dataclass(frozen=True)
class FitResult:
    """What `fit` returns: metrics (finite numbers, or NaN for "no value"), and optionally arrays, a history
    ({name: per-epoch values}), files ({plain name: bytes}) and the device it ran on. A plain dict with these
    keys is accepted (`coerce`)."""

    metrics: dict
    arrays: dict | None = None
    history: dict | None = None
    files: dict | None = None
    device: str | None = None

    @classmethod
    def coerce(cls, out) -> "FitResult":
        """A FitResult from what fit returned (a FitResult or a dict); InvalidFitResult says what is wrong."""
        if isinstance(out, FitResult):
            out = {f.name: getattr(out, f.name) for f in fields(out)}
        if not isinstance(out, dict):
            raise InvalidFitResult(f"fit must return a dict with 'metrics', got {type(out).__name__}")
        metrics = out.get("metrics")
        if not isinstance(metrics, dict):
            raise InvalidFitResult("fit's result has no 'metrics' dict")
        for name, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
                raise InvalidFitResult(f"metric {name!r} is a {type(v).__name__}, not a number")
            if math.isinf(float(v)):  # NaN is a fit's "no value" (counted apart in the statistics); inf is a bug
                raise InvalidFitResult(f"metric {name!r} is infinite: {float(v)} (NaN says 'no value')")
        for part in ("arrays", "history", "files"):
            if out.get(part) is not None and not isinstance(out[part], dict):
                raise InvalidFitResult(f"fit's {part!r} must be a dict")
        for name, blob in (out.get("files") or {}).items():
            if not isinstance(blob, bytes) or "/" in name or name.startswith(".") or name in RESERVED_FILES:
                raise InvalidFitResult(f"fit's files must map plain file names (not {sorted(RESERVED_FILES)}) "
                                       f"to bytes; got {name!r}")
        return cls({k: float(v) for k, v in metrics.items()}, out.get("arrays"), out.get("history"),
                   out.get("files"), str(out["device"]) if out.get("device") else None)


@dataclass(frozen=True)
class RunOutcome:
    """What a worker sends back for one run: how it ended, where, in how long, what it printed, and (ok runs)
    what the fit returned. `metrics` of a failed run are what an invalid result still held."""

    status: RunStatus
    attempt: int = 1
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    parts: FitResult | None = None
    node: str | None = None
    device: str | None = None
    duration_s: float | None = None
    log: str = ""

    @classmethod
    def failed(cls, attempt: int, error: str, **where) -> "RunOutcome":
        return cls(RunStatus.FAILED, attempt, error, **where)


RECORD_IDS = ("run_id", "data_key", "status", "error", "duration_s", "attempt", "node", "device", "data_sha256",
              "repeat_data", "repeat_fit", "seed_data", "seed_fit")


@dataclass(frozen=True)
class RunRecord:
    """One run as stored: what it was given (ids, repeats, seeds, data and fit params) and how it ended (status,
    error, attempt, node, device, duration, the dataset's sha256, metrics). `record["data.noise"]`,
    `record["metrics.psnr"]`: a value by its results column. `axes`: the swept values as planned (set by the
    results API, never stored), which those columns show where a study's params model changed one."""

    run_id: str
    status: RunStatus
    data_key: str | None = None
    error: str | None = None
    duration_s: float | None = None
    attempt: int = 1
    node: str | None = None
    device: str | None = None
    data_sha256: str | None = None
    repeat_data: int | None = None
    repeat_fit: int | None = None
    seed_data: int | None = None
    seed_fit: int | None = None
    session: str | None = None
    data: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, run, outcome: RunOutcome, data_sha256: str | None = None) -> "RunRecord":
        """The record of a finished run (the plan's `Run`) from its worker's outcome."""
        return cls(run.run_id, RunStatus(outcome.status), run.data_key, outcome.error, outcome.duration_s,
                   outcome.attempt, outcome.node, outcome.device, data_sha256, run.repeat_data, run.repeat_fit,
                   run.seed_data, run.seed_fit, run.session, run.data, run.fit, dict(outcome.metrics))

    @classmethod
    def from_json(cls, d: dict) -> "RunRecord":
        """A record as a shard (or an old runs/<id>/result.json) holds it; unknown keys are ignored."""
        values = {k: d[k] for k in STORED if d.get(k) is not None}
        metrics = {k: v if type(v) is float else _number(v) for k, v in (d.get("metrics") or {}).items()}
        return cls(**{**values, "status": RunStatus(d["status"]), "attempt": d.get("attempt") or 1,
                      "metrics": metrics})

    def to_json(self) -> dict:
        """The record as a shard holds it (JSON-able; params stay nested)."""
        out = {k: getattr(self, k) for k in RECORD_IDS}
        out["status"] = self.status.value
        return {**out, "session": self.session, "data": self.data, "fit": self.fit, "metrics": self.metrics}

    @cached_property
    def columns(self) -> dict:
        """The record as one results row (`flat_columns`), the planned axis values over it."""
        return {**flat_columns(self.to_json()), **self.axes}

    def __getitem__(self, column: str):
        try:
            return self.columns[column]
        except KeyError:
            raise KeyError(f"{column!r}: run {self.run_id} has no such column") from None

    def get(self, column: str, default=None):
        return self.columns.get(column, default)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.OK


def flat_columns(stored: dict) -> dict:
    """A record as stored (`RunRecord.to_json`) as one results row: ids and status, then data.*, fit.* and
    metrics.* columns. The one flattening: gather runs it on the shards' records without making RunRecords."""
    flat = {k: stored.get(k) for k in RECORD_IDS}
    if stored.get("session") is not None:
        flat["session"] = stored["session"]
    flat.update(_flatten("data", stored.get("data")))
    flat.update(_flatten("fit", stored.get("fit")))
    flat.update({f"metrics.{k}": v for k, v in (stored.get("metrics") or {}).items()})
    return flat


STORED = ("run_id", *RECORD_IDS[1:], "session", "data", "fit")  # what from_json reads beside status and metrics


def _number(value):
    """A stored metric as a float ("nan" as JSON cannot say NaN); what an invalid fit result held, as it was."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        return float(value)
    except ValueError:
        return value


def _flatten(prefix: str, d: dict) -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flatten(f"{prefix}.{k}", v))
        else:
            out[f"{prefix}.{k}"] = v
    return out


ONE_DATASET = "fits on one dataset"  # the unit where every run of a configuration fitted the same dataset
MIXED = "several data configurations"  # a row pooling data settings: its datasets are no replicates, no interval


@dataclass(frozen=True)
class Interval:
    """A mean and its spread, with what the spread is over: a two-sided Student-t interval (`low`, `high`, at
    level `ci`) over `n` units (`unit`: runs, datasets, pairs), or for fits on one dataset the fitting SD and no
    interval. `n_nan`: runs whose value was NaN ("no value"), left out; `n_missing`: ok runs that did not give
    this metric at all."""

    mean: float
    sd: float
    sem: float
    low: float
    high: float
    n: int
    unit: str
    ci: float = 0.95
    n_datasets: int = 0
    n_nan: int = 0
    n_missing: int = 0
    var_data: float = math.nan   # crossed data: the variance between datasets (data variance) ...
    var_fit: float = math.nan    # ... and within a dataset (fitting variance), one-way random-effects ANOVA
    first_stage: int = 0         # precision's two-stage interval: t and SD of the first `first_stage` units

    @property
    def share_data(self) -> float:
        """The data variance's share of the two (NaN where they are not estimable)."""
        total = self.var_data + self.var_fit
        return self.var_data / total if total > 0 else math.nan

    @property
    def has_interval(self) -> bool:
        return self.low is not None and math.isfinite(self.low)

    def words(self) -> str:
        """The mean and what its spread is about, as every page and line says it."""
        if self.unit == ONE_DATASET:
            return (f"{self.mean:.4g}, fitting SD {self.sd:.4g} over {self.n} fits on one dataset (no interval: "
                    "one dataset says nothing of data variance)")
        if self.unit == MIXED:
            return (f"{self.mean:.4g}, averaged over {self.n} runs of several data configurations (no interval: "
                    "their datasets are not replicates of one)")
        if not self.has_interval:
            return f"{self.mean:.4g} (n={self.n}: no interval)"
        over = f"{self.n_datasets} dataset means of {self.n} runs" if self.unit == "datasets" else f"{self.n} runs"
        how = f" (two-stage: the t and SD of the first {self.first_stage})" if self.first_stage else ""
        return f"{self.mean:.4g}, {self.ci:.0%} CI [{self.low:.4g}, {self.high:.4g}] over {over}{how}"


STATS = ("mean", "sd", "sem", "ci_low", "ci_high")


@dataclass(frozen=True)
class ConfigRow:
    """One configuration of `configs()`: its axis values, its runs by status, and per metric an Interval."""

    axes: dict
    n: int
    n_failed: int
    n_pending: int
    n_datasets: int
    ci_unit: str
    stats: dict                     # short metric name -> Interval
    averaged_over: str | None = None

    def stat(self, metric: str) -> Interval:
        """The Interval of a metric ("psnr" or "metrics.psnr")."""
        return self.stats[metric.removeprefix("metrics.")]

    def columns(self, nan_counted=(), missing_counted=(), split=()) -> dict:
        """The row as the table form of `configs()` has it (axes, counts, `<metric>_mean` ... columns);
        `<metric>_nan` for the metrics in `nan_counted` (those with a NaN in any configuration), and
        `<metric>_missing` for those in `missing_counted` (a run without the metric in any)."""
        out = {**self.axes, "n": self.n, "n_failed": self.n_failed, "n_pending": self.n_pending,
               "n_datasets": self.n_datasets, "ci_unit": self.ci_unit}
        for name, s in self.stats.items():
            if name in nan_counted:
                out[f"{name}_nan"] = s.n_nan
            if name in missing_counted:
                out[f"{name}_missing"] = s.n_missing
            if name in split:
                out.update({f"{name}_var_data": s.var_data, f"{name}_var_fit": s.var_fit,
                            f"{name}_share_data": s.share_data})
            out.update({f"{name}_{k}": v for k, v in zip(STATS, (s.mean, s.sd, s.sem, s.low, s.high))})
        if self.averaged_over is not None:
            out["averaged_over"] = self.averaged_over
        return out


@dataclass(frozen=True)
class Difference:
    """One row of `compare()`: `level` of `axis` minus `baseline` in `metric`, within the kept axes (`at`), with
    its interval and test over `ci_unit`; on one dataset the difference and the fitting SD only."""

    at: dict
    axis: str
    level: object
    baseline: object
    metric: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    ci_unit: str
    test: str
    fit_sd: float
    n_value: int
    n_baseline: int
    averaged_over: str = ""
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return math.isfinite(self.ci_low) and (self.ci_low > 0 or self.ci_high < 0)

    def columns(self) -> dict:
        """The row as the table form of `compare()` has it."""
        out = {**self.at, self.axis: self.level, "baseline": self.baseline, "metric": self.metric}
        out.update({k: getattr(self, k) for k in ("fit_sd", "n", "ci_unit", "diff", "ci_low", "ci_high", "p_value",
                                                  "test", "n_value", "n_baseline", "averaged_over")})
        if self.p_holm is not None:
            out["p_holm"] = self.p_holm
        return out
