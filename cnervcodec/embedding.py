"""Frame embeddings: CNeRV's content-adaptive embedding and NeRV's index encoding.

CNeRV (paper section 3.2, eq. 2) projects each block of each colour channel onto a fixed separable
sin/cos basis, ``raw[c, i, j] = mean_{x,y} Img(x, y, c) * phi_i(x) * psi_j(y)``, then reduces the raw
vector with one learned 1x1 convolution. The projection has no learned parameters, so it is computed
once per frame (``block_projection``) and cached by the caller; only ``ContentEncoder`` is trained.

NeRV's baseline embeds the frame index ``t`` in [0, 1] as ``(sin(b^l pi t), cos(b^l pi t))``.

This module holds no training loop and does no I/O.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from cnervcodec.config import EmbeddingConfig


def basis_1d(n_px: int, freqs: int, base: float, device: torch.device | None = None) -> torch.Tensor:
    """The 2L basis functions along one block axis, sampled at ``n_px`` pixels: (2L, n_px) float32.

    Coordinates are pixel positions normalized to [-1, 1] (first pixel -1, last +1). Rows are
    ``sin(b^l pi x)`` for l = 0..L-1, then ``cos(b^l pi x)`` for l = 0..L-1. Computed in float64
    so that large frequencies stay accurate, then cast.
    """
    coords = torch.linspace(-1.0, 1.0, n_px, dtype=torch.float64) if n_px > 1 else torch.zeros(1, dtype=torch.float64)
    freqs_rad = math.pi * base ** torch.arange(freqs, dtype=torch.float64)  # (L,)
    angles = freqs_rad[:, None] * coords[None, :]  # (L, n_px)
    return torch.cat([torch.sin(angles), torch.cos(angles)]).to(device=device, dtype=torch.float32)


def pad_replicate(frames: torch.Tensor, padded_size: tuple[int, int]) -> torch.Tensor:
    """Pad (B, C, H, W) frames at the bottom/right by replicating edge pixels up to ``padded_size``."""
    pad_h = padded_size[0] - frames.shape[-2]
    pad_w = padded_size[1] - frames.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return frames
    return F.pad(frames, (0, pad_w, 0, pad_h), mode="replicate")


def padded_floats(batch_u8: torch.Tensor, padded_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """uint8 frames -> [0, 1] floats on ``device``, replicate-padded to ``padded_size``: what an encoder reads."""
    return pad_replicate(batch_u8.to(device).float().div_(255.0), padded_size)


def block_projection(frames: torch.Tensor, config: EmbeddingConfig) -> torch.Tensor:
    """Raw content-adaptive embedding of padded frames: (B, 3, H, W) float in [0, 1] -> (B, raw_dim, n_h, n_w).

    H and W must divide by the grid. The channel order of the result is (colour, row function,
    column function), row-major, matching eq. 2's ``(c, i, j)``.
    """
    batch, channels, height, width = frames.shape
    n_h, n_w = config.grid
    if height % n_h or width % n_w:
        raise ValueError(f"frame {width}x{height} does not divide into a {n_h}x{n_w} grid")
    block_h, block_w = height // n_h, width // n_w
    rows = basis_1d(block_h, config.freqs, config.base, frames.device).to(frames.dtype)  # (2L, block_h)
    cols = basis_1d(block_w, config.freqs, config.base, frames.device).to(frames.dtype)  # (2L, block_w)
    blocks = frames.reshape(batch, channels, n_h, block_h, n_w, block_w)
    raw = torch.einsum("bcpxqy,ix,jy->bcijpq", blocks, rows, cols) / (block_h * block_w)
    return raw.reshape(batch, channels * rows.shape[0] * cols.shape[0], n_h, n_w)


def _coefficient_rows(raw: torch.Tensor) -> torch.Tensor:
    """(N, raw_dim, n_h, n_w) -> (raw_dim, N * n_h * n_w) float64: every value of each coefficient in a row."""
    return raw.transpose(0, 1).reshape(raw.shape[1], -1).double()


class ContentEncoder(nn.Module):
    """CNeRV's whole learned encoder: standardize the raw projection, then one 1x1 convolution.

    The per-coefficient mean and standard deviation are fixed buffers measured on the training
    frames (``set_statistics``): the raw coefficients differ in scale by orders of magnitude, and
    standardizing them makes the single layer far easier to fit. They travel with the weights.
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("raw_mean", torch.zeros(config.raw_dim))
        self.register_buffer("raw_std", torch.ones(config.raw_dim))
        self.reduce = nn.Conv2d(config.raw_dim, config.dim, kernel_size=1)

    @torch.no_grad()
    def set_statistics(self, raw) -> None:
        """Measure the standardization from raw projections (N, raw_dim, n_h, n_w) of training frames,
        or from a function returning an iterator over such pieces (a long clip's projections are never
        held at once; two more passes). One piece gives exactly the one-tensor result."""
        pieces = (lambda: iter((raw,))) if isinstance(raw, torch.Tensor) else raw
        chunks = pieces()
        first = _coefficient_rows(next(chunks))
        second = next(chunks, None)
        if second is None:
            mean = first.mean(dim=1)
            std = first.std(dim=1, unbiased=False) if first.shape[1] > 1 else torch.ones_like(mean)
        else:  # the pieces already computed are summed, not computed again
            values = itertools.chain((first, _coefficient_rows(second)), map(_coefficient_rows, chunks))
            rows = [(piece.shape[1], piece.sum(dim=1)) for piece in values]
            count = sum(n for n, _ in rows)
            mean = torch.stack([total for _, total in rows]).sum(dim=0) / count
            squares = sum(((_coefficient_rows(piece) - mean[:, None]) ** 2).sum(dim=1) for piece in pieces())
            std = (squares / count).sqrt()
        self.raw_mean.copy_(mean.float())
        self.raw_std.copy_(std.clamp_min(1e-6).float())

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, raw_dim, n_h, n_w) raw projection -> (B, d, n_h, n_w) embedding."""
        scaled = (raw - self.raw_mean[None, :, None, None]) / self.raw_std[None, :, None, None]
        return self.reduce(scaled)


def index_encoding(t: torch.Tensor, freqs: int, base: float) -> torch.Tensor:
    """NeRV's positional encoding of frame indices ``t`` in [0, 1]: (B,) -> (B, 2L).

    Computed in float64: at b = 1.25, L = 80 the top frequency is ~1e8 rad, beyond float32's reach.
    """
    freqs_rad = math.pi * base ** torch.arange(freqs, dtype=torch.float64, device=t.device)
    angles = t.double()[:, None] * freqs_rad[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def frame_times(indices: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Map frame indices 0..n_frames-1 to NeRV's t in [0, 1]."""
    return indices.double() / max(1, n_frames - 1)


def network_inputs(
    arch: str, config: EmbeddingConfig, padded_size: tuple[int, int], frames_u8: torch.Tensor, batch: int = 16
) -> torch.Tensor:
    """What the network consumes for each frame, computed once and reused every epoch.

    CNeRV: raw block projections (T, raw_dim, n_h, n_w) of the replicate-padded frames, computed in
    batches of ``batch`` frames on the frames' device so that float copies of the whole clip are
    never held. NeRV: frame times (T,) in [0, 1].
    """
    n_frames = frames_u8.shape[0]
    if arch != "cnerv":
        return frame_times(torch.arange(n_frames, device=frames_u8.device), n_frames)
    chunks = []
    for start in range(0, n_frames, batch):
        chunk = padded_floats(frames_u8[start : start + batch], padded_size, frames_u8.device)
        chunks.append(block_projection(chunk, config))
    return torch.cat(chunks)
