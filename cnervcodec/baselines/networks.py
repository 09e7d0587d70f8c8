"""Building a baseline network, and sizing it to CNeRV's total parameter count.

The paper compares "with the same latent code length and similar model size" (table 8: total sizes
64-68 M for every method). Here the total is encoder + decoder parameters, CNeRV's own (its one
encoder layer and its decoder) at the same ``--size``; one width factor per network is solved by
bisection on parameter counts taken from a meta-device build (no memory, no weights drawn):

* ConvAE / ConvVAE: encoder and decoder widths scaled together.
* ConvAE*: the encoder fixed light (``STAR_ENCODER_FRACTION`` of the preset's widths), the decoder
  scaled to take the rest.
* Pixel-wise INRs: the content encoder is the matched ConvAE's encoder; the MLP width takes the rest.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from cnervcodec.baselines.autoencoders import AUTOENCODER_CLASSES
from cnervcodec.baselines.config import (
    AUTOENCODERS,
    STAR_ENCODER_FRACTION,
    BaselineConfig,
    base_config,
    with_scale,
)
from cnervcodec.baselines.inr import PixelINR
from cnervcodec.config import ModelConfig

MIN_INR_HIDDEN = 16


def build_baseline(config: BaselineConfig) -> nn.Module:
    """The network for ``config``, with freshly drawn weights (callers seed the RNG)."""
    cls = AUTOENCODER_CLASSES.get(config.arch, PixelINR)
    return cls(config)


def parameter_counts(config: BaselineConfig) -> tuple[int, int]:
    """(encoder, decoder) parameters of ``config``'s network, from a meta-device build."""
    with torch.device("meta"):
        network = build_baseline(config)
    encoder = sum(p.numel() for p in network.encoder.parameters())
    return encoder, sum(p.numel() for p in network.parameters()) - encoder


def _solve(total_at, target: int, low: float = 0.02, high: float = 16.0, steps: int = 40) -> float:
    """The factor in [low, high] whose total is closest to ``target`` (totals grow with the factor)."""
    for _ in range(steps):
        middle = (low * high) ** 0.5
        if total_at(middle) < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda f: abs(total_at(f) - target))


def matched_config(arch: str, size: str, height: int, width: int, grid: tuple[int, int] | None = None,
                   embed_dim: int | None = None) -> tuple[BaselineConfig, ModelConfig]:
    """A baseline config with CNeRV's grid and code length and CNeRV's total parameters at ``size``,
    with the CNeRV config it was matched to."""
    base, cnerv = base_config(arch, size, height, width, grid, embed_dim)
    target = cnerv.decoder_param_count() + cnerv.encoder_param_count()

    def total(config: BaselineConfig) -> int:
        return sum(parameter_counts(config))

    autoencoder = base if base.arch in ("convae", "convvae") else replace(
        base, arch="convae", embed_dim=cnerv.embedding.dim, dec_widths=cnerv.widths, hidden=0)
    ae_factor = _solve(lambda f: total(with_scale(autoencoder, f, f)), target)
    if base.arch in ("convae", "convvae"):
        return with_scale(base, ae_factor, ae_factor), cnerv
    if base.arch in AUTOENCODERS:  # ConvAE*
        factor = _solve(lambda f: total(with_scale(base, f, STAR_ENCODER_FRACTION)), target)
        return with_scale(base, factor, STAR_ENCODER_FRACTION), cnerv
    factor = _solve(lambda f: total(with_scale(base, f, ae_factor)), target, low=MIN_INR_HIDDEN / base.hidden)
    return with_scale(base, factor, ae_factor), cnerv
