"""Losses on measured data: Poisson negative log-likelihood on counts and MAE on amplitudes."""
from __future__ import annotations

from keras import ops


def make_pinn_loss(nll_weight: float, mae_weight: float, mean_count: float, eps: float = 1e-6):
    """nll_weight * NLL(counts | pred) + mae_weight * |sqrt(pred) - sqrt(counts)|, both scaled to O(1).

    NLL is `pred - counts * log(pred + eps)` per pixel, divided by the mean count per pixel so that
    1e9 and 1e4 photons train at one learning rate; `pred` is floored at eps (the positivity guard).
    """
    weights = pinn_loss_weights(nll_weight, mae_weight, mean_count, eps)

    def loss(counts, pred):
        return weighted_pinn_loss(counts, pred, weights, eps)

    return loss


def pinn_loss_weights(nll_weight: float, mae_weight: float, mean_count: float, eps: float = 1e-6) -> tuple:
    """(NLL weight / count norm, MAE weight / amplitude norm): the loss's constants, as numbers that packed
    runs stack (each run its own loss in one program)."""
    if nll_weight < 0 or mae_weight < 0 or nll_weight + mae_weight == 0:
        raise ValueError(f"nll_weight and mae_weight must be >= 0 and not both 0, got {nll_weight}, {mae_weight}")
    norm = float(max(mean_count, eps))
    return nll_weight / norm, mae_weight / norm ** 0.5


def weighted_pinn_loss(counts, pred, weights, eps: float = 1e-6):
    """The PINN loss with its weights given as values (pinn_loss_weights), scalars or traced arrays."""
    pred = ops.maximum(pred, eps)
    # the NLL less its value at pred == counts, so a perfect fit scores 0 (same gradients)
    nll = (pred - counts * ops.log(pred + eps)) - (counts - counts * ops.log(counts + eps))
    mae = ops.abs(ops.sqrt(pred) - ops.sqrt(counts))
    return weights[0] * ops.mean(nll) + weights[1] * ops.mean(mae)
