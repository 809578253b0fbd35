"""Losses on measured data: Poisson negative log-likelihood on counts and MAE on amplitudes."""
from __future__ import annotations

from keras import ops


def make_pinn_loss(nll_weight: float, mae_weight: float, mean_count: float, eps: float = 1e-6):
    """nll_weight * NLL(counts | pred) + mae_weight * |sqrt(pred) - sqrt(counts)|, both scaled to O(1).

    NLL is `pred - counts * log(pred + eps)` per pixel, divided by the mean count per pixel so that
    1e9 and 1e4 photons train at one learning rate; `pred` is floored at eps (the positivity guard).
    """
    if nll_weight < 0 or mae_weight < 0 or nll_weight + mae_weight == 0:
        raise ValueError(f"nll_weight and mae_weight must be >= 0 and not both 0, got {nll_weight}, {mae_weight}")
    count_norm = float(max(mean_count, eps))
    amp_norm = float(max(mean_count, eps)) ** 0.5

    def loss(counts, pred):
        pred = ops.maximum(pred, eps)
        total = 0.0
        if nll_weight:
            nll = pred - counts * ops.log(pred + eps)
            # subtract the NLL's value at pred == counts, so a perfect fit scores 0 (same gradients)
            best = counts - counts * ops.log(counts + eps)
            total = total + nll_weight * ops.mean(nll - best) / count_norm
        if mae_weight:
            total = total + mae_weight * ops.mean(ops.abs(ops.sqrt(pred) - ops.sqrt(counts))) / amp_norm
        return total

    return loss
