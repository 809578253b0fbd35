"""Reading a study directory's datasets and run arrays from a report (report(table, figures_dir))."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def study_root(figures_dir: Path) -> Path:
    return Path(figures_dir).parent


def run_arrays(figures_dir: Path, run_id: str) -> dict:
    path = study_root(figures_dir) / "runs" / run_id / "arrays.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def dataset(figures_dir: Path, data_key: str, simulate, data_params: dict, seed: int) -> dict:
    """The saved dataset, or the same one simulated again from its params and seed (save_datasets: false)."""
    path = study_root(figures_dir) / "datasets" / f"{data_key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    return simulate(data_params, seed)


def params_of(row: dict, section: str) -> dict:
    """The data or fit params of a results row (flattened `data.<key>` columns back to a dict)."""
    out = {}
    for k, v in row.items():
        if k.startswith(section + "."):
            node = out
            *head, last = k[len(section) + 1:].split(".")
            for h in head:
                node = node.setdefault(h, {})
            if v is not None:
                node[last] = v
    return out
