"""Configuration as data: frozen dataclasses for the network and its fitting.

Every hyperparameter of the CNeRV network (block grid, embedding length, basis, decoder widths and
strides, activations) and of the NeRV baseline lives here, because the container will carry the
network config and a decoder must rebuild the exact same network from it. ``to_dict``/``from_dict``
round-trip through plain JSON types. Every config validates itself once, when it is made
(``__post_init__``, so ``replace`` and ``from_dict`` check too) against sane limits: a config read
from a file is untrusted data, and no caller needs to validate again. ``validate()`` stays public
for the one place that must re-check a config it did not make: the writer's safety net.

This module must not import torch, av or click.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from cnervcodec.errors import BadInputError

ARCHS = ("cnerv", "nerv")
ACTIVATIONS = ("gelu", "relu", "silu", "leaky_relu")
OUT_ACTIVATIONS = ("sigmoid", "tanh01")
SIZES = ("S", "M", "L")
LOSSES = ("l1-ssim", "mse", "yuv-mse")
OPTIONAL_MODEL_KEYS: frozenset[str] = frozenset()  # fields added after files were written (absent: default)

# Sane limits for anything read from a file or the command line.
MAX_SIDE_PX = 16384
MAX_GRID = 64
MAX_EMBED_DIM = 4096
MAX_FREQS = 64
MAX_WIDTH = 4096
MAX_STAGES = 8
MAX_STRIDE = 8
MAX_PE_FREQS = 256
MAX_HIDDEN = 1 << 16

# ``decode --interpolate N``: N-1 frames decoded from blended embeddings between each pair of frames.
MAX_INTERPOLATE = 16
INTERPOLATION_MODES = ("linear", "slerp")

BLOCK_TARGET_PX = 240  # grid "auto": blocks of at most this many pixels a side (paper: 2x4 at 480x960)


@dataclass(frozen=True)
class SizePreset:
    """Decoder widths and embedding length of one named model size."""

    widths: tuple[int, ...]  # C0 (cube channels) .. C_n (last NeRV block output)
    embed_dim: int  # d, values per block


# S must fit a 176x144, 120-frame clip in a few minutes on a 2-core CPU.
SIZE_PRESETS: dict[str, SizePreset] = {
    "S": SizePreset(widths=(64, 48, 32, 24, 16), embed_dim=60),
    "M": SizePreset(widths=(128, 96, 64, 48, 32), embed_dim=60),
    "L": SizePreset(widths=(192, 144, 96, 72, 48), embed_dim=60),
}


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInputError(f"config field {name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _check_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"config field {name} must be a finite number, got {value!r}")
    if not low <= float(value) <= high:
        raise BadInputError(f"config field {name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadInputError(f"config field {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_int_tuple(name: str, value: Any, low: int, high: int, min_len: int, max_len: int) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not min_len <= len(value) <= max_len:
        raise BadInputError(f"config field {name} must be a list of {min_len} to {max_len} integers, got {value!r}")
    return tuple(_check_int(f"{name}[{i}]", v, low, high) for i, v in enumerate(value))


@dataclass(frozen=True)
class EmbeddingConfig:
    """The content-adaptive embedding (paper eq. 2): block grid, basis, and the learned layer's width.

    Raw length per block is ``3 * (2 * freqs) ** 2``; the one learned 1x1 layer maps it to ``dim``.
    """

    grid: tuple[int, int] = (1, 1)  # (n_h, n_w) blocks
    dim: int = 60  # d: embedding values per block
    freqs: int = 15  # L: sin/cos frequencies per axis
    base: float = 1.15  # b: frequency of function l is b**l * pi

    def __post_init__(self) -> None:
        self.validate()

    @property
    def raw_dim(self) -> int:
        return 3 * (2 * self.freqs) ** 2

    @property
    def values_per_frame(self) -> int:
        return self.dim * self.grid[0] * self.grid[1]

    def validate(self) -> EmbeddingConfig:
        _check_int_tuple("embedding.grid", self.grid, 1, MAX_GRID, 2, 2)
        _check_int("embedding.dim", self.dim, 1, MAX_EMBED_DIM)
        _check_int("embedding.freqs", self.freqs, 1, MAX_FREQS)
        _check_float("embedding.base", self.base, 1.0001, 4.0)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingConfig:
        _require_keys("embedding", data, ("grid", "dim", "freqs", "base"))
        cfg = cls(
            grid=tuple(data["grid"]) if isinstance(data["grid"], (list, tuple)) else data["grid"],
            dim=data["dim"],
            freqs=data["freqs"],
            base=data["base"],
        )
        return cfg


@dataclass(frozen=True)
class ModelConfig:
    """The whole network: frame geometry, embedding (CNeRV) or index encoding (NeRV), and decoder.

    The decoder is shared by both architectures: a stem that produces a ``widths[0]``-channel map at
    1/``total_stride`` of the padded frame, then one NeRV block per stride, then an RGB head.
    """

    arch: str = "cnerv"
    height: int = 144  # original frame height in pixels (output is cropped to it)
    width: int = 176
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    widths: tuple[int, ...] = SIZE_PRESETS["S"].widths
    strides: tuple[int, ...] = (2, 2, 2, 2)
    activation: str = "gelu"
    out_activation: str = "tanh01"
    head_kernel: int = 3
    nerv_pe_base: float = 1.25  # NeRV baseline: index encoding b
    nerv_pe_freqs: int = 80  # NeRV baseline: index encoding L
    nerv_hidden: int = 0  # NeRV baseline: MLP hidden width (chosen to match CNeRV's size)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    @property
    def grid(self) -> tuple[int, int]:
        """Block grid of the stem; NeRV has a single block covering the frame."""
        return self.embedding.grid if self.arch == "cnerv" else (1, 1)

    @property
    def block_size(self) -> tuple[int, int]:
        """(height, width) of one block in pixels, after padding."""
        n_h, n_w = self.grid
        unit_h, unit_w = n_h * self.total_stride, n_w * self.total_stride
        padded_h = -(-self.height // unit_h) * unit_h
        padded_w = -(-self.width // unit_w) * unit_w
        return padded_h // n_h, padded_w // n_w

    @property
    def padded_size(self) -> tuple[int, int]:
        """(height, width) the network works at: a whole number of blocks, each divisible by the stride."""
        block_h, block_w = self.block_size
        return block_h * self.grid[0], block_w * self.grid[1]

    @property
    def cube_size(self) -> tuple[int, int]:
        """(h0, w0) of the feature cube that each block's embedding decodes to."""
        block_h, block_w = self.block_size
        return block_h // self.total_stride, block_w // self.total_stride

    def decoder_tensor_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(name, shape) of every decoder tensor, in the order a bitstream stores them, by arithmetic
        alone: a reader checks a file's records against these before it allocates anything."""
        c0, (h0, w0) = self.widths[0], self.cube_size
        cube = c0 * h0 * w0
        if self.arch == "cnerv":
            stem = (("stem.to_cube.weight", (cube, self.embedding.dim, 1, 1)), ("stem.to_cube.bias", (cube,)))
        else:
            hidden = self.nerv_hidden
            stem = (("stem.mlp.0.weight", (hidden, 2 * self.nerv_pe_freqs)), ("stem.mlp.0.bias", (hidden,)),
                    ("stem.mlp.2.weight", (cube, hidden)), ("stem.mlp.2.bias", (cube,)))
        blocks = tuple(item for i, (c_in, c_out, s) in enumerate(zip(self.widths, self.widths[1:], self.strides))
                       for item in ((f"blocks.{i}.conv.weight", (c_out * s * s, c_in, 3, 3)),
                                    (f"blocks.{i}.conv.bias", (c_out * s * s,))))
        k = self.head_kernel
        return stem + blocks + (("head.weight", (3, self.widths[-1], k, k)), ("head.bias", (3,)))

    def decoder_param_count(self) -> int:
        """Parameters a bitstream must carry to decode (weights and biases), computed without torch."""
        return sum(math.prod(shape) for _, shape in self.decoder_tensor_shapes())

    def encoder_param_count(self) -> int:
        """Parameters of CNeRV's one learned encoder layer (0 for NeRV): not needed to decode."""
        if self.arch != "cnerv":
            return 0
        return (self.embedding.raw_dim + 1) * self.embedding.dim

    def validate(self) -> ModelConfig:
        _check_choice("arch", self.arch, ARCHS)
        _check_int("height", self.height, 1, MAX_SIDE_PX)
        _check_int("width", self.width, 1, MAX_SIDE_PX)
        if not isinstance(self.embedding, EmbeddingConfig):
            raise BadInputError(f"config field embedding must be an EmbeddingConfig, got {self.embedding!r}")
        self.embedding.validate()
        strides = _check_int_tuple("strides", self.strides, 1, MAX_STRIDE, 1, MAX_STAGES)
        _check_int_tuple("widths", self.widths, 1, MAX_WIDTH, len(strides) + 1, len(strides) + 1)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("out_activation", self.out_activation, OUT_ACTIVATIONS)
        _check_int("head_kernel", self.head_kernel, 1, 7)
        if self.head_kernel % 2 == 0:
            raise BadInputError(f"config field head_kernel must be odd, got {self.head_kernel}")
        _check_float("nerv_pe_base", self.nerv_pe_base, 1.0001, 4.0)
        _check_int("nerv_pe_freqs", self.nerv_pe_freqs, 1, MAX_PE_FREQS)
        _check_int("nerv_hidden", self.nerv_hidden, 0 if self.arch == "cnerv" else 1, MAX_HIDDEN)
        padded_h, padded_w = self.padded_size
        if padded_h > MAX_SIDE_PX or padded_w > MAX_SIDE_PX:
            raise BadInputError(f"padded frame {padded_w}x{padded_h} exceeds {MAX_SIDE_PX} px")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["embedding"]["grid"] = list(self.embedding.grid)
        data["widths"] = list(self.widths)
        data["strides"] = list(self.strides)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build and validate a config from untrusted JSON data (unknown keys are refused)."""
        if not isinstance(data, dict):
            raise BadInputError("model config must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise BadInputError(f"model config has unknown fields: {', '.join(sorted(unknown))}")
        _require_keys("model", data, tuple(known - OPTIONAL_MODEL_KEYS))
        values = dict(data)
        if not isinstance(values["embedding"], dict):
            raise BadInputError("config field embedding must be a JSON object")
        values["embedding"] = EmbeddingConfig.from_dict(values["embedding"])
        for key in ("widths", "strides"):
            if isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class FitConfig:
    """The training recipe: loss mix, Adam, warm-up + cosine schedule, batches, seed, training frames."""

    epochs: int = 100
    lr: float = 2e-3
    batch: int = 2
    warmup_frac: float = 0.2
    min_lr_frac: float = 0.0  # the cosine ends at lr * min_lr_frac
    l1_weight: float = 0.7  # alpha in alpha * L1 + (1 - alpha) * (1 - SSIM)
    loss: str = "l1-ssim"  # or "mse" (RGB) or "yuv-mse" (6:1:1 on the 4:2:0 planes)
    seed: int = 0
    holdout: int = 0  # keep 1 frame in every `holdout` out of training (0: train on all)
    # Train on frames 0, K, 2K, ... only (1: every frame). Unlike `holdout`, this is an encoder speed
    # setting: CNeRV's encoder still embeds every frame from its content, so the file holds them all.
    fit_every: int = 1
    # Rate-aware training (rate_training): D + rate_lambda * bpp with learned quantization steps; 0: off
    # (quantization after the fit, eq. 4). CNeRV only: a NeRV fit ignores it.
    rate_lambda: float = 0.0
    # With a rate-aware fit: the estimated bits of the coded weights and embeddings to aim at; lambda then
    # starts at ``rate_lambda`` and is adapted during the fit until the estimate meets it (0: lambda fixed).
    rate_target_bits: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> FitConfig:
        _check_int("epochs", self.epochs, 1, 1_000_000)
        _check_float("lr", self.lr, 1e-8, 1.0)
        _check_int("batch", self.batch, 1, 4096)
        _check_float("warmup_frac", self.warmup_frac, 0.0, 0.9)
        _check_float("min_lr_frac", self.min_lr_frac, 0.0, 1.0)
        _check_float("l1_weight", self.l1_weight, 0.0, 1.0)
        _check_choice("loss", self.loss, LOSSES)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        if self.holdout == 1 or not 0 <= self.holdout <= 1_000_000:
            raise BadInputError(f"--holdout must be 0 (off) or at least 2, got {self.holdout}")
        _check_int("fit_every", self.fit_every, 1, 1000)
        _check_float("lambda", self.rate_lambda, 0.0, 1e6)
        _check_float("rate_target_bits", self.rate_target_bits, 0.0, 1e15)
        if self.holdout and self.fit_every > 1:
            raise BadInputError("--holdout and --fit-every both choose the training frames: pass one or the other")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        if not isinstance(data, dict):
            raise BadInputError("fit config must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise BadInputError(f"fit config has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class CompressionConfig:
    """Quantization and coding of a fitted network (paper section 3.3); pruning is ``PruneConfig``'s.

    ``weight_axis``/``embed_axis``: -1 quantizes each tensor with one (offset, scale) pair; 0 (decoder
    weights: per output channel) or 1 (embeddings: per embedding value) give one pair per slice.
    """

    weight_bits: int = 8
    embed_bits: int = 6
    weight_axis: int = -1
    embed_axis: int = -1
    # A rate-aware fit's learned steps, times these factors, instead of eq. 4 at the bit depths above
    # (None: eq. 4). The rate search scales them to land on a target (C3's post-training step search).
    weight_step_scale: float | None = None
    embed_step_scale: float | None = None

    def __post_init__(self) -> None:
        _check_int("bits", self.weight_bits, 1, 16)
        _check_int("embed-bits", self.embed_bits, 1, 16)
        _check_int("weight_axis", self.weight_axis, -1, 0)
        _check_int("embed_axis", self.embed_axis, -1, 1)
        for name in ("weight_step_scale", "embed_step_scale"):
            if getattr(self, name) is not None:
                _check_float(name, getattr(self, name), 1e-3, 1e3)

    @property
    def learned_steps(self) -> bool:
        return self.weight_step_scale is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PruneConfig:
    """Pruning, a training step: global magnitude pruning of ``fraction`` of the decoder's weights, then
    ``epochs`` of fine-tuning at ``lr_frac`` times the fit's peak lr with the mask held (paper section 3.3)."""

    fraction: float = 0.0  # of decoder weights set to zero; 0: no pruning and no fine-tune
    epochs: int = 10
    lr_frac: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or \
                not 0.0 <= self.fraction < 1.0:
            raise BadInputError(f"--prune must be in [0, 1), got {self.fraction!r}")
        _check_int("prune_epochs", self.epochs, 0, 1_000_000)
        _check_float("prune_lr_frac", self.lr_frac, 1e-6, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """The keys the ``meta`` chunk has always used for these settings."""
        return {"prune": self.fraction, "prune_epochs": self.epochs, "prune_lr_frac": self.lr_frac}


@dataclass(frozen=True)
class Preset:
    """``--preset``: how long to fit and to fine-tune after pruning."""

    epochs: int
    prune_epochs: int


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "fast": Preset(epochs=30, prune_epochs=5),
    "medium": Preset(epochs=100, prune_epochs=10),
    "slow": Preset(epochs=300, prune_epochs=30),
})


