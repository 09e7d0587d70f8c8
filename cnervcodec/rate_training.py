"""Rate-aware training: learned quantization steps, noise then straight-through rounding, and a rate term.

With ``FitConfig.rate_lambda`` > 0 the fit minimizes ``D + lambda * R / pixels`` (C3, Cool-chic,
Gomes et al. 2023), where every coded tensor is quantized in the forward pass with a learned step
``Delta`` (one per decoder tensor, one for the embeddings) and ``R`` is the bits its symbols
``k = round(v / Delta)`` take under the model the file's Laplace coder (coder 2) uses: a two-sided
geometric law ``P(k) = (1 - theta) / (1 + theta) * theta**|k|`` whose ``theta`` is the maximum-likelihood
one for the tensor (``theta`` from the mean ``|k|``). The file codes the same symbols under the same
family with its parameters fitted to the counts, so the estimate and the written bytes agree.

* For the first ``NOISE_FRACTION`` of the steps, rounding is replaced by additive uniform noise of one
  step (the usual differentiable proxy); after it, straight-through rounding: the forward pass runs
  the very values the file will hold, the backward pass treats rounding as the identity.
* Embeddings are coded as temporal residuals (EMBT): their rate is that of ``k_t - k_{t-1}``, so the
  batch carries each frame's predecessor through the (one-layer) encoder too, and the content encoder
  learns embeddings that change little from frame to frame where the picture does not.
* The rate term's weight ramps up over the first ``LAMBDA_RAMP_FRACTION`` of the steps, so the
  distortion shapes the network before the rate prices its weights.
* Under rate control lambda is not a guess: it starts at the default and each step after the ramp moves
  it by the ratio of the estimated bits to the target's (``adapted_lambda``), so the fit ends at the
  rate asked for at its learned steps, the operating point it was trained for.
* The gradient of a step through the straight-through product is LSQ's ``round(y) - y``: rate pushes
  steps up, distortion down.

This module holds no state: ``QuantSteps`` is an ``nn.Module`` owned by the trainer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnervcodec.model import Decoder, bitstream_tensors

NOISE_FRACTION = 0.7  # of the fit's steps: uniform noise; the rest: straight-through rounding
# The rate term's weight ramps from 0 to lambda over this fraction of the steps: at full weight from the
# first step, an untrained network's weights are pure cost and a large lambda drives them all to zero
# (measured, carphone c = 16, lambda 2: without a ramp 723 B and 17.2 dB, weights all zero; with 5 % of
# the steps 10,637 B and 32.36 dB, with 20 % 11,054 B and 32.53 dB; at lambda 1 a 20 % ramp cost 0.3 dB).
LAMBDA_RAMP_FRACTION = 0.05
# Lambda follows a rate target (``FitConfig.rate_target_bits``) after the ramp: each step multiplies it by
# (estimate / target) ** LAMBDA_ADAPT_RATE, within [LAMBDA_MIN, LAMBDA_MAX] (a step 20 % over the
# target raises it 0.4 %; sixty such steps, one carphone epoch, 24 %).
LAMBDA_ADAPT_RATE = 0.02
LAMBDA_MIN = 1e-3
LAMBDA_MAX = 100.0
INIT_WEIGHT_BITS = 6  # learned steps start at the min-max step of this depth (eq. 4)
INIT_EMBED_BITS = 5
EMBEDDINGS = "embeddings"  # the key of the embeddings' step in ``QuantSteps.values()``
_MIN_MEAN_ABS = 1e-4  # a tensor of all-zero symbols still has a finite (tiny) cost


def lambda_at(step: int, total_steps: int, rate_lambda: float) -> float:
    """The rate term's weight at ``step``: a linear ramp over ``LAMBDA_RAMP_FRACTION`` of the fit."""
    ramp_steps = max(1, int(LAMBDA_RAMP_FRACTION * total_steps))
    return rate_lambda * min(1.0, (step + 1) / ramp_steps)


