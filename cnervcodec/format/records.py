"""The plain data a ``.cnrv`` or ``.cnrvm`` carries, as frozen dataclasses: no bytes and no logic.

``quantize`` (``QuantParams``), ``audio`` and ``video_out`` (``AudioTrack``, ``ColorInfo``) import
these for their types alone; the layouts (``stream``, ``model_file``) turn them into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

CODER_RAW = 0  # fixed-width bits, no model: for tiny tensors where a model costs more than it saves
CODER_CATEGORICAL = 1  # constriction ANS with a categorical model from the symbol counts
CODER_LAPLACE = 2  # ANS with a discrete Laplace model of four integers (format 1.3, streams declaring it in CODR)
CODER_NAMES = ("raw", "categorical", "laplace")  # indexed by coder id
BASE_CODERS = (CODER_RAW, CODER_CATEGORICAL)  # what every 1.x reader knows; others are declared by the file
STREAM_CODERS = (CODER_RAW, CODER_CATEGORICAL, CODER_LAPLACE)  # what a .cnrv may use (1.3: beyond the base, in CODR)

AXIS_TENSOR = -1  # one (offset, scale) pair for the whole tensor


@dataclass(frozen=True)
class ColorInfo:
    """The source's colour tags as FFmpeg AVCOL_* codes (0..255; 2 = unspecified), for the output."""

    color_range: int = 0
    matrix: int = 2
    primaries: int = 2
    transfer: int = 2


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Eq. 4 parameters: value = offset + symbol * scale, per tensor or per slice along ``axis``."""

    bits: int
    axis: int  # AXIS_TENSOR, or the tensor axis that owns one (offset, scale) pair per index
    offsets: np.ndarray  # (n_ranges,) float32
    scales: np.ndarray  # (n_ranges,) float32, >= 0


@dataclass(frozen=True)
class LaplaceModel:
    """A discrete Laplace (two-sided geometric) model over symbols ``first .. first + size - 1``:
    symbol ``s`` is weighted by distance ``|s - center|`` with the decay ``decay / 2**16`` per step
    (``entropy.laplace_weights``; bitstream_spec.md section 6, coder 2)."""

    first: int
    size: int
    center: int
    decay: int  # 1 .. 2**16 - 1


@dataclass(frozen=True, eq=False)
class SymbolStream:
    """Integer symbols in [0, 2**bits), coded by one of the CODER_* methods."""

    coder: int
    n_symbols: int
    payload: bytes  # CODER_RAW: little-endian packed bits; CODER_CATEGORICAL and CODER_LAPLACE: uint32 LE words
    first_symbol: int = 0  # CODER_CATEGORICAL: the symbol that counts[0] counts
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # (n,) uint32
    laplace: LaplaceModel | None = None  # CODER_LAPLACE: the model


@dataclass(frozen=True, eq=False)
class TensorRecord:
    """One quantized, entropy-coded tensor."""

    shape: tuple[int, ...]
    quant: QuantParams
    stream: SymbolStream


@dataclass(frozen=True)
class AudioPacket:
    pts: int | None
    dts: int | None
    duration: int
    is_keyframe: bool
    data: bytes


@dataclass(frozen=True)
class AudioTrack:
    """The input's audio stream, copied as packets so that decode can mux it back unchanged."""

    codec: str  # FFmpeg codec name, e.g. "aac"
    sample_rate: int
    channels: int
    layout: str  # FFmpeg channel layout name, e.g. "stereo"
    sample_format: str  # e.g. "fltp"
    time_base: Fraction
    bit_rate: int
    extradata: bytes
    packets: tuple[AudioPacket, ...]
