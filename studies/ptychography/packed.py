"""PINN training on Keras's JAX backend as one program for several runs (issue 23, "packed runs"): the runs'
weights, optimizer states, data and loss weights are stacked along a leading axis and one jitted, vmapped
step trains them all, each batch gathered on the device from data put there once. A solo JAX run is
the same loop with one run, so a packed run equals its solo run (tests/studies/ptychography/test_packed.py).

Runs pack when `pack_key` says they are compatible: the same data params but the photon noise (so the same
probe, intensity scale, group geometry and shapes) and the same fit params but the loss and its weights.
The schedule is `training.Schedule`, the one rule the Keras callbacks of the TensorFlow path follow too.
"""
from __future__ import annotations

import numpy as np

from .training import RunState, Schedule, loss_weights, split, take, training_arrays

PER_RUN_FIT = ("loss", "nll_weight", "mae_weight")  # what may differ inside a pack: each run's loss weights


def pack_key(data: dict, fit: dict):
    """What must be equal for runs to train as one program (None: this run never packs): every data param
    (the repeats of a point differ only in their photon noise) and every fit param but the loss."""
    if fit.get("model") != "pinn":
        return None
    from sweeper.toolkit import key_of

    return key_of([data, {k: v for k, v in fit.items() if k not in PER_RUN_FIT}])


def check_compatible(datasets: list) -> None:
    """The physics the packed program shares (probe, intensity scale, canvas padding, sizes) is each run's."""
    first = datasets[0]
    for d in datasets[1:]:
        same = (np.array_equal(d["probe"], first["probe"]) and d["scale"] == first["scale"]
                and d["pad"] == first["pad"] and d["train_amplitudes"].shape == first["train_amplitudes"].shape)
        if not same:
            raise ValueError("runs packed together need the same probe, intensity scale, padding and sizes; "
                             "pack_key let through datasets that differ")


def train(models: list, datasets: list, fits: list, seeds: list) -> list[dict]:
    """Train K built PINN models (same architecture) on their datasets in one program; returns each run's
    history, after setting each model's weights to its kept (best or last) epoch."""
    f = fits[0]
    K, epochs, batch = len(models), int(f["epochs"]), int(f["batch_size"])
    X, Y, weights = device_data(datasets, fits)
    splits = [split(Y.shape[1], f["validation_fraction"], s) for s in seeds]
    schedule = Schedule.of(f)
    program = _Program(models[0], f, K)
    state = program.initial(models)
    runs = [RunState(learning_rate=float(f["learning_rate"])) for _ in range(K)]
    best_state = state
    for epoch in range(epochs):
        order = np.stack([np.random.default_rng([int(s) % 2**63, epoch]).permutation(tr) for s, (tr, _) in
                          zip(seeds, splits)])
        state, train_loss = program.epoch(state, X, Y, weights, order, batch)
        val = program.evaluate(state, X, Y, weights, np.stack([v for _, v in splits]), batch) \
            if len(splits[0][1]) else None
        improved = _after_epoch(schedule, runs, train_loss, val, epoch)
        state = program.set_learning_rates(state, [r.learning_rate for r in runs])
        best_state = program.keep(best_state, state, improved)
        if all(r.stopped for r in runs):
            break
    program.assign(models, best_state if schedule.keeps_best else state)
    return [r.history for r in runs]


def device_data(datasets: list, fits: list) -> tuple:
    """(inputs, targets, loss weights) of K runs stacked along a leading run axis, the arrays on the device
    once: inputs a pytree of (K, n, ...) arrays, targets (K, n, ...), weights (K, 2) on the host."""
    import jax.numpy as jnp

    from .models import losses

    arrays = [training_arrays(d, fk) for d, fk in zip(datasets, fits)]
    X = _stack([a[0] for a in arrays])
    X = [jnp.asarray(x) for x in X] if isinstance(X, list) else jnp.asarray(X)
    Y = jnp.asarray(np.stack([a[1] for a in arrays]))
    weights = np.array([losses.pinn_loss_weights(*loss_weights(fk), mean_count=_mean_count(d))
                        for d, fk in zip(datasets, fits)], np.float32)
    return X, Y, weights


def _mean_count(dataset) -> float:
    return float(np.mean(dataset["train_amplitudes"].astype(np.float64) ** 2))


def _stack(inputs: list):
    if isinstance(inputs[0], list):
        return [np.stack([x[i] for x in inputs]) for i in range(len(inputs[0]))]
    return np.stack(inputs)


