"""Sweep expansion: the runs of a spec, their data keys, seeds and content-hash ids."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeper.columns import encode
from sweeper.errors import SpecError
from sweeper.hashing import text_hash
from sweeper.spec.points import Params, Points, first_seen, pair_codes
from sweeper.spec.resolved import Spec
from sweeper.spec.seeds import spawned


@dataclass
class _Pairs:
    """The validated params of a plan (`Params`: data and fit identities) and the (data, fit) pairs its
    points use ([n, 2] indices into them)."""

    params: Params
    pairs: np.ndarray

    def of(self, k: int) -> tuple[dict, dict]:
        """(data params, fit params) of pair k."""
        d, f = self.pairs[k]
        return self.params.params("data", int(d)), self.params.params("fit", int(f))

    def texts(self) -> pa.Array:
        """Each pair's {"data", "fit"} as canonical JSON (composed in Arrow, one string per pair)."""
        data = pa.array([dj for _, dj, _ in self.params.data], pa.string()).take(pa.array(self.pairs[:, 0]))
        fit = pa.array([fj for _, fj in self.params.fit], pa.string()).take(pa.array(self.pairs[:, 1]))
        return pc.binary_join_element_wise('{"data":', data, ',"fit":', fit, "}", "")


@dataclass(slots=True)
class Run:
    """One run, made from the plan's columns when it is handed to the scheduler (runs share their param dicts)."""

    run_id: str
    data_key: str
    data: dict
    fit: dict
    session: str | None
    repeat_data: int
    repeat_fit: int
    seed_data: int
    seed_fit: int
    axes: dict  # the swept/zipped values of this run, by dotted key


@dataclass
class Plan:
    """The runs of a spec as columns, one entry per run in plan order (points x data repeats x fit repeats):
    ids, data keys, repeats and seeds, and for the params the index of the run's point and of its validated
    (data, fit) pair. `runs` / `runs_at` make Run objects only when asked."""

    spec: Spec
    run_id: pa.Array             # string
    data_key: pa.Array           # string
    repeat_data: np.ndarray      # int64
    repeat_fit: np.ndarray
    seed_data: np.ndarray        # int64 (63-bit seeds)
    seed_fit: np.ndarray
    point: np.ndarray            # the run's point (index into the points of product(sweep) x zip)
    pair: np.ndarray             # the run's validated (data, fit) params (index into `params`)
    params: _Pairs
    axes: dict                   # {dotted key (and "session"): (distinct values, value index per point)}

    def __len__(self) -> int:
        return len(self.run_id)

    def run_ids(self) -> list:
        return self.run_id.to_pylist()

    @property
    def data_keys(self) -> list:
        """The distinct data keys, in plan order."""
        return list(dict.fromkeys(self.data_key.to_pylist()))

    def axis_values(self, key: str, rows=None) -> list:
        """The values of a swept key (or "session") for every run (or the runs at `rows`)."""
        values, of_point = self.axes[key]
        points = self.point if rows is None else self.point[np.asarray(rows, dtype=np.int64)]
        return [values[i] for i in of_point[points]]

    def take(self, rows) -> "Plan":
        """The plan of the runs at `rows` (plan positions, in plan order), sharing params and axes."""
        rows = np.asarray(rows, dtype=np.int64)
        at = pa.array(rows)
        return Plan(self.spec, self.run_id.take(at), self.data_key.take(at), self.repeat_data[rows],
                    self.repeat_fit[rows], self.seed_data[rows], self.seed_fit[rows], self.point[rows], self.pair[rows],
                    self.params, self.axes)

    def repeat(self) -> np.ndarray:
        """Each run's repeat in the data mode's unit: its dataset (independent, crossed) or its fit (shared)."""
        return self.repeat_fit if self.spec.data_mode == "shared" else self.repeat_data

    def runs_at(self, rows) -> list:
        """Run objects of the runs at `rows` (plan positions)."""
        rows = np.asarray(rows, dtype=np.int64)
        ids, keys = self.run_id.take(pa.array(rows)).to_pylist(), self.data_key.take(pa.array(rows)).to_pylist()
        axes = {k: self.axis_values(k, rows) for k in self.axes}
        session = axes.get("session", [None] * len(rows))
        out = []
        for j, i in enumerate(rows.tolist()):
            data, fit = self.params.of(self.pair[i])
            out.append(Run(ids[j], keys[j], data, fit, session[j], int(self.repeat_data[i]),
                           int(self.repeat_fit[i]), int(self.seed_data[i]), int(self.seed_fit[i]),
                           {k: v[j] for k, v in axes.items()}))
        return out

    @property
    def runs(self) -> list:
        """Every run as a Run object (small plans, tests; the driver takes only the runs still to do)."""
        return self.runs_at(np.arange(len(self)))

    def table(self) -> pa.Table:
        """plan.parquet: one row per planned run (each column built from the distinct values and an index)."""
        fields, arrays = [], []

        def add(name, field_array):
            fields.append(field_array[0].with_name(name))
            arrays.append(field_array[1])

        add("run_id", (pa.field("run_id", pa.string()), self.run_id))
        add("data_key", (pa.field("data_key", pa.string()), self.data_key))
        add("session", encode("session", self.axis_values("session") if "session" in self.axes
                              else [None] * len(self)))
        for name in ("repeat_data", "repeat_fit", "seed_data", "seed_fit"):
            add(name, (pa.field(name, pa.int64()), pa.array(getattr(self, name), pa.int64())))
        for key, (values, of_point) in self.axes.items():
            if key != "session":
                field, distinct = encode(key, values)
                add(key, (field, distinct.take(pa.array(of_point[self.point]))))
        add("params", (pa.field("params", pa.string()), self.params.texts().take(pa.array(self.pair))))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


