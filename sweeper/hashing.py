"""Stable content hashes: the same values always give the same id, on any machine."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np


_ATOMS = {str, int, bool, type(None)}  # plain already (checked by exact type: a hot path of planning)


def plain(obj, nonfinite=repr):
    """Plain Python values (str keys, lists, NumPy scalars unwrapped; non-finite floats as nonfinite(v),
    'nan'/'inf' by default), as JSON and YAML files and hashes take them."""
    if isinstance(obj, dict):
        return {(k if type(k) is str else str(k)): (v if type(v) in _ATOMS or type(v) is float and v - v == 0
                                                     else plain(v, nonfinite)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [v if type(v) in _ATOMS or type(v) is float and v - v == 0 else plain(v, nonfinite) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return nonfinite(obj)
    return obj


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=repr)


def canonical_json(obj) -> str:
    """Sorted-key, compact JSON of plain(obj): the text every content hash is taken over. A non-finite float
    stays a number (JSON's NaN, Infinity), so it never hashes like the string "nan"."""
    return _CANONICAL.encode(plain(obj, nonfinite=float))


def short_hash(obj, n: int = 12) -> str:
    return text_hash(canonical_json(obj), n)


def text_hash(text: str, n: int = 12) -> str:
    """The first n hex digits of sha256(text): short_hash of a value whose canonical JSON is `text`."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def arrays_sha256(data: dict) -> str:
    """sha256 over a dataset's keys, dtypes, shapes and bytes (arrays and scalars), in key order."""
    h = hashlib.sha256()
    for key in sorted(data):
        a = np.ascontiguousarray(np.asarray(data[key]))
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()