def adapted_lambda(rate_lambda: float, estimated_bits: float, target_bits: float) -> float:
    """Lambda after one step of the rate target's multiplicative control: up when the estimate is over
    the target, down when under, clamped so that it neither vanishes nor runs away."""
    ratio = max(estimated_bits, 1.0) / target_bits
    return min(LAMBDA_MAX, max(LAMBDA_MIN, rate_lambda * ratio ** LAMBDA_ADAPT_RATE))


def geometric_theta(mean_abs: torch.Tensor) -> torch.Tensor:
    """The two-sided geometric ``theta`` whose mean ``|k|`` is ``mean_abs``: ``2 theta / (1 - theta^2) = m``."""
    m = mean_abs.clamp_min(_MIN_MEAN_ABS)
    return m / (torch.sqrt(1.0 + m * m) + 1.0)  # (sqrt(1 + m^2) - 1) / m without the cancellation


def geometric_bits(y: torch.Tensor) -> torch.Tensor:
    """Total bits of ``y`` (symbols relative to the mode, rounded or noisy) under the two-sided geometric
    law of maximum likelihood: ``n log2((1 + theta) / (1 - theta)) - sum |y| log2 theta``, differentiable."""
    magnitude = y.abs()
    theta = geometric_theta(magnitude.mean())
    return magnitude.numel() * torch.log2((1.0 + theta) / (1.0 - theta)) - magnitude.sum() * torch.log2(theta)


def round_ste(y: torch.Tensor) -> torch.Tensor:
    """Rounding forward, identity backward."""
    return y + (torch.round(y) - y).detach()