MAX_RUNS = 1_000_000  # a bigger grid is refused unless asked for (--max-runs): it is likely a typo


def plan_size(spec: Spec) -> int:
    """How many runs the spec expands to, without expanding it."""
    points = math.prod(len(v) for v in spec.sweep.values()) * (len(next(iter(spec.zip.values()))) if spec.zip
                                                               else 1)
    return points * max(len(spec.sessions), 1) * spec.repeats_data * spec.repeats_fit


def check_size(spec: Spec, max_runs: int | None) -> int:
    n, limit = plan_size(spec), MAX_RUNS if max_runs is None else max_runs
    if n > limit:
        axes = " x ".join(f"{k} ({len(v)})" for k, v in spec.sweep.items()) or "the points"
        raise SpecError(f"the sweep has {n:,} runs ({axes}, repeats {spec.repeats()}), more than the limit of "
                        f"{limit:,}; pass --max-runs {n} (sweeper.run(..., max_runs={n})) to plan it anyway",
                        where=spec.origins.get("sweep", spec.path), key="sweep")
    return n


def _hash(text: str) -> str:
    return text_hash(text, 16)


def expand(spec: Spec, max_runs: int | None = None) -> Plan:
    """The runs: points x repeats, with data keys shared as the data mode says, as columns. A plan larger than
    `max_runs` (default MAX_RUNS) is a SpecError before any work."""
    check_size(spec, max_runs)
    points = Points.of(spec)
    params = Params(spec, points)
    pair_of_point, pair_first = first_seen(pair_codes(params.data_of_point, params.fit_of_point))
    pairs = np.stack([params.data_of_point[pair_first], params.fit_of_point[pair_first]], axis=1)
    rd_n, rf_n = spec.repeats_data, spec.repeats_fit
    point = np.repeat(np.arange(points.count, dtype=np.int64), rd_n * rf_n)
    repeat_data = np.tile(np.repeat(np.arange(rd_n, dtype=np.int64), rf_n), points.count)
    repeat_fit = np.tile(np.arange(rf_n, dtype=np.int64), points.count * rd_n)
    pair = pair_of_point[point]
    ids = _Ids(spec, params)
    seed_data, data_key = ids.data_seeds(pairs[pair, 0], repeat_data)
    seed_fit = ids.fit_seeds(pairs[pair], repeat_data, repeat_fit)
    run_id = ids.run_ids(pairs[pair], seed_data, seed_fit)
    _check_distinct(run_id, point, points, spec)
    return Plan(spec, run_id, data_key, repeat_data, repeat_fit, seed_data, seed_fit, point, pair,
                _Pairs(params, pairs), {k: (list(v), points.index(k)) for k, v in points.axes.items()})


