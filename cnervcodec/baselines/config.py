"""A baseline's configuration as data (torch-free), validated once on construction like ``config``.

The geometry (padding, block grid, 1/16 feature maps) is CNeRV's own ``ModelConfig`` for the same
frame size and grid, so a baseline sees exactly the blocks CNeRV sees. Widths are CNeRV's size
preset scaled by one factor that ``networks.matched_config`` solves for, so that encoder + decoder
hold as many parameters as CNeRV's encoder + decoder at the same ``--size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from cnervcodec.config import (
    SIZE_PRESETS,
    EmbeddingConfig,
    ModelConfig,
    _check_choice,
    _check_float,
    _check_int,
    _check_int_tuple,
    build_model_config,
)
from cnervcodec.errors import BadInputError

AUTOENCODERS = ("convae", "convvae", "convae-star")
PIXEL_INRS = ("siren", "ffn", "nerf-pe", "mlf")
BASELINE_ARCHS = AUTOENCODERS + PIXEL_INRS
ARCH_ALIASES = {"convae*": "convae-star", "nerf": "nerf-pe"}  # the paper's names (quote convae* in a shell)

# ConvAE* (paper: 12k embedding values against CNeRV's 480, a 1.9 M encoder against 47 M): its latent
# is a feature map at 1/16 of the frame with this many times CNeRV's values, and a light encoder.
STAR_EMBEDDING_FACTOR = 25
STAR_ENCODER_FRACTION = 0.25  # its encoder's widths, relative to the matched autoencoder's
INR_LAYERS = 4  # hidden layers of a pixel-wise MLP (SIREN, FFN, MLF use 3-5)
INR_TRAIN_PIXELS = 4096  # pixels sampled per frame and step when a pixel-wise INR trains
MAX_INR_HIDDEN = 4096
# Peak learning rates where CNeRV's 2e-3 is too high: sine networks diverge into noise with it (measured
# on a generated 32x48 clip, 160 steps: SIREN 14.2 dB at 2e-3 against 27.5 dB at 5e-4; MLF best at 1e-3).
DEFAULT_LR = {"siren": 5e-4, "mlf": 1e-3}


@dataclass(frozen=True)
class BaselineConfig:
    """One baseline network: geometry, code length, and widths."""

    arch: str
    height: int
    width: int
    grid: tuple[int, int]  # (n_h, n_w) blocks, as CNeRV's
    embed_dim: int  # values per block (ConvAE*: channels of the 1/16 latent map)
    enc_widths: tuple[int, ...]  # channels after each stride-2 encoder stage (4 stages: 1/16)
    dec_widths: tuple[int, ...] = ()  # autoencoders: decoder widths, as ModelConfig.widths
    hidden: int = 0  # pixel-wise INRs: MLP width
    layers: int = INR_LAYERS
    kl_weight: float = 1e-3  # ConvVAE: weight of the mean KL per latent value against the image loss
    siren_w0: float = 30.0  # SIREN / MLF: frequency scale of the sine layers (SIREN's default)
    fourier_features: int = 128  # FFN: random Fourier features (each gives a sin and a cos)
    fourier_sigma: float = 10.0  # FFN: their standard deviation (Tancik et al.'s choice for images)
    pe_freqs: int = 10  # NeRF positional encoding: frequencies 2^l pi, l < pe_freqs (NeRF's L for x)
    train_pixels: int = INR_TRAIN_PIXELS

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, BASELINE_ARCHS)
        _check_int("height", self.height, 1, 16384)
        _check_int("width", self.width, 1, 16384)
        _check_int_tuple("grid", self.grid, 1, 64, 2, 2)
        _check_int("embed_dim", self.embed_dim, 1, 4096)
        _check_int_tuple("enc_widths", self.enc_widths, 1, 4096, 4, 4)
        if self.arch in AUTOENCODERS:
            _check_int_tuple("dec_widths", self.dec_widths, 1, 4096, 5, 5)
        else:
            _check_int("hidden", self.hidden, 1, MAX_INR_HIDDEN)
        _check_int("layers", self.layers, 1, 16)
        _check_float("kl_weight", self.kl_weight, 0.0, 1e3)
        _check_float("siren_w0", self.siren_w0, 0.1, 1e3)
        _check_int("fourier_features", self.fourier_features, 1, 4096)
        _check_float("fourier_sigma", self.fourier_sigma, 1e-3, 1e4)
        _check_int("pe_freqs", self.pe_freqs, 1, 32)
        _check_int("train_pixels", self.train_pixels, 1, 1 << 24)

    @cached_property
    def geometry(self) -> ModelConfig:
        """CNeRV's config for the same frames and grid: padding, block size, the 1/16 cube size, and (for
        the autoencoders) the decoder, which is CNeRV's decoder at ``dec_widths``."""
        widths = self.dec_widths or SIZE_PRESETS["S"].widths
        return ModelConfig(arch="cnerv", height=self.height, width=self.width,
                           embedding=EmbeddingConfig(grid=self.grid, dim=self.embed_dim), widths=widths)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, rows, cols) of one frame's code: per block, or ConvAE*'s 1/16 map."""
        geometry = self.geometry
        if self.arch == "convae-star":
            padded_h, padded_w = geometry.padded_size
            stride = geometry.total_stride
            return self.embed_dim, padded_h // stride, padded_w // stride
        return self.embed_dim, self.grid[0], self.grid[1]

    @property
    def embedding_values_per_frame(self) -> int:
        channels, rows, cols = self.latent_shape
        return channels * rows * cols

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("grid", "enc_widths", "dec_widths"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> BaselineConfig:
        """Build and validate from untrusted JSON (unknown keys are refused)."""
        if not isinstance(data, dict):
            raise BadInputError("baseline config must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise BadInputError(f"baseline config has unknown fields: {', '.join(sorted(unknown))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise BadInputError(f"baseline config is incomplete ({exc})") from None


def default_lr(arch: str, cnerv_lr: float) -> float:
    """``--lr``'s default for ``arch``: CNeRV's, except for the sine networks."""
    return DEFAULT_LR.get(canonical_arch(arch), cnerv_lr)


def canonical_arch(arch: str) -> str:
    """The arch name a config stores (``convae*`` -> ``convae-star``)."""
    return ARCH_ALIASES.get(arch, arch)


def scaled(widths: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(max(1, round(w * factor)) for w in widths)


def base_config(arch: str, size: str, height: int, width: int, grid: tuple[int, int] | None = None,
                embed_dim: int | None = None) -> tuple[BaselineConfig, ModelConfig]:
    """The unscaled baseline for a clip (widths of CNeRV's ``size`` preset) and the CNeRV config it is
    matched to: the same grid and values per block (ConvAE*: ``STAR_EMBEDDING_FACTOR`` times the values)."""
    arch = canonical_arch(arch)
    _check_choice("arch", arch, BASELINE_ARCHS)
    cnerv = build_model_config("cnerv", size, height, width, grid=grid, embed_dim=embed_dim)
    dec = cnerv.widths
    enc = tuple(reversed(dec[:-1]))  # 3 -> C_n-1 ... -> C0: the decoder's stages in mirror
    dim = cnerv.embedding.dim
    if arch == "convae-star":
        stride = cnerv.total_stride
        positions = (cnerv.padded_size[0] // stride) * (cnerv.padded_size[1] // stride)
        dim = max(1, round(STAR_EMBEDDING_FACTOR * cnerv.embedding.values_per_frame / positions))
    config = BaselineConfig(arch=arch, height=height, width=width, grid=cnerv.embedding.grid, embed_dim=dim,
                            enc_widths=enc, dec_widths=dec if arch in AUTOENCODERS else (),
                            hidden=0 if arch in AUTOENCODERS else 64)
    return config, cnerv


def with_scale(base: BaselineConfig, factor: float, encoder_factor: float) -> BaselineConfig:
    """``base`` with its decoder (or MLP) widths times ``factor`` and its encoder widths times ``encoder_factor``."""
    if base.arch in AUTOENCODERS:
        return replace(base, enc_widths=scaled(base.enc_widths, encoder_factor),
                       dec_widths=scaled(base.dec_widths, factor))
    return replace(base, enc_widths=scaled(base.enc_widths, encoder_factor),
                   hidden=min(MAX_INR_HIDDEN, max(1, round(base.hidden * factor))))
