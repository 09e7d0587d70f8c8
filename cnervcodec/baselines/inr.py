"""The paper's pixel-wise baselines: SIREN, FFN, NeRF positional encoding and MLF (CNeRV paper, table 8).

A pixel-wise representation maps one pixel's coordinate to its colour. To encode frames it never
saw, the paper follows MLF: "we train a separate auto-encoder to provide content information besides
the coordinate input ... keep the latent code the same length as CNeRV". Here that content code is
the ConvAE encoder's d values per block (``ConvEncoder``, trained jointly with the MLP), and each
pixel's MLP input is its coordinate within its block (in [-1, 1], as CNeRV's basis) with its block's
code: local functions, as in MLF. The four differ in how the coordinate enters:

* SIREN (Sitzmann et al. 2020): coordinate and code into sine layers, ``sin(w0 (W x + b))``.
* FFN (Tancik et al. 2020): random Gaussian Fourier features of the coordinate, ReLU MLP.
* NeRF (Mildenhall et al. 2020): ``sin / cos(2^l pi x)`` positional encoding, ReLU MLP.
* MLF (Mehta et al. 2021): a sine synthesis network on the coordinate whose every hidden layer is
  multiplied by the matching layer of a ReLU modulator network fed with the code.

Training evaluates the MLP on ``train_pixels`` random pixels a frame (the encoder still sees whole
frames); decoding runs every pixel in chunks, so memory stays bounded at any frame size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnervcodec.baselines.autoencoders import ConvEncoder
from cnervcodec.baselines.config import BaselineConfig

DECODE_CHUNK_PIXELS = 16384


def pixel_layout(config: BaselineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pixel of the (unpadded) frame, row-major: its (x, y) within its block in [-1, 1] (P, 2)
    and its block's flat index (P,), the grid as CNeRV's padded geometry lays it out."""
    block_h, block_w = config.geometry.block_size
    rows, cols = torch.arange(config.height), torch.arange(config.width)
    local_y = torch.linspace(-1.0, 1.0, block_h) if block_h > 1 else torch.zeros(1)
    local_x = torch.linspace(-1.0, 1.0, block_w) if block_w > 1 else torch.zeros(1)
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    coords = torch.stack((local_x[xx % block_w], local_y[yy % block_h]), dim=-1).reshape(-1, 2)
    blocks = ((yy // block_h) * config.grid[1] + xx // block_w).reshape(-1)
    return coords, blocks


class SineLayer(nn.Module):
    """``sin(w0 (W x + b))`` with SIREN's initialisation (first layer U(-1/n, 1/n), others U(-c, c) with
    c = sqrt(6 / n) / w0), which keeps activations well spread through depth."""

    def __init__(self, n_in: int, n_out: int, w0: float, first: bool) -> None:
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(n_in, n_out)
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


def relu_mlp(n_in: int, hidden: int, layers: int) -> nn.Sequential:
    parts: list[nn.Module] = []
    for i in range(layers):
        parts += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*parts, nn.Linear(hidden, 3))


class CoordinateFeatures(nn.Module):
    """What each MLP sees of the coordinate: itself (SIREN, MLF), Fourier features (FFN) or NeRF's encoding."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.arch = config.arch
        if self.arch == "ffn":
            generator = torch.Generator().manual_seed(0)  # fixed, not learned; saved with the weights
            gaussian = torch.randn(config.fourier_features, 2, generator=generator) * config.fourier_sigma
            self.register_buffer("fourier_matrix", gaussian)
        self.pe_freqs = config.pe_freqs
        if self.arch == "nerf-pe":  # pi 2^l, fixed: computed once, not saved (the config says it)
            self.register_buffer("pe_rad", math.pi * 2.0 ** torch.arange(config.pe_freqs), persistent=False)

    @property
    def width(self) -> int:
        if self.arch == "ffn":
            return 2 * self.fourier_matrix.shape[0]
        if self.arch == "nerf-pe":
            return 2 + 4 * self.pe_freqs
        return 2

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if self.arch == "ffn":
            angles = 2.0 * math.pi * coords @ self.fourier_matrix.T
            return torch.cat((angles.sin(), angles.cos()), dim=-1)
        if self.arch == "nerf-pe":
            angles = (coords[..., None] * self.pe_rad).flatten(-2)
            return torch.cat((coords, angles.sin(), angles.cos()), dim=-1)
        return coords


class ModulatedSine(nn.Module):
    """MLF's decoder: synthesis ``s_i = m_i * sin(w0 (W_i s_{i-1} + b_i))`` on the coordinate, with
    modulations ``m_1 = ReLU(A_1 z)``, ``m_i = ReLU(A_i [m_{i-1}, z])`` from the code z."""

    def __init__(self, config: BaselineConfig, n_coord: int) -> None:
        super().__init__()
        hidden, dim = config.hidden, config.embed_dim
        self.synthesis = nn.ModuleList(SineLayer(n_coord if i == 0 else hidden, hidden, config.siren_w0, i == 0)
                                       for i in range(config.layers))
        self.modulator = nn.ModuleList(nn.Linear(dim if i == 0 else hidden + dim, hidden) for i in range(config.layers))
        self.out = nn.Linear(hidden, 3)

    def forward(self, coords: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        synth, modulation = coords.expand(*code.shape[:-1], coords.shape[-1]), None
        for sine, modulate in zip(self.synthesis, self.modulator):
            modulation = torch.relu(modulate(code if modulation is None else torch.cat((modulation, code), dim=-1)))
            synth = modulation * sine(synth)
        return self.out(synth)


class ConcatMLP(nn.Module):
    """SIREN, FFN and NeRF-PE: the coordinate's features and the block's code, concatenated, through one MLP."""

    def __init__(self, config: BaselineConfig, n_coord: int) -> None:
        super().__init__()
        n_in, hidden = n_coord + config.embed_dim, config.hidden
        if config.arch == "siren":
            sines = [SineLayer(n_in if i == 0 else hidden, hidden, config.siren_w0, i == 0) for i in range(config.layers)]
            self.mlp = nn.Sequential(*sines, nn.Linear(hidden, 3))
        else:
            self.mlp = relu_mlp(n_in, hidden, config.layers)

    def forward(self, coords: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat((coords.expand(*code.shape[:-1], coords.shape[-1]), code), dim=-1))


class PixelINR(nn.Module):
    """A content-conditioned pixel-wise representation: ``ConvEncoder`` codes per block, an MLP per pixel."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config, config.embed_dim)
        self.features = CoordinateFeatures(config)
        head = ModulatedSine if config.arch == "mlf" else ConcatMLP
        self.decoder = head(config, self.features.width)
        coords, blocks = pixel_layout(config)
        self.register_buffer("pixel_coords", coords, persistent=False)
        self.register_buffer("pixel_blocks", blocks, persistent=False)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def decode_pixels(self, code: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] of ``pixels`` (P,) flat indices of every frame of ``code`` (B, d, n_h, n_w): (B, P, 3)."""
        block_codes = code.flatten(2).transpose(1, 2)[:, self.pixel_blocks[pixels]]  # (B, P, d)
        rgb = self.decoder(self.features(self.pixel_coords[pixels]), block_codes)
        return (torch.tanh(rgb) + 1.0) * 0.5

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Whole frames (B, 3, H, W), ``DECODE_CHUNK_PIXELS`` pixels at a time."""
        n_pixels = self.config.height * self.config.width
        all_pixels = torch.arange(n_pixels, device=code.device)
        parts = [self.decode_pixels(code, all_pixels[i : i + DECODE_CHUNK_PIXELS])
                 for i in range(0, n_pixels, DECODE_CHUNK_PIXELS)]
        rgb = torch.cat(parts, dim=1)
        return rgb.transpose(1, 2).reshape(code.shape[0], 3, self.config.height, self.config.width)

    def train_forward(self, frames: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted RGB of ``train_pixels`` random pixels (B, P, 3), their flat indices (P,)): one random
        set per step, shared by the batch's frames."""
        n_pixels = self.config.height * self.config.width
        count = min(n_pixels, self.config.train_pixels)
        pixels = torch.randperm(n_pixels, generator=generator)[:count].to(frames.device)
        return self.decode_pixels(self.encode(frames), pixels), pixels

