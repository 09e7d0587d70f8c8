"""The CNeRV network (paper section 3.2) and the NeRV baseline, built from a ``ModelConfig``.

Decoder = stem -> NeRV blocks -> RGB head. The stem is where the two architectures differ:

* CNeRV, block-wise decoding: one 1x1 convolution turns each block's ``d`` embedding values into a
  ``C0 x h0 x w0`` cube; cubes are laid out in grid order into one ``C0 x (n_h h0) x (n_w w0)`` map.
* NeRV: the frame index's positional encoding -> MLP -> the same ``C0 x H/s x W/s`` map.

Image-wise decoding is shared: NeRV blocks ``Conv3x3(C_i -> C_{i+1} s^2) -> PixelShuffle(s) -> act``,
then a conv to 3 channels and an output activation into [0, 1]. The decoder's parameters, in the
fixed order of ``bitstream_tensors``, are what a bitstream carries.

This module must not import fit, entropy or container.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from cnervcodec.config import ModelConfig
from cnervcodec.embedding import ContentEncoder, index_encoding


def make_activation(name: str) -> nn.Module:
    """The activation module for a config name (validated in ``ModelConfig``)."""
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    if name == "silu":
        return nn.SiLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1)
    raise ValueError(f"unknown activation {name!r}")


class NervBlock(nn.Module):
    """Conv3x3 to ``c_out * s^2`` channels, PixelShuffle by ``s``, activation: upsamples by ``s``."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, kernel_size=3, padding=1)
        self.shuffle = nn.PixelShuffle(stride)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class CnervStem(nn.Module):
    """Block-wise decoding: (B, d, n_h, n_w) embeddings -> (B, C0, n_h h0, n_w w0) feature map."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c0 = config.widths[0]
        self.cube_h, self.cube_w = config.cube_size
        self.to_cube = nn.Conv2d(config.embedding.dim, self.c0 * self.cube_h * self.cube_w, kernel_size=1)
        self.act = make_activation(config.activation)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        batch, _, n_h, n_w = embedding.shape
        cubes = self.to_cube(embedding).reshape(batch, self.c0, self.cube_h, self.cube_w, n_h, n_w)
        grid = cubes.permute(0, 1, 4, 2, 5, 3).reshape(batch, self.c0, n_h * self.cube_h, n_w * self.cube_w)
        return self.act(grid)


class NervStem(nn.Module):
    """NeRV's stem: (B, 2L) index encoding -> MLP -> (B, C0, H/s, W/s) feature map."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c0 = config.widths[0]
        self.cube_h, self.cube_w = config.cube_size
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.nerv_pe_freqs, config.nerv_hidden),
            make_activation(config.activation),
            nn.Linear(config.nerv_hidden, self.c0 * self.cube_h * self.cube_w),
            make_activation(config.activation),
        )

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        return self.mlp(encoding).reshape(encoding.shape[0], self.c0, self.cube_h, self.cube_w)


class Decoder(nn.Module):
    """Stem, NeRV blocks and RGB head: latent -> (B, 3, padded H, padded W) in [0, 1]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.stem: nn.Module = CnervStem(config) if config.arch == "cnerv" else NervStem(config)
        self.blocks = nn.Sequential(
            *[
                NervBlock(c_in, c_out, stride, config.activation)
                for c_in, c_out, stride in zip(config.widths, config.widths[1:], config.strides)
            ]
        )
        self.head = nn.Conv2d(config.widths[-1], 3, config.head_kernel, padding=config.head_kernel // 2)
        self.out_activation = config.out_activation

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.head(self.blocks(self.stem(latent)))
        if self.out_activation == "sigmoid":
            return torch.sigmoid(out)
        return (torch.tanh(out) + 1.0) * 0.5


class VideoNetwork(nn.Module):
    """Encoder (CNeRV only) + decoder for one ``ModelConfig``.

    ``latent_for`` turns what the caller has (raw block projections for CNeRV, frame times for NeRV)
    into the decoder's input; ``forward`` decodes a latent batch and crops to the original size.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ContentEncoder(config.embedding) if config.arch == "cnerv" else None
        self.decoder = Decoder(config)

    def latent_for(self, inputs: torch.Tensor) -> torch.Tensor:
        """CNeRV: (B, raw_dim, n_h, n_w) raw projections -> embeddings. NeRV: (B,) times -> encodings."""
        if self.encoder is not None:
            return self.encoder(inputs)
        return index_encoding(inputs, self.config.nerv_pe_freqs, self.config.nerv_pe_base)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode latents to (B, 3, height, width) frames in [0, 1], cropped from the padded output."""
        frames = self.decoder(latent)
        return frames[..., : self.config.height, : self.config.width]


def bitstream_tensors(decoder: Decoder) -> list[tuple[str, torch.Tensor]]:
    """The decoder's tensors in the fixed order a bitstream stores them (module construction order)."""
    return [(name, tensor) for name, tensor in decoder.state_dict().items()]


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def to_u8(frames: torch.Tensor) -> torch.Tensor:
    """Decoder output in [0, 1] to the nearest 8-bit level: what a decoder writes and what metrics compare."""
    return frames.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