def _check_distinct(run_id: pa.Array, point: np.ndarray, points: Points, spec: Spec) -> None:
    if pc.count_distinct(run_id).as_py() == len(run_id):
        return
    ids, seen = run_id.to_pylist(), set()
    for i, rid in enumerate(ids):
        if rid in seen:
            values = points.values(int(point[i]), points.axes)
            raise SpecError(f"two runs are identical ({values}); a sweep list repeats a value", where=spec.path,
                            key="sweep")
        seen.add(rid)


class _Ids:
    """Run ids, data keys and seeds, from the canonical JSON of each validated data and fit written once: each
    hash's text is composed from those pieces (equal to canonical_json of the whole dict, keys sorted), and a
    seed is computed once per (data, repeat) however many fit arms share it."""

    def __init__(self, spec: Spec, params: Params):
        self.spec, self.data, self.fit = spec, params.data, params.fit
        self.tail = f'"study":{json.dumps(spec.study_name)},"version":{json.dumps(spec.study.version or "0")}}}'
        self.data_hash = np.array([int(_hash(f'{{"data":{dj},"session":{sj}}}'), 16) for _, dj, sj in self.data],
                                  np.uint64)

    def data_seeds(self, data: np.ndarray, repeat_data: np.ndarray) -> tuple[np.ndarray, pa.Array]:
        """(seed_data, data_key) of every run, computed once per (data, repeat)."""
        rd_n = self.spec.repeats_data
        d_n = len(self.data)
        seeds = spawned(self.spec.seed, [np.repeat(self.data_hash, rd_n), np.tile(np.arange(rd_n), d_n)])
        listed = seeds.tolist()
        keys = pa.array([_hash(f'{{"data":{dj},"seed":{listed[d * rd_n + rd]},"session":{sj},{self.tail}')
                         for d, (_, dj, sj) in enumerate(self.data) for rd in range(rd_n)], pa.string())
        at = data * rd_n + repeat_data
        return seeds[at], keys.take(pa.array(at))

    def fit_seeds(self, pairs: np.ndarray, repeat_data: np.ndarray, repeat_fit: np.ndarray) -> np.ndarray:
        """seed_fit of every run. Paired (the default): every fit arm at a data point and repeat gets the same
        seed (common random numbers); independent: each arm its own."""
        rd_n, rf_n = self.spec.repeats_data, self.spec.repeats_fit
        if self.spec.seeds != "independent":
            d_n = len(self.data)
            table = spawned(self.spec.seed, [np.repeat(self.data_hash, rd_n * rf_n),
                                             np.tile(np.repeat(np.arange(rd_n), rf_n), d_n),
                                             np.tile(np.arange(rf_n), d_n * rd_n), np.full(d_n * rd_n * rf_n, 2)])
            return table[(pairs[:, 0] * rd_n + repeat_data) * rf_n + repeat_fit]
        fit_hash = np.array([int(_hash(fj), 16) for _, fj in self.fit], np.uint64)
        codes, first = first_seen(np.stack([pairs[:, 0], repeat_data, pairs[:, 1], repeat_fit], axis=1))
        table = spawned(self.spec.seed, [self.data_hash[pairs[first, 0]], repeat_data[first],
                                         fit_hash[pairs[first, 1]], repeat_fit[first], np.ones(len(first))])
        return table[codes]

    def run_ids(self, pairs: np.ndarray, seed_data: np.ndarray, seed_fit: np.ndarray) -> pa.Array:
        data, fit, tail = self.data, self.fit, self.tail
        return pa.array([_hash(f'{{"data":{data[d][1]},"fit":{fit[f][1]},"seeds":[{sd},{sf}],"session":{data[d][2]},'
                               f'{tail}') for d, f, sd, sf in
                         zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), seed_data.tolist(), seed_fit.tolist())],
                        pa.string())