def noisy_or_rounded(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Straight-through rounding (``generator`` None), or the training proxy: ``y`` plus uniform noise in
    [-0.5, 0.5) drawn from ``generator`` (the fit's own, never the global RNG)."""
    if generator is None:
        return round_ste(y)
    return y + (torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) - 0.5)


def minmax_step(values: torch.Tensor, bits: int) -> float:
    """Eq. 4's step for ``values`` at ``bits``: where a learned step starts."""
    span = float(values.detach().max() - values.detach().min())
    return max(span / ((1 << bits) - 1), 1e-6)


class QuantSteps(nn.Module):
    """Learned log-steps: one per decoder tensor (bitstream order) and one for the embeddings."""

    def __init__(self, decoder: Decoder, embedding_step: float) -> None:
        super().__init__()
        self.names = [name for name, _ in bitstream_tensors(decoder)]
        start = [math.log(minmax_step(t, INIT_WEIGHT_BITS)) for _, t in bitstream_tensors(decoder)]
        self.log_weight_steps = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.log_embed_step = nn.Parameter(torch.tensor(math.log(embedding_step), dtype=torch.float32))

    def values(self) -> dict[str, float]:
        """Every step as a float, by tensor name (and ``EMBEDDINGS``): what the coder quantizes with."""
        steps = dict(zip(self.names, self.log_weight_steps.detach().exp().cpu().tolist()))
        steps[EMBEDDINGS] = float(self.log_embed_step.detach().exp())
        return steps

    def load_values(self, steps: dict[str, float]) -> None:
        with torch.no_grad():
            self.log_weight_steps.copy_(torch.tensor([math.log(steps[n]) for n in self.names]))
            self.log_embed_step.fill_(math.log(steps[EMBEDDINGS]))

    def quantized_decoder(self, decoder: Decoder,
                          noise: torch.Generator | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(the decoder's tensors as the file would hold them, their estimated bits); ``noise``: the
        generator of the noise phase, None once rounding."""
        params = dict(decoder.named_parameters())
        steps = self.log_weight_steps.exp()
        quantized, bits = {}, torch.zeros((), device=steps.device)
        for i, name in enumerate(self.names):
            y = noisy_or_rounded(params[name] / steps[i], noise)
            quantized[name] = y * steps[i]
            bits = bits + geometric_bits(y)
        return quantized, bits

    def quantized_embeddings(self, current: torch.Tensor, previous: torch.Tensor | None,
                             noise: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch's embeddings as coded, their temporal residuals' bits per frame): ``previous`` holds
        each frame's predecessor (None where no frame has one)."""
        step = self.log_embed_step.exp()
        y = noisy_or_rounded(current / step, noise)
        if previous is None:
            return y * step, geometric_bits(y) / current.shape[0]
        y_previous = noisy_or_rounded(previous / step, noise)
        return y * step, geometric_bits(y - y_previous) / current.shape[0]


class RateState:
    """What a rate-aware fit carries besides the network: the learned steps, the noise generator (the
    fit's own), and lambda as it stands (adapted step by step when the fit has a rate target)."""

    def __init__(self, decoder: Decoder, rate_lambda: float, seed: int, device: torch.device) -> None:
        self.steps = QuantSteps(decoder, embedding_step=1.0).to(device)
        self.noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
        self.rate_lambda = rate_lambda

    @torch.no_grad()
    def start_embedding_step(self, embeddings: torch.Tensor) -> None:
        """The embeddings' step starts at eq. 4's for the fit's first ``embeddings`` (of the seen frames)."""
        self.steps.log_embed_step.fill_(math.log(minmax_step(embeddings, INIT_EMBED_BITS)))

    def forward(self, network: nn.Module, inputs: torch.Tensor, indices: torch.Tensor, n_frames: int,
                progress: float, use_amp: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prediction from the quantized decoder and embeddings, estimated bits of the whole file's
        weights, and of its embeddings) at ``progress`` (steps done / all): noise before ``NOISE_FRACTION``,
        rounding after. Each frame's predecessor goes through the encoder too, for the rate of the
        temporal residuals the file codes."""
        generator = self.noise_generator if progress < NOISE_FRACTION else None
        latent = network.latent_for(inputs[indices])
        previous = network.latent_for(inputs[(indices - 1).clamp_min(0)])
        coded_latent, embed_bits_per_frame = self.steps.quantized_embeddings(latent, previous, generator)
        weights, weight_bits = self.steps.quantized_decoder(network.decoder, generator)
        overrides = {f"decoder.{name}": value for name, value in weights.items()}
        with torch.autocast(indices.device.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = torch.func.functional_call(network, overrides, (coded_latent,))
        return pred, weight_bits, embed_bits_per_frame * n_frames

    def follow(self, step: int, total_steps: int, estimated_bits: float, target_bits: float) -> None:
        """After the ramp, move lambda toward ``target_bits``."""
        if step >= LAMBDA_RAMP_FRACTION * total_steps:
            self.rate_lambda = adapted_lambda(self.rate_lambda, estimated_bits, target_bits)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"noise_rng": self.noise_generator.get_state(),
                "quant.weights": self.steps.log_weight_steps.detach().cpu(),
                "quant.embeddings": self.steps.log_embed_step.detach().cpu().reshape(1),
                "quant.lambda": torch.tensor([self.rate_lambda], dtype=torch.float64)}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Back to a checkpoint's state; ValueError (or KeyError) when it does not fit this network."""
        weights, embeddings = tensors["quant.weights"], tensors["quant.embeddings"]
        if weights.shape != self.steps.log_weight_steps.shape or embeddings.numel() != 1:
            raise ValueError("learned quantization steps do not match the network")
        rate_lambda = float(tensors["quant.lambda"].reshape(()))
        if not 0 < rate_lambda < float("inf"):
            raise ValueError("the checkpoint's lambda is not a positive number")
        with torch.no_grad():
            self.steps.log_weight_steps.copy_(weights.float())
            self.steps.log_embed_step.fill_(float(embeddings.reshape(())))
        self.rate_lambda = rate_lambda
        self.noise_generator.set_state(tensors["noise_rng"])
