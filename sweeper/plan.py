"""Sweep expansion: the runs of a spec, their data keys, seeds and content-hash ids."""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import SpecError
from .hashing import canonical_json, short_hash
from .spec import Spec, import_study, set_dotted
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
    study = import_study(spec.study)
    study_version = str(getattr(study, "__version__", getattr(study, "VERSION", "0")))
    validate = getattr(study, "validate", None)
    runs, seen = [], set()
    for point in _points(spec):
        session = point.get("session")
        base = spec.sessions[session] if session else {"data": spec.data, "fit": spec.fit}
        tree = copy.deepcopy(base)
        for k, v in point.items():
            if k != "session":
                try:
                    set_dotted(tree, k, v)
                except (KeyError, TypeError):
                    raise SpecError(f"{k} does not exist in session {session!r}", where=spec.path, key=k) from None
        if callable(validate):
            try:
                validate(tree["data"], tree["fit"])
            except (ValueError, TypeError, KeyError) as e:
                key = _key_in(str(e), point)
                raise SpecError(f"{e}", where=spec.origins.get(key, spec.path), key=key) from None
        data_hash = short_hash({"session": session, "data": tree["data"]}, 16)
        fit_hash = short_hash(tree["fit"], 16)
        for rd in range(spec.repeats_data):
            seed_data = _seed(spec.seed, data_hash, rd)
            data_key = short_hash({"study": spec.study_name, "version": study_version, "data": tree["data"],
                                   "session": session, "seed": seed_data}, 16)
            for rf in range(spec.repeats_fit):
                # paired: every fit arm at this data point and repeat gets the same seed (common random numbers)
                words = (data_hash, rd, fit_hash, rf, 1) if spec.seeds == "independent" else (data_hash, rd, rf, 2)
                seed_fit = _seed(spec.seed, *words)
                run_id = short_hash({"study": spec.study_name, "version": study_version, "data": tree["data"],
                                     "fit": tree["fit"],
                                     "session": session, "seeds": [seed_data, seed_fit]}, 16)
                if run_id in seen:
                    raise SpecError(f"two runs are identical ({point}); a sweep list repeats a value",
                                    where=spec.path, key="sweep")
                seen.add(run_id)
                runs.append(Run(run_id, data_key, tree["data"], tree["fit"], session, rd, rf, seed_data, seed_fit,
                                point))
    return Plan(spec, runs)


def _key_in(message: str, point: dict) -> str | None:
    """The dotted key a study's validation message is about: a data.x / fit.x it names, else a swept key."""
    import re

    named = re.findall(r"\b((?:data|fit)\.[A-Za-z_][\w.]*\w)", message)
    if named:
        return named[0]
    for k in point:
        if k.split(".")[-1] in message:
            return k
    return None
