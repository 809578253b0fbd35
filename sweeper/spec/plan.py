"""Sweep expansion: the runs of a spec, their data keys, seeds and content-hash ids."""
from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pydantic

from sweeper.columns import table_from_columns
from sweeper.errors import SpecError
from sweeper.hashing import canonical_json, text_hash
from sweeper.spec.resolved import Spec, set_dotted
from sweeper.study import validated


@dataclass(slots=True)
class Run:
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
    spec: Spec
    runs: list

    def run_ids(self) -> list:
        return [r.run_id for r in self.runs]

    @property
    def data_keys(self) -> list:
        return list(dict.fromkeys(r.data_key for r in self.runs))

    def table(self) -> pa.Table:
        """plan.parquet: one row per planned run."""
        axes = list(self.runs[0].axes) if self.runs else []
        columns = {"run_id": [r.run_id for r in self.runs], "data_key": [r.data_key for r in self.runs],
                   "session": [r.session for r in self.runs],
                   **{k: [getattr(r, k) for r in self.runs]
                      for k in ("repeat_data", "repeat_fit", "seed_data", "seed_fit")},
                   **{k: [r.axes[k] for r in self.runs] for k in axes if k != "session"},
                   "params": self._params_json()}
        return table_from_columns(columns)

    def _params_json(self) -> list:
        """Each run's {"data", "fit"} as canonical JSON, written once per point (runs share their trees)."""
        texts = {}
        for r in self.runs:
            if (id(r.data), id(r.fit)) not in texts:
                texts[id(r.data), id(r.fit)] = canonical_json({"data": r.data, "fit": r.fit})
        return [texts[id(r.data), id(r.fit)] for r in self.runs]


MAX_RUNS = 1_000_000  # a bigger grid is refused unless asked for (--max-runs): it is likely a typo


def _seed(seed: int, *words) -> int:
    """A 63-bit seed from SeedSequence(seed) spawned at a position given by content-hash words."""
    key = tuple(int(w, 16) if isinstance(w, str) else int(w) for w in words)
    ss = np.random.SeedSequence(seed, spawn_key=key)
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


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


def _points(spec: Spec):
    """Every point of product(sweep) x zip (x sessions), as {dotted key: value}, one at a time."""
    axes = dict(spec.sweep)
    if spec.sessions:
        axes = {"session": list(spec.sessions), **axes}
    keys = list(axes)
    zipped = list(zip(*spec.zip.values())) if spec.zip else [()]
    for combo in itertools.product(*(axes[k] for k in keys)):
        for z in zipped:
            yield {**dict(zip(keys, combo)), **dict(zip(spec.zip, z))}


def _hash(text: str) -> str:
    return text_hash(text, 16)


class _Ids:
    """Run ids, data keys and seeds, from the canonical JSON of each point's data and fit written once: each
    hash's text is composed from those pieces (equal to canonical_json of the whole dict, keys sorted), and a
    seed is computed once per (data point, repeat) however many fit arms share it."""

    def __init__(self, spec: Spec):
        self.spec, self.seeds = spec, {}
        self.tail = f'"study":{json.dumps(spec.study_name)},"version":{json.dumps(spec.study.version or "0")}}}'

    def seed(self, *words) -> int:
        if words not in self.seeds:
            self.seeds[words] = _seed(self.spec.seed, *words)
        return self.seeds[words]

    def point(self, data_json: str, fit_json: str, session) -> tuple:
        sj = json.dumps(session)
        return _hash(f'{{"data":{data_json},"session":{sj}}}'), _hash(fit_json), sj

    def data_key(self, data_json: str, seed_data: int, sj: str) -> str:
        return _hash(f'{{"data":{data_json},"seed":{seed_data},"session":{sj},{self.tail}')

    def run_id(self, data_json: str, fit_json: str, seeds: tuple, sj: str) -> str:
        return _hash(f'{{"data":{data_json},"fit":{fit_json},"seeds":[{seeds[0]},{seeds[1]}],"session":{sj},'
                    f'{self.tail}')


def expand(spec: Spec, max_runs: int | None = None) -> Plan:
    """The runs: points x repeats, with data keys shared as the data mode says. A plan larger than
    `max_runs` (default MAX_RUNS) is a SpecError before any work."""
    check_size(spec, max_runs)
    ids, runs, seen, checked = _Ids(spec), [], set(), {}
    for point in _points(spec):
        session = point.get("session")
        tree, (dj, fj) = _tree(spec, point, checked)
        data_hash, fit_hash, sj = ids.point(dj, fj, session)
        for rd in range(spec.repeats_data):
            seed_data = ids.seed(data_hash, rd)
            data_key = ids.data_key(dj, seed_data, sj)
            for rf in range(spec.repeats_fit):
                # paired: every fit arm at this data point and repeat gets the same seed (common random numbers)
                words = (data_hash, rd, fit_hash, rf, 1) if spec.seeds == "independent" else (data_hash, rd, rf, 2)
                seed_fit = ids.seed(*words)
                run_id = ids.run_id(dj, fj, (seed_data, seed_fit), sj)
                if run_id in seen:
                    raise SpecError(f"two runs are identical ({point}); a sweep list repeats a value",
                                    where=spec.path, key="sweep")
                seen.add(run_id)
                runs.append(Run(run_id, data_key, tree["data"], tree["fit"], session, rd, rf, seed_data, seed_fit,
                                point))
    return Plan(spec, runs)


def _tree(spec: Spec, point: dict, checked: dict) -> dict:
    """({"data", "fit"}, their canonical JSON) of a point: the spec's (or session's) params with the point's
    values set, checked by the study's declared models (defaults filled); `checked` caches equal trees."""
    session = point.get("session")
    tree = copy.deepcopy(spec.sessions[session] if session else {"data": spec.data, "fit": spec.fit})
    for k, v in point.items():
        if k != "session":
            try:
                set_dotted(tree, k, v)
            except (KeyError, TypeError):
                raise SpecError(f"{k} does not exist in session {session!r}", where=spec.path, key=k) from None
    key = canonical_json(tree)
    if key not in checked:
        study, section = spec.study, "data"
        try:
            data = validated(study.data_params, tree["data"], "data")
            section = "fit"
            valid = {"data": data, "fit": validated(study.fit_params, tree["fit"], "fit", {"data": data})}
        except pydantic.ValidationError as e:
            raise param_error(e, section, point, spec) from None
        checked[key] = valid, (canonical_json(valid["data"]), canonical_json(valid["fit"]))
    return checked[key]


def param_error(e, section: str, point: dict, spec: Spec) -> SpecError:
    """A SpecError at the key a pydantic error's loc names, and the file:line that set it (its sweep line if
    the value is swept); an unknown key gets a did-you-mean."""
    err = e.errors()[0]
    key = ".".join([section, *map(str, err["loc"])]) if err["loc"] else section
    model = spec.study.data_params if section == "data" else spec.study.fit_params
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=1)
        msg = f"not a parameter of study {spec.study_name}" + (f"; did you mean {section}.{near[0]}?" if near else "")
    elif "input" in err and not isinstance(err["input"], dict):
        msg = f"{msg}, got {err['input']!r}"
    swept = next((f"{s}.{key}" for s in ("sweep", "zip") if key in point and f"{s}.{key}" in spec.origins), None)
    where = spec.origins.get(swept) or spec.origins.get(key) or spec.origins.get(section) or spec.path
    return SpecError(msg, where=where, key=key)
