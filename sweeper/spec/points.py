"""The points of a sweep and their validated params, by index: point p of product(sweep) x zip (x sessions)
has value index (p // stride) % len(values) on each axis; its data part (session and data.* keys) and fit
part (every other key) are validated once each, and a point is then a pair of integers. What a plan of
10^6 runs costs is the distinct parts, not the runs."""
from __future__ import annotations

import difflib
import json
import math
import typing
from dataclasses import dataclass

import numpy as np
import pydantic

from sweeper.errors import SpecError
from sweeper.hashing import canonical_json
from sweeper.spec.resolved import Spec
from sweeper.study import validated


@dataclass
class Points:
    """The points of product(sweep) x zip (x sessions) by index; zip keys share one row index, the innermost."""

    axes: dict          # {key: values}, session first, then sweep keys, then zip keys
    zipped: list        # the zip keys
    count: int
    stride: dict = None  # how many consecutive points share a value of each key

    @classmethod
    def of(cls, spec: Spec) -> "Points":
        axes = {"session": list(spec.sessions)} if spec.sessions else {}
        axes.update(spec.sweep)
        rows = len(next(iter(spec.zip.values()))) if spec.zip else 1
        axes.update(spec.zip)
        return cls(axes, list(spec.zip), math.prod(len(v) for k, v in axes.items() if k not in spec.zip) * rows)

    def __post_init__(self):
        rows = len(self.axes[self.zipped[0]]) if self.zipped else 1
        product = [k for k in self.axes if k not in self.zipped]
        self.stride = {k: 1 if k in self.zipped else
                       rows * math.prod(len(self.axes[j]) for j in product[product.index(k) + 1:]) for k in self.axes}

    def index(self, key, p=None):
        """The value index of `key` at point p, or at every point (int64 array) when p is None."""
        p = np.arange(self.count, dtype=np.int64) if p is None else p
        return (p // self.stride[key]) % len(self.axes[key])

    def values(self, p: int, keys) -> dict:
        """{key: value} of point p over `keys`."""
        return {k: self.axes[k][self.index(k, p)] for k in keys}


def first_seen(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(an id per entry (a value, or a row of a 2-d array) numbered in order of first appearance, the first
    position of each id)."""
    if not len(codes):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True, axis=0 if codes.ndim > 1 else None)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], first[order]


def part_ids(points: Points, keys: list) -> tuple[np.ndarray, np.ndarray]:
    """(the id of every point's part over `keys`, numbered in order of first appearance; each id's first point)."""
    if not keys:
        return np.zeros(points.count, np.int64), np.zeros(1 if points.count else 0, np.int64)
    dims = [k for k in keys if k not in points.zipped]
    dims += [k for k in keys if k in points.zipped][:1]  # zip keys move together: one index for all
    flat = np.ravel_multi_index([points.index(k) for k in dims], [len(points.axes[k]) for k in dims])
    return first_seen(flat)


class Params:
    """The validated params of a spec's points, as identities: `data` [(first point, JSON, session JSON)],
    `fit` [(first point, JSON)], and per point its data identity and fit identity (equal JSON, one identity).
    The params themselves are validated again from an identity's first point when asked (`params`), so a
    plan of 10^6 distinct points holds their JSON, not 10^6 dicts.

    Fit params are validated once per fit part (and session), or once per (data part, fit part) when the fit
    model's validation may read the data from its context."""

    CACHE = 100_000  # validated params kept for `params` (a plan's runs share them)

    def __init__(self, spec: Spec, points: Points):
        self.spec, self.points = spec, points
        self.data, self.fit, self._index, self._cache = [], [], {"data": {}, "fit": {}}, {}
        self.keys = {"data": [k for k in points.axes if k.startswith("data.")],
                     "fit": [k for k in points.axes if k.startswith("fit.")]}
        self.sessions = {s: json.dumps(s) for s in [None, *spec.sessions]}
        self.bases = {None: {"data": spec.data, "fit": spec.fit}, **spec.sessions}
        self.read = {s: (["session"] if spec.sessions else []) + keys for s, keys in self.keys.items()}
        self.paths = {k: k.split(".") for k in points.axes}
        data_part, data_first = part_ids(points, ["session", *self.keys["data"]] if spec.sessions
                                         else self.keys["data"])
        data_ident = np.array([self._add("data", int(p), *self.section(int(p), "data")) for p in data_first],
                              np.int64)
        self.data_of_point = data_ident[data_part] if len(data_ident) else data_part
        self.fit_of_point = self._fit_idents(data_part)

    def _fit_idents(self, data_part: np.ndarray) -> np.ndarray:
        fit_part, _ = part_ids(self.points, [k for k in self.points.axes if k != "session" and
                                             not k.startswith("data.")])
        session = self.points.index("session") if "session" in self.points.axes else np.zeros_like(fit_part)
        owner = data_part if not context_free(self.spec.study.fit_params) else session
        combo, first = first_seen(pair_codes(owner, fit_part))
        ident = np.array([self._add("fit", int(p), *self.section(int(p), "fit", self._context(p))[:2])
                          for p in first], np.int64)
        return ident[combo] if len(ident) else combo

    def _context(self, p: int) -> dict:
        return {"data": self.params("data", int(self.data_of_point[p]))}

    def _add(self, section: str, p: int, params: dict, text: str, *session) -> int:
        """The index of validated params among their section's identities (equal JSON and session: one)."""
        index, key = self._index[section], (text if not session or not self.spec.sessions else (text, *session))
        if key not in index:
            index[key] = len(index)
            (self.data if section == "data" else self.fit).append((p, text, *session))
            if len(self._cache) < self.CACHE:
                self._cache[section, index[key]] = params
        return index[key]

    def params(self, section: str, ident: int) -> dict:
        """The validated params of an identity (validated again from its first point past CACHE)."""
        if (section, ident) in self._cache:
            return self._cache[section, ident]
        p = self.data[ident][0] if section == "data" else self.fit[ident][0]
        return self.section(p, section, None if section == "data" else self._context(p))[0]

    def section(self, p: int, section: str, context=None) -> tuple:
        """(validated params, their canonical JSON, the session's JSON) of one section of point p: the spec's
        (or session's) params with the point's values set, checked by the study's declared model."""
        spec = self.spec
        point = self.points.values(p, self.read[section])
        session = point.get("session")
        tree = {section: dict(self.bases[session][section])}
        for k, v in point.items():
            if k != "session":
                try:
                    _set_copied(tree, self.paths[k], v)
                except (KeyError, TypeError, ValueError):
                    raise SpecError(f"{k} does not exist in session {session!r}", where=spec.path, key=k) from None
        model = spec.study.data_params if section == "data" else spec.study.fit_params
        try:
            valid = validated(model, tree[section], section, context)
        except pydantic.ValidationError as e:
            raise param_error(e, section, point, spec) from None
        return valid, canonical_json(valid), self.sessions[session]


def pair_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 code per (a, b) row of non-negative ints (a 2-d array of rows where a code could overflow)."""
    width = int(b.max(initial=0)) + 1
    if int(a.max(initial=0)) < (1 << 62) // width:
        return a.astype(np.int64) * width + b
    return np.stack([a, b], axis=1)


def _set_copied(tree: dict, path: list, value) -> None:
    """Set a dotted key (split into `path`), copying the dicts below the top on its way (the spec's own
    params stay as they are)."""
    for depth, part in enumerate(path[:-1]):
        if depth:
            tree[part] = dict(tree[part])
        tree = tree[part]
    tree[path[-1]] = value


def context_free(model) -> bool:
    """Whether validating `model` cannot depend on the validation context (no validators of its own or of its
    nested models)."""
    if model is None:
        return True
    if not isinstance(model, type) or not issubclass(model, pydantic.BaseModel):
        return False
    dec = model.__pydantic_decorators__
    if dec.validators or dec.field_validators or dec.root_validators or dec.model_validators:
        return False
    nested = [a for f in model.model_fields.values() for a in _types(f.annotation)]
    return all(context_free(a) for a in nested if isinstance(a, type) and issubclass(a, pydantic.BaseModel))


def _types(annotation) -> list:
    args = typing.get_args(annotation)
    return [annotation] if not args else [t for a in args for t in _types(a)]


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
    elif err["type"] == "value_error":  # the study's (or the engine's) own words: as they are
        msg = msg.removeprefix("Value error, ")
    elif "input" in err and not isinstance(err["input"], dict):
        msg = f"{msg}, got {err['input']!r}"
    swept = next((f"{s}.{key}" for s in ("sweep", "zip") if key in point and f"{s}.{key}" in spec.origins), None)
    where = spec.origins.get(swept) or spec.origins.get(key) or spec.origins.get(section) or spec.path
    return SpecError(msg, where=where, key=key)
