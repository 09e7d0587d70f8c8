"""Global magnitude pruning of the decoder's weights (paper section 3.3).

One threshold for all weight tensors (stem, NeRV blocks and head), so layers that matter less
give up more of their weights. Biases are kept whole: they are few and each one shifts a whole
channel. The masks are held during the fine-tune that follows, so pruned
weights stay exactly zero and cost almost nothing once quantized and entropy-coded.

``prune_fit`` is the training step (``PruneConfig``): it works on a copy, so one fit can serve a
whole ladder of prune levels; coding the result is ``codec``'s job, not this module's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from cnervcodec.config import PruneConfig
from cnervcodec.fit import FitProgress, FitResult, fine_tune


def prunable(decoder: nn.Module) -> dict[str, nn.Parameter]:
    """The weight tensors global pruning ranks: every parameter with two or more dimensions."""
    return {name: p for name, p in decoder.named_parameters() if p.dim() >= 2}


def magnitude_masks(decoder: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Boolean keep-masks that zero the ``fraction`` of prunable weights smallest in magnitude."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prune fraction must be in [0, 1), got {fraction}")
    weights = prunable(decoder)
    magnitudes = torch.cat([p.detach().abs().reshape(-1).float().cpu() for p in weights.values()])
    n_pruned = int(round(fraction * magnitudes.numel()))
    if n_pruned == 0:
        return {name: torch.ones_like(p, dtype=torch.bool) for name, p in weights.items()}
    # The n_pruned-th smallest magnitude is the threshold; ties at it are pruned together with it.
    threshold = torch.kthvalue(magnitudes, n_pruned).values.item()
    return {name: p.detach().abs() > threshold for name, p in weights.items()}


@torch.no_grad()
def apply_masks(decoder: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place (after every optimizer step of the fine-tune, too)."""
    parameters = dict(decoder.named_parameters())
    for name, mask in masks.items():
        parameters[name].mul_(mask.to(parameters[name].device, parameters[name].dtype))


def sparsity(decoder: nn.Module) -> float:
    """Fraction of prunable weights that are exactly zero."""
    weights = list(prunable(decoder).values())
    total = sum(p.numel() for p in weights)
    zeros = sum(int((p == 0).sum()) for p in weights)
    return zeros / total if total else 0.0


def prune_fit(
    frames_u8: torch.Tensor,
    fitted: FitResult,
    prune: PruneConfig,
    device: torch.device,
    progress: Callable[[FitProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> FitResult:
    """Global magnitude pruning of a copy of the fit, then a short fine-tune with the mask held.

    ``prune.fraction == 0`` returns ``fitted`` itself: nothing to prune, nothing to fine-tune.
    """
    if prune.fraction == 0:
        return fitted
    result = replace(fitted, network=copy.deepcopy(fitted.network), embeddings=None)
    decoder = result.network.decoder
    masks = magnitude_masks(decoder, prune.fraction)
    if prune.epochs == 0:
        apply_masks(decoder, masks)
        return result
    recipe = replace(result.config, epochs=prune.epochs, lr=result.config.lr * prune.lr_frac, warmup_frac=0.0)
    if fitted.rate_lambda is not None:  # a rate-aware fine-tune keeps the lambda the fit ended at, fixed
        recipe = replace(recipe, rate_lambda=fitted.rate_lambda, rate_target_bits=0.0)
    return fine_tune(frames_u8, result.network, recipe, device, lambda: apply_masks(decoder, masks), progress,
                     should_stop, quant_steps=fitted.quant_steps)
