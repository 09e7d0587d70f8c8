"""The network's arithmetic for one frame: multiply-adds of every convolution and linear layer, and FLOPs.

Counted by forward hooks on a forward pass over one frame on the meta device (shapes only: no memory,
no arithmetic, any frame size in milliseconds), so the count follows the network as ``model`` builds
it rather than a second description of it that could drift.

Conventions, the usual ones for convolutional networks (fvcore, ptflops, the NeRV papers' "MACs"):

* one multiply-add (MAC) = 2 FLOPs; a convolution's MACs are its output elements times
  ``in_channels / groups * kernel_h * kernel_w``, a linear layer's its output elements times ``in_features``;
* biases, activations, PixelShuffle (a reshuffle of memory, no arithmetic), cropping and the final
  clamp to 8-bit levels are not counted: together under 1 % of the convolutions here;
* decode = the decoder alone (a ``.cnrv`` carries the embeddings); a training step on one frame =
  3 x the forward FLOPs of the encoder layer (CNeRV's learned 1x1 convolution) and the decoder
  (forward, then gradients for activations and for weights, each about a forward's work); the fixed
  block projection is computed once per clip and cached, so it is not part of a step; the loss is
  not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnervcodec.config import ModelConfig
from cnervcodec.model import VideoNetwork

TRAIN_FACTOR = 3  # a training step ~ forward + backward (activation and weight gradients)


def module_macs(module: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """Multiply-adds per leaf ``Conv2d`` / ``Linear`` of ``module`` (named as in ``named_modules``) for one
    forward call on ``inputs``, summed over the batch. Works on meta tensors."""
    counts: dict[str, int] = {}

    def hook(name: str):
        def count(layer: nn.Module, _args, output: torch.Tensor) -> None:
            if isinstance(layer, nn.Conv2d):
                per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            else:
                per_output = layer.in_features
            counts[name] = counts.get(name, 0) + output.numel() * per_output
        return count

    handles = [layer.register_forward_hook(hook(name)) for name, layer in module.named_modules()
               if isinstance(layer, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counts


@dataclass(frozen=True)
class FrameFlops:
    """One frame's arithmetic: MACs of the learned encoder layer and of the decoder, per layer too."""

    encoder_macs: int  # CNeRV's learned 1x1 convolution (0 for NeRV: its index encoding has no weights)
    decoder_macs: int
    layers: tuple[tuple[str, int], ...]  # ("encoder.reduce" / "decoder.blocks.0.conv" ..., MACs)

    @property
    def decode_flops(self) -> int:
        """FLOPs to decode one frame from its embedding."""
        return 2 * self.decoder_macs

    @property
    def train_flops(self) -> int:
        """FLOPs of one frame's share of a training step (``TRAIN_FACTOR`` x encoder + decoder forward)."""
        return TRAIN_FACTOR * 2 * (self.encoder_macs + self.decoder_macs)

    def to_dict(self) -> dict:
        return {"encoder_macs": self.encoder_macs, "decoder_macs": self.decoder_macs,
                "decode_gflops": round(self.decode_flops / 1e9, 4), "train_gflops": round(self.train_flops / 1e9, 4)}


def frame_flops(config: ModelConfig) -> FrameFlops:
    """Count ``config``'s network on one frame (built on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        network = VideoNetwork(config)
        n_h, n_w = config.embedding.grid
        if network.encoder is not None:
            raw = torch.empty(1, config.embedding.raw_dim, n_h, n_w)
            encoder = module_macs(network.encoder, raw)
            latent = torch.empty(1, config.embedding.dim, n_h, n_w)
        else:
            encoder = {}
            latent = torch.empty(1, 2 * config.nerv_pe_freqs)
        decoder = module_macs(network.decoder, latent)
    layers = tuple((f"encoder.{k}", v) for k, v in encoder.items()) + tuple((f"decoder.{k}", v)
                                                                             for k, v in decoder.items())
    return FrameFlops(encoder_macs=sum(encoder.values()), decoder_macs=sum(decoder.values()), layers=layers)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                      seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """The device's attainable FLOP rate, measured: the best of repeated ``n x n`` matrix products in
    ``dtype`` (2 n^3 FLOPs each) for about ``seconds``, after a warm-up. On the CPU it uses torch's
    current threads, the same as the runs it is compared with. ``clock``: wall time by default;
    ``time.process_time`` gives FLOPs per CPU-second of this process (all its threads), a rate that
    other work sharing the cores does not lower."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    torch.mm(a, b)
    sync()
    best = float("inf")
    wall_start = time.perf_counter()
    while time.perf_counter() - wall_start < seconds or best == float("inf"):
        start = clock()
        for _ in range(4):
            torch.mm(a, b)
        sync()
        elapsed = (clock() - start) / 4
        if elapsed > 0:
            best = min(best, elapsed)
    return 2 * n**3 / best
