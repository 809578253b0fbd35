"""A tiny study for engine tests: y = a x + b + noise, recovered by least squares.

`data.calls` / `fit.calls` name files that each simulate / fit call appends a line to, so tests
can count calls made in Ray workers. `fit.fail: true` makes fit raise.
"""
import numpy as np


def _count(path, what):
    if path:
        with open(path, "a") as f:
            f.write(what + "\n")


def simulate(data, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, data["n"])
    y = data["a"] * x + data["b"] + data["noise"] * rng.standard_normal(data["n"])
    _count(data.get("calls"), f"simulate {seed}")
    return {"x": x, "y": y}


def fit(dataset, params, seed):
    _count(params.get("calls"), f"fit {seed}")
    if params.get("fail"):
        raise RuntimeError("this fit was asked to fail")
    x, y = dataset["x"], dataset["y"]
    if params.get("bootstrap"):
        idx = np.random.default_rng(seed).integers(0, len(x), len(x))
        x, y = x[idx], y[idx]
    a, b = np.polyfit(x, y, 1)
    return {"metrics": {"a": a, "b": b, "data_sum": float(dataset["y"].sum())},
            "arrays": {"residuals": y - (a * x + b)},
            "history": {"loss": [1.0, 0.5, float(np.mean((y - a * x - b) ** 2))]}}
