"""What a network trains on and how its training is scheduled, below both the solo (Keras `model.fit`) and
the packed (one JAX program for K runs) paths: the grouped inputs, the training arrays and their split, the
loss weights, and one `Schedule` (learning rate halved on a plateau, early stopping) that drives the Keras
callbacks and the JAX loop alike."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def group_offsets(positions, groups):
    """Each group member's scan offset from its group's centre: (G, C, 2) float32."""
    members = positions[groups]  # (G, C, 2)
    return (members - members.mean(axis=1, keepdims=True)).astype(np.float32)


def grouped_inputs(dataset: dict, split: str):
    """(normalised amplitudes (G, N, N, C), counts (G, N, N, C), offsets (G, C, 2)) of a split's groups."""
    amps, pos, groups = (dataset[f"{split}_{k}"] for k in ("amplitudes", "positions", "groups"))
    a = np.transpose(amps[groups], (0, 2, 3, 1))
    return (a / dataset["input_norm"]).astype(np.float32), (a.astype(np.float32) ** 2), group_offsets(pos, groups)


def loss_weights(f: dict) -> tuple[float, float]:
    """(NLL weight, MAE weight) of the fit params' loss; explicit weights win."""
    named = {"nll": (1.0, 0.0), "mae": (0.0, 1.0), "mixed": (1.0, 1.0)}[f["loss"]]
    return (f["nll_weight"] if f["nll_weight"] is not None else named[0],
            f["mae_weight"] if f["mae_weight"] is not None else named[1])


def training_arrays(dataset: dict, f: dict):
    """(inputs, target) of the training scan: the PINN's target is the measured counts, the supervised
    baseline's the true patches' amplitude and phase (G, N, N, 2C)."""
    x, counts, offsets = grouped_inputs(dataset, "train")
    g = int(dataset["gridsize"])
    inputs = [x, offsets] if (f["model"] == "pinn" and g > 1) else x
    if f["model"] == "pinn":
        return inputs, counts
    patches = dataset["train_patches"][dataset["train_groups"]]  # (G, C, N, N) complex
    target = np.concatenate([np.abs(patches), np.angle(patches)], axis=1)
    return inputs, np.transpose(target, (0, 2, 3, 1)).astype(np.float32)


def split(n: int, fraction: float, seed: int):
    """(training indices, validation indices) of n groups, drawn from the fit seed."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if n > 1 else 0
    return order[n_val:], order[:n_val]


def take(inputs, idx):
    """Rows `idx` of the inputs (an array, or a list of arrays)."""
    return [a[idx] for a in inputs] if isinstance(inputs, list) else inputs[idx]


@dataclass
class RunState:
    """One run's schedule on the host: its monitored loss, learning rate, patience and best epoch."""

    learning_rate: float
    best: float = np.inf
    wait: int = 0
    plateau_wait: int = 0
    stopped: bool = False
    best_epoch: int = -1
    history: dict = field(default_factory=lambda: {"train_loss": [], "val_loss": []})


@dataclass(frozen=True)
class Schedule:
    """The training schedule of the fit params: on a plateau of `plateau_epochs` epochs the learning rate is
    halved (down to 1/16 of the first); training stops after `stop_patience` epochs without improvement and
    keeps the best epoch's weights. An epoch improves when its monitored loss is below the best by more than
    `min_delta`. One rule for Keras (`callbacks`) and the JAX loop (`step`)."""

    learning_rate: float
    plateau: bool
    stop_patience: int          # 0: never stop early
    plateau_epochs: int = 2
    factor: float = 0.5
    min_delta: float = 1e-4

    @classmethod
    def of(cls, f: dict) -> "Schedule":
        patience = f["patience"] or (f["epochs"] if f["schedule"] == "plateau" else 0)
        return cls(float(f["learning_rate"]), f["schedule"] == "plateau", int(patience))

    @property
    def min_lr(self) -> float:
        return self.learning_rate / 16

    @property
    def keeps_best(self) -> bool:
        return self.plateau or bool(self.stop_patience)

    def callbacks(self, validated: bool) -> list:
        """The schedule as Keras callbacks, on the validation loss (the training loss without a split)."""
        import keras

        monitor = "val_loss" if validated else "loss"
        out = []
        if self.plateau:
            out.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=self.factor,
                                                         patience=self.plateau_epochs, min_lr=self.min_lr,
                                                         min_delta=self.min_delta))
        if self.keeps_best:
            out.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=self.stop_patience,
                                                     min_delta=self.min_delta, restore_best_weights=True))
        return out

    def step(self, run: RunState, monitored: float, epoch: int) -> bool:
        """One epoch of a run: its learning rate and stop updated; whether it improved (its weights kept)."""
        if monitored < run.best - self.min_delta or run.best_epoch < 0:
            run.best, run.wait, run.plateau_wait, run.best_epoch = min(monitored, run.best), 0, 0, epoch
            return True
        run.wait += 1
        run.plateau_wait += 1
        if self.plateau and run.plateau_wait >= self.plateau_epochs:
            run.learning_rate = max(run.learning_rate * self.factor, self.min_lr)
            run.plateau_wait = 0
        run.stopped = bool(self.stop_patience) and run.wait >= self.stop_patience
        return False
