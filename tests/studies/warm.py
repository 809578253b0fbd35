"""A study for actor tests: setup() and fit() append to files named in the params, so tests can
count actor initialisations and runs per process; `fit.crash_marker` kills the process once."""
import os

import numpy as np

SETUP_LOG = os.environ.get("SWEEPER_TEST_SETUP_LOG")


def setup():
    if SETUP_LOG:
        with open(SETUP_LOG, "a") as f:
            f.write(f"{os.getpid()}\n")


def simulate(data, seed):
    return {"x": np.random.default_rng(seed).random(data["n"])}


def fit(dataset, params, seed):
    marker = params.get("crash_marker")
    if marker and params["i"] == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the actor process dies mid-run
    return {"metrics": {"pid": float(os.getpid()), "mean": float(dataset["x"].mean())}}
