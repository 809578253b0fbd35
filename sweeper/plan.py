"""Sweep expansion: the runs of a spec, their data keys, seeds and content-hash ids."""
from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pydantic

from .errors import SpecError
from .hashing import canonical_json, short_hash
from .spec import Spec, set_dotted
from .study import validated
from .values import table_from_columns


@dataclass
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
                   "params": [canonical_json({"data": r.data, "fit": r.fit}) for r in self.runs]}
        return table_from_columns(columns)


def _seed(seed: int, *words) -> int:
    """A 63-bit seed from SeedSequence(seed) spawned at a position given by content-hash words."""
    key = tuple(int(w, 16) if isinstance(w, str) else int(w) for w in words)
    ss = np.random.SeedSequence(seed, spawn_key=key)
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _points(spec: Spec) -> list[dict]:
    """Every point of product(sweep) x zip (x sessions), as {dotted key: value}."""
    axes = dict(spec.sweep)
    if spec.sessions:
        axes = {"session": list(spec.sessions), **axes}
    keys = list(axes)
    zipped = list(zip(*spec.zip.values())) if spec.zip else [()]
    points = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        for z in zipped:
            points.append({**dict(zip(keys, combo)), **dict(zip(spec.zip, z))})
    return points


def expand(spec: Spec) -> Plan:
    """The runs: points x repeats, with data keys shared as the data mode says."""
    version = spec.study.version or "0"
    runs, seen, checked = [], set(), {}
    for point in _points(spec):
        session = point.get("session")
        tree = _tree(spec, point, checked)
        data_hash = short_hash({"session": session, "data": tree["data"]}, 16)
        fit_hash = short_hash(tree["fit"], 16)
        for rd in range(spec.repeats_data):
            seed_data = _seed(spec.seed, data_hash, rd)
            data_key = short_hash({"study": spec.study_name, "version": version, "data": tree["data"],
                                   "session": session, "seed": seed_data}, 16)
            for rf in range(spec.repeats_fit):
                # paired: every fit arm at this data point and repeat gets the same seed (common random numbers)
                words = (data_hash, rd, fit_hash, rf, 1) if spec.seeds == "independent" else (data_hash, rd, rf, 2)
                seed_fit = _seed(spec.seed, *words)
                run_id = short_hash({"study": spec.study_name, "version": version, "data": tree["data"],
                                     "fit": tree["fit"], "session": session, "seeds": [seed_data, seed_fit]}, 16)
                if run_id in seen:
                    raise SpecError(f"two runs are identical ({point}); a sweep list repeats a value",
                                    where=spec.path, key="sweep")
                seen.add(run_id)
                runs.append(Run(run_id, data_key, tree["data"], tree["fit"], session, rd, rf, seed_data, seed_fit,
                                point))
    return Plan(spec, runs)


def _tree(spec: Spec, point: dict, checked: dict) -> dict:
    """{"data", "fit"} of a point: the spec's (or session's) params with the point's values set, checked by
    the study's declared models (defaults filled); `checked` caches the validation of equal trees."""
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
            checked[key] = {"data": data, "fit": validated(study.fit_params, tree["fit"], "fit", {"data": data})}
        except pydantic.ValidationError as e:
            raise param_error(e, section, point, spec) from None
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
