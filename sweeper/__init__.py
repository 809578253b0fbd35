"""sweeper: Ray-distributed scientific parameter sweeps.

    import sweeper
    result = sweeper.run("studies/ptychography/specs/dose_response.yaml", overrides=["fit.epochs=5"])
    result.configs("metrics.psnr")   # one row per configuration: n, mean, sd, 95% CI
    sweeper.load(result.dir)          # the same SweepResult, later, from the sweep directory
"""
from sweeper.errors import ClusterError, LockError, SpecError, SweepFailed
from sweeper.records import (
    ConfigRow,
    Difference,
    FitResult,
    Interval,
    RunRecord,
    RunStatus,
)
from sweeper.study import Finding, Params, Study

# the engine (Ray, pyarrow) loads on first use: a study module imports Params and Study where Ray is absent
_LAZY = {"run": "driver", "expand": "spec.plan", "RunResult": "results.sweep_result",
         "SweepResult": "results.sweep_result", "load": "results.sweep_result", "load_spec": "spec.resolved"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")

__all__ = ["run", "load", "Study", "Params", "Finding", "SweepResult", "RunResult", "SpecError", "LockError", "SweepFailed", "ClusterError",
           "load_spec", "expand", "RunStatus", "RunRecord", "FitResult", "Interval", "ConfigRow", "Difference"]
