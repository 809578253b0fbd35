"""The arms of the ptychography studies: dose, model and loss, and any other swept axis (a budget sweep's
training-set size and epochs), which makes arms of its own and is never pooled; their names and first runs."""
from __future__ import annotations

DOSE_MODEL_LOSS = ("data.nphotons", "fit.model", "fit.loss")
ARM_NAMES = {("pinn", "nll"): "PINN, NLL loss", ("pinn", "mae"): "PINN, MAE loss", ("pinn", "mixed"): "PINN, mixed",
             ("baseline", "nll"): "supervised baseline", ("baseline", "mae"): "supervised baseline"}


def first_run(rows, nphotons, loss, model="pinn", extra: tuple = ()):
    """The first repeat of an arm (`rows`: ok runs' records) (loss None: any loss, as for ePIE, which has none; `extra`: the arm's
    ((axis, value), ...) on the other swept axes)."""
    arm = [r for r in rows if r["data.nphotons"] == nphotons and loss in (None, r["fit.loss"])
           and r["fit.model"] == model and all(r[a] == v for a, v in extra)]
    return min(arm, key=lambda r: (r["repeat_data"], r["repeat_fit"])) if arm else None


def extra_axes(result) -> list:
    """Swept axes beyond dose, model and loss (e.g. data.n_train and fit.epochs of a budget sweep): each of
    their values makes an arm of its own, never pooled with the others."""
    return [a for a in result.axes if a not in DOSE_MODEL_LOSS]


def extra_of(row, extras: list) -> tuple:
    """An arm's ((axis, value), ...) on the extra axes (`row`: a run's record, or a configuration's axes)."""
    return tuple((a, row[a]) for a in extras)


def extra_order(extra: tuple) -> tuple:
    """A sort key of an arm's extra values: numbers by value, then anything else by its text."""
    return tuple((0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))
                 for _, v in extra)


def extra_label(extra: tuple) -> str:
    """', n_train 4096, epochs 25' for an arm's extra axes ('' without any)."""
    return "".join(f", {a.split('.')[-1]} {v:g}" if isinstance(v, float) else f", {a.split('.')[-1]} {v}"
                   for a, v in extra)


def arm_name(model: str, loss: str, extra: tuple = ()) -> str:
    name = "ePIE reference" if model == "epie" else ARM_NAMES.get((model, loss), f"{model}, {loss}")
    return name + extra_label(extra)