def _after_epoch(schedule: Schedule, runs: list, train_loss, val, epoch: int) -> np.ndarray:
    """Each run's history, learning rate and stop after an epoch; which runs improved (their weights kept)."""
    improved = np.zeros(len(runs), bool)
    for k, r in enumerate(runs):
        if r.stopped:
            continue
        r.history["train_loss"].append(float(train_loss[k]))
        if val is not None:
            r.history["val_loss"].append(float(val[k]))
        improved[k] = schedule.step(r, float(val[k] if val is not None else train_loss[k]), epoch)
    return improved


class _Program:
    """The jitted train step (vmapped over K > 1 runs) and evaluation of one architecture."""

    def __init__(self, model, f: dict, K: int):
        import jax
        import keras

        from .models import losses

        self.model, self.K = model, K
        self.optimizer = keras.optimizers.Adam(f["learning_rate"], **({"clipnorm": float(f["clipnorm"])}
                                                                       if f["clipnorm"] else {}))
        self.optimizer.build(model.trainable_variables)
        self.lr_index = next(i for i, v in enumerate(self.optimizer.variables) if "learning_rate" in v.path)

        def loss_of(tv, ntv, x, y, w):
            pred, ntv = model.stateless_call(tv, ntv, x, training=True)
            return losses.weighted_pinn_loss(y, pred, w), ntv

        def step(carry, X, Y, w, idx):  # one run, one batch (idx): gathered on the device
            tv, ntv, ov = carry
            (loss, ntv), grads = jax.value_and_grad(loss_of, has_aux=True)(tv, ntv, take(X, idx), Y[idx], w)
            tv, ov = self.optimizer.stateless_apply(ov, grads, tv)
            return (tv, ntv, ov), loss

        def val_loss(tv, ntv, X, Y, w, idx):
            pred, _ = model.stateless_call(tv, ntv, take(X, idx), training=False)
            return losses.weighted_pinn_loss(Y[idx], pred, w)

        # one jitted step a batch, as Keras's own JAX trainer (a lax.scan over an epoch ran 10x slower per
        # step on a CPU); one run: the plain program, several: vmapped over the runs
        self._step = jax.jit(_one_of(step) if K == 1 else jax.vmap(step))
        self._val = jax.jit(_one_of(val_loss) if K == 1 else jax.vmap(val_loss))

    def initial(self, models):
        """The stacked (trainable, non-trainable, optimizer) state of the built models."""
        tv = _stack_vars([[v.value for v in m.trainable_variables] for m in models])
        ntv = _stack_vars([[v.value for v in m.non_trainable_variables] for m in models])
        ov = _stack_vars([[v.value for v in self.optimizer.variables] for _ in models])
        return tv, ntv, ov

    def epoch(self, state, X, Y, weights, order: np.ndarray, batch: int):
        """Every batch of an epoch (order: (K, samples), each run its own); the mean loss per run."""
        total = 0.0
        for start in range(0, order.shape[1], batch):
            idx = order[:, start:start + batch]
            state, loss = self._step(state, X, Y, weights, idx)
            total = total + loss * idx.shape[1]
        return state, np.asarray(total) / order.shape[1]

    def evaluate(self, state, X, Y, weights, idx: np.ndarray, batch: int):
        """Each run's validation loss (mean over its validation samples, in batches of `batch`)."""
        tv, ntv, _ = state
        total = np.zeros(self.K)
        for start in range(0, idx.shape[1], batch):
            part = idx[:, start:start + batch]
            total += np.asarray(self._val(tv, ntv, X, Y, weights, part)) * part.shape[1]
        return total / idx.shape[1]

    def set_learning_rates(self, state, rates: list):
        import jax.numpy as jnp

        tv, ntv, ov = state
        ov = list(ov)
        ov[self.lr_index] = jnp.asarray(rates, ov[self.lr_index].dtype)
        return tv, ntv, ov

    @staticmethod
    def keep(best, state, improved: np.ndarray):
        """The best state so far per run: `state` where the run improved, else what was kept."""
        import jax
        import jax.numpy as jnp

        if improved.all():
            return state
        mask = jnp.asarray(improved)
        pick = lambda new, old: jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        return jax.tree_util.tree_map(pick, state, best)

    @staticmethod
    def assign(models, state) -> None:
        tv, ntv, _ = state
        for k, m in enumerate(models):
            for v, value in zip(m.trainable_variables, tv):
                v.assign(value[k])
            for v, value in zip(m.non_trainable_variables, ntv):
                v.assign(value[k])


def _one_of(fn):
    """fn over a leading run axis of length 1, computed without it (the same results as vmap of one)."""
    import jax

    def one(*args):
        out = fn(*jax.tree_util.tree_map(lambda a: a[0], args))
        return jax.tree_util.tree_map(lambda a: a[None], out)

    return one


def _stack_vars(per_run: list) -> list:
    import jax.numpy as jnp

    return [jnp.stack([vals[i] for vals in per_run]) for i in range(len(per_run[0]))]