def half_dtype(device: torch.device) -> torch.dtype:
    """The half-precision type a ``half`` decode runs in: float16 on CUDA (tensor cores); bfloat16 on the
    CPU, where oneDNN has fast bfloat16 convolutions (AVX512-BF16 / AMX) and float16 ones are slow."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def decoder_on(decoder: Decoder, device: torch.device, half: bool | torch.dtype = False) -> Decoder:
    """``decoder`` on ``device`` (channels-last on CUDA), in ``half_dtype`` when ``half`` (or in ``half``
    itself when it is a dtype, e.g. to compare float16 and bfloat16 on one device): then as a copy, so
    the float32 decoder a stream holds is never changed (``Module.to`` converts in place)."""
    if isinstance(half, torch.dtype):
        dtype = half
    else:
        dtype = half_dtype(device) if half else torch.float32
    if next(decoder.parameters()).dtype != dtype:
        decoder = copy.deepcopy(decoder).to(dtype=dtype)
    decoder = decoder.to(device)
    if device.type == "cuda":
        decoder = decoder.to(memory_format=torch.channels_last)
    return decoder


@torch.inference_mode()
def render_latents(decoder: Decoder, latents: torch.Tensor, height: int, width: int, device: torch.device,
                   batch: int = 8, *, half: bool | torch.dtype = False) -> Iterator[torch.Tensor]:
    """Frames ``decoder`` makes from (L, d, n_h, n_w) latents, ``batch`` at a time, cropped to
    ``height`` x ``width``, as (B, 3, H, W) uint8 CPU tensors (streamed: memory stays bounded).

    ``half``: the decoder runs in ``half_dtype(device)``, a few 8-bit levels from the float32 frames and
    not bit-exact; the last step to 8-bit levels is in float32 either way. Default: float32, exact.
    """
    decoder = decoder_on(decoder, device, half)
    dtype = next(decoder.parameters()).dtype
    for start in range(0, latents.shape[0], batch):
        frames = decoder(latents[start : start + batch].to(device, dtype))[..., :height, :width]
        yield to_u8(frames.float()).cpu()


def render_range(decoder: Decoder, latents: torch.Tensor, height: int, width: int, device: torch.device,
                 batch: int = 8, *, start: int = 0, count: int | None = None,
                 half: bool | torch.dtype = False) -> Iterator[torch.Tensor]:
    """Frames ``start`` .. ``start + count - 1`` of ``latents`` (all from ``start`` when ``count`` is None),
    bit for bit as ``render_latents`` makes them over the whole sequence.

    A decoder's float results can depend on how many frames share a batch, so the range is decoded
    in the very batches a full pass uses (those that hold it: at most ``batch - 1`` frames more at
    each end) and cut to the range; the rest of the sequence is never run.
    """
    end = latents.shape[0] if count is None else start + count
    first = start // batch * batch
    last = min(latents.shape[0], -(-end // batch) * batch)
    index = first
    for frames in render_latents(decoder, latents[first:last], height, width, device, batch, half=half):
        lo, hi = max(start - index, 0), min(end - index, frames.shape[0])
        if hi > lo:
            yield frames[lo:hi]
        index += frames.shape[0]


@torch.no_grad()
def render(network: VideoNetwork, inputs: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Decode every frame of ``inputs`` (the network's own inputs: raw projections or times) to
    (N, 3, H, W) uint8 on the CPU, ``batch`` frames at a time."""
    was_training = network.training
    network.eval()
    chunks = []
    for start in range(0, inputs.shape[0], batch):
        chunks.append(to_u8(network(network.latent_for(inputs[start : start + batch]))).cpu())
    network.train(was_training)
    return torch.cat(chunks)