def _require_keys(what: str, data: dict[str, Any], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise BadInputError(f"{what} config is missing fields: {', '.join(missing)}")


def auto_grid(height: int, width: int) -> tuple[int, int]:
    """Grid 'auto': the fewest blocks of at most BLOCK_TARGET_PX a side, at least 1x1 (paper: 2x4 at 480x960).

    Rounding up rather than to nearest was measured better on small clips: bikes at 320x136, step 3,
    100 epochs on CUDA, seen/unseen PSNR 29.85/22.89 dB with a 1x1 grid vs 30.75/23.31 dB with 1x2.
    """
    return max(1, -(-height // BLOCK_TARGET_PX)), max(1, -(-width // BLOCK_TARGET_PX))


def parse_grid(text: str, height: int, width: int) -> tuple[int, int]:
    """Parse ``--grid`` ("auto" or "NHxNW", rows x columns)."""
    if text == "auto":
        return auto_grid(height, width)
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise BadInputError(f"--grid must be 'auto' or ROWSxCOLS such as 2x4, got {text!r}")
    grid = (int(parts[0]), int(parts[1]))
    if not all(1 <= g <= MAX_GRID for g in grid):
        raise BadInputError(f"--grid values must be between 1 and {MAX_GRID}, got {text!r}")
    return grid


def build_model_config(
    arch: str,
    size: str,
    height: int,
    width: int,
    grid: tuple[int, int] | None = None,
    embed_dim: int | None = None,
    n_frames: int = 1,
) -> ModelConfig:
    """The model config for a clip: a size preset, the clip's geometry, and NeRV matched in size.

    NeRV's MLP hidden width is chosen so that its decoder holds as many parameters as CNeRV's decoder
    plus all of CNeRV's per-frame embedding values (the paper compares at equal total size).
    """
    _check_choice("size", size, SIZES)
    preset = SIZE_PRESETS[size]
    embedding = EmbeddingConfig(grid=grid or auto_grid(height, width), dim=embed_dim or preset.embed_dim)
    cnerv = ModelConfig(arch="cnerv", height=height, width=width, embedding=embedding, widths=preset.widths)
    if arch == "cnerv":
        return cnerv
    _check_choice("arch", arch, ARCHS)
    target = cnerv.decoder_param_count() + n_frames * embedding.values_per_frame
    probe = replace(cnerv, arch="nerv", nerv_hidden=1)
    h0, w0 = probe.cube_size
    per_hidden = (2 * probe.nerv_pe_freqs + 1) + probe.widths[0] * h0 * w0
    fixed = probe.decoder_param_count() - per_hidden
    hidden = max(1, round((target - fixed) / per_hidden))
    return replace(probe, nerv_hidden=hidden)
