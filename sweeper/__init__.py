"""sweeper: Ray-distributed scientific parameter sweeps.

    import sweeper
    result = sweeper.run("studies/specs/dose_response.yaml", overrides=["fit.epochs=5"])
    result.configs("metrics.psnr")   # one row per configuration: n, mean, sd, 95% CI
    sweeper.load(result.dir)          # the same SweepResult, later, from the study directory
"""
from .driver import run
from .errors import LockError, SpecError
from .plan import expand
from .results import RunResult, SweepResult, load
from .spec import load_spec
from .study import Params, Study

__all__ = ["run", "load", "Study", "Params", "SweepResult", "RunResult", "SpecError", "LockError", "load_spec",
           "expand"]
