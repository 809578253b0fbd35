"""sweeper: Ray-distributed scientific parameter sweeps.

    import sweeper
    result = sweeper.run("studies/specs/dose_response.yaml", overrides=["fit.epochs=5"])
    result.table  # pyarrow.Table, one row per run
"""
from .driver import Result, load_results, run
from .errors import LockError, SpecError
from .plan import expand
from .spec import load_spec

__all__ = ["run", "load_results", "Result", "SpecError", "LockError", "load_spec", "expand"]
