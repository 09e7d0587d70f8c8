"""Rate control: a network sized for the rate, then the bit depths that land the file on it.

``cnerv encode --bpp B`` (or ``--kbps R``) turns the target into bytes for the video part of the file
(model, embeddings, headers; audio is extra), then

1. ``solve`` picks a network of the size family (``family_config``: one width ``c`` sets the decoder
   widths, the embedding length ``d`` and, with a fine grid of blocks of at most ``FAMILY_BLOCK_PX``,
   the per-frame code), the largest whose predicted file at the nominal bit depths fits the target.
   The prediction (``predicted_bytes``) is a table of coded bits per decoder weight and per embedding
   value at each bit depth, measured on real files (``benchmarks/rate_calibration.py``, table below);
2. after the fit, ``choose_coding`` codes the network at every bit-depth pair near the nominal one,
   keeps the files within ``RATE_TOLERANCE`` of the target, decodes them and keeps the best YUV-PSNR
   (the closest file when none lands in the window). The rate is measured on the written bytes, so a
   clip whose weights code better or worse than the table says still lands on target.

This module chooses; ``codec`` writes. The family and the table are plain data so that a test and
the docs can state them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from cnervcodec.config import CompressionConfig, EmbeddingConfig, ModelConfig
from cnervcodec.errors import BadInputError

FAMILY_BLOCK_PX = 64  # embedding blocks of at most this many pixels a side (176x144: a 3x3 grid)
FAMILY_WIDTH_RATIOS = (1.0, 1.0, 0.75, 0.75, 0.5)  # C0 .. C4 as fractions of c
FAMILY_EMBED_RATIO = 0.75  # d = 0.75 c values per block
MIN_FAMILY_WIDTH = 4
MAX_FAMILY_WIDTH = 512
RATE_TOLERANCE = 0.15  # the written video part must land within 15 % of the target
SEARCH_TOLERANCE = 0.12  # what the bit search aims for, inside the promise

DEFAULT_BPP = 0.1  # ``cnerv encode`` without --size, --bpp or --kbps (docs/method.md: why)
RATE_LOSS = "l1-ssim"  # measured best YUV-PSNR under rate control (docs/method.md), ahead of yuv-mse and mse
RATE_LR = 5e-3  # small networks fit better at a higher peak lr (measured: +0.7 dB over 2e-3 at c = 16)

NOMINAL_WEIGHT_BITS = 6
NOMINAL_EMBED_BITS = 5
WEIGHT_BITS_SEARCH = (4, 5, 6, 7, 8)
EMBED_BITS_SEARCH = (3, 4, 5, 6, 7)

# Coded bits per value at each bit depth (eq. 4 quantization with one range per tensor, then the
# categorical ANS coder), measured on real files by benchmarks/rate_calibration.py
# (benchmarks/results/rate_calibration_cpu.md): carphone 120 frames, family widths c = 8, 16, 24, each
# fitted 100 epochs with the rate-control recipe and coded at every pair of depths; the mean over
# the fits. Record headers, ranges and symbol counts are included. Weights code below their depth
# because fitted weights are peaked around zero; embeddings far below it because they are coded as
# temporal residuals (EMBT), which gather around the middle symbol.
WEIGHT_CODED_BITS = {4: 3.0, 5: 4.06, 6: 5.14, 7: 6.26, 8: 7.48}
EMBED_CODED_BITS = {3: 0.55, 4: 0.94, 5: 1.49, 6: 2.25, 7: 3.18}
# Rate-aware fits: coded bits per decoder weight and per embedding value at the learned steps with
# lambda = RATE_LAMBDA, measured on carphone (120 frames, c = 16, 100 epochs: 13,880 B written, 1.4 %
# more than these predict without the meta chunk). The solver sizes the network with them; the fit's
# lambda then follows the target (rate_training.adapted_lambda), so they only need to be close.
RATE_AWARE_WEIGHT_BITS = 3.37
RATE_AWARE_EMBED_BITS = 1.2
# Where a rate-aware fit's lambda starts (and the fixed lambda a fit without a target uses): on carphone
# at c = 16 lambda 1 measured 0.84 dB behind x265 at 0.0365 bpp; 0.5 and 2 were 1.33 and 0.90 dB behind.
RATE_LAMBDA = 1.0
# The post-fit search of a rate-aware fit: its learned steps times these factors (C3's step search)
WEIGHT_STEP_SCALES = tuple(2 ** (i / 4) for i in range(-2, 5))
EMBED_STEP_SCALES = (2 ** -0.5, 1.0, 2 ** 0.5, 2.0)
# When none of those lands in the window (a fit far from its target: a short fit, a tiny clip), the
# search goes on with every step scaled alike by these: finer grids for more bytes, coarser for fewer.
FALLBACK_STEP_SCALES = tuple(2 ** (i / 2) for i in (-2, -3, -4, -5, -6, -8, -10, 3, 4, 5, 6, 8))
HEADER_BYTES = 700  # chunk framing and HEAD (134 B at 176x144) and the meta chunk's JSON that encode writes
RECORD_BYTES = 34  # one tensor record's fields besides its payload, with a Laplace model (measured: 13 records, ~440 B)


@dataclass(frozen=True)
class RateTarget:
    """The video part's target size: bytes, and the bpp that is over the clip's frames and size."""

    bytes: int
    bpp: float


def target_from_bpp(bpp: float, n_frames: int, height: int, width: int) -> RateTarget:
    if not math.isfinite(bpp) or bpp <= 0:
        raise BadInputError(f"--bpp must be a positive number, got {bpp}")
    n_bytes = round(bpp * n_frames * height * width / 8)
    return RateTarget(bytes=n_bytes, bpp=bpp)


def target_from_kbps(kbps: float, n_frames: int, fps: Fraction, height: int, width: int) -> RateTarget:
    """``--kbps R``: R kilobits (1000 bits) per second over the clip's duration, n_frames / fps."""
    if not math.isfinite(kbps) or kbps <= 0:
        raise BadInputError(f"--kbps must be a positive number, got {kbps}")
    n_bytes = round(kbps * 1000 / 8 * n_frames / float(fps))
    return RateTarget(bytes=n_bytes, bpp=n_bytes * 8 / (n_frames * height * width))


def family_grid(height: int, width: int) -> tuple[int, int]:
    """Blocks of at most ``FAMILY_BLOCK_PX`` a side: capacity in the per-frame code, not in a dense stem."""
    return max(1, -(-height // FAMILY_BLOCK_PX)), max(1, -(-width // FAMILY_BLOCK_PX))


def family_config(c: int, height: int, width: int) -> ModelConfig:
    """The family's network of width ``c`` for ``height`` x ``width`` frames."""
    if not MIN_FAMILY_WIDTH <= c <= MAX_FAMILY_WIDTH:
        raise BadInputError(f"family width must be in [{MIN_FAMILY_WIDTH}, {MAX_FAMILY_WIDTH}], got {c}")
    widths = tuple(max(MIN_FAMILY_WIDTH, round(c * r)) for r in FAMILY_WIDTH_RATIOS)
    dim = max(MIN_FAMILY_WIDTH, round(c * FAMILY_EMBED_RATIO))
    embedding = EmbeddingConfig(grid=family_grid(height, width), dim=dim)
    return ModelConfig(arch="cnerv", height=height, width=width, embedding=embedding, widths=widths)


def payload_target_bits(target: RateTarget, n_records: int) -> float:
    """The coded symbols' bits a rate-aware fit aims at for ``target``: the file less its headers and
    the ``n_records`` tensor records' fields (at least one byte a record)."""
    return max(float(n_records), target.bytes - HEADER_BYTES - RECORD_BYTES * n_records) * 8


def predicted_bytes(model: ModelConfig, n_frames: int, weight_bits: int | None, embed_bits: int | None) -> float:
    """The file size the calibration table predicts for ``model`` coded at these bit depths (None, None:
    a rate-aware fit at its learned steps)."""
    if weight_bits is None:
        weight_bits_coded, embed_bits_coded = RATE_AWARE_WEIGHT_BITS, RATE_AWARE_EMBED_BITS
    else:
        weight_bits_coded = _table(WEIGHT_CODED_BITS, weight_bits)
        embed_bits_coded = _table(EMBED_CODED_BITS, embed_bits)
    values = n_frames * model.embedding.values_per_frame
    return HEADER_BYTES + (model.decoder_param_count() * weight_bits_coded + values * embed_bits_coded) / 8


def _table(table: dict[int, float], bits: int) -> float:
    """A table entry, extrapolated by one coded bit per bit outside the measured depths."""
    if bits in table:
        return table[bits]
    edge = min(table) if bits < min(table) else max(table)
    return max(0.05, table[edge] + (bits - edge))


def solve(target: RateTarget, n_frames: int, height: int, width: int, *, weight_bits: int | None = None,
          strict: bool = True, rate_aware: bool = False) -> ModelConfig:
    """The widest family network whose predicted file at the nominal bit depths (``weight_bits`` when
    pinned; a rate-aware fit's learned steps when ``rate_aware``) fits ``target``; a target too small
    for the smallest network is refused when ``strict`` (a rate the user asked for), else served by
    the smallest network (the default operating point on a clip too short or small for it)."""
    bits, embed_bits = (None, None) if rate_aware else (weight_bits or NOMINAL_WEIGHT_BITS, NOMINAL_EMBED_BITS)
    best = None
    for c in range(MIN_FAMILY_WIDTH, MAX_FAMILY_WIDTH + 1):
        model = family_config(c, height, width)
        if predicted_bytes(model, n_frames, bits, embed_bits) > target.bytes:
            break
        best = model
    if best is None:
        smallest = family_config(MIN_FAMILY_WIDTH, height, width)
        depths = [(None, None)] if rate_aware else [(b, e) for b in WEIGHT_BITS_SEARCH for e in EMBED_BITS_SEARCH]
        floor = min(predicted_bytes(smallest, n_frames, b, e) for b, e in depths)
        bpp_floor = floor * 8 / (n_frames * height * width)
        if strict and target.bytes < floor * (1 - RATE_TOLERANCE):
            raise BadInputError(f"--bpp {target.bpp:.4g} is below what the smallest network can reach on this clip "
                                f"(about {bpp_floor:.4g} bpp): ask for more, or code fewer frames or a smaller --scale")
        best = smallest
    return best


def coding_candidates(weight_bits: int | None, learned_steps: bool = False) -> list[CompressionConfig]:
    """The codings the post-fit search tries: every weight depth (unless pinned) x embedding depth, each
    with one quantization range per tensor and per slice (weights per output channel, embeddings per
    value: eq. 4's ranges cost 8 bytes each but fit peaked slices better at few bits). A rate-aware
    fit (``learned_steps``) tries its own steps times ``WEIGHT_STEP_SCALES`` x ``EMBED_STEP_SCALES``."""
    if learned_steps:
        return [CompressionConfig(weight_step_scale=w, embed_step_scale=e)
                for w in WEIGHT_STEP_SCALES for e in EMBED_STEP_SCALES]
    weights = (weight_bits,) if weight_bits else WEIGHT_BITS_SEARCH
    return [CompressionConfig(weight_bits=w, embed_bits=e, weight_axis=wa, embed_axis=ea)
            for w in weights for e in EMBED_BITS_SEARCH for wa in (-1, 0) for ea in (-1, 1)]


def fallback_candidates(learned_steps: bool) -> list[CompressionConfig]:
    """The codings tried after ``coding_candidates`` when none of them lands: a rate-aware fit's steps
    scaled far from where it learned them (quality falls, but the rate asked for is met); nothing for
    eq. 4's search, whose bit depths already span the range."""
    if not learned_steps:
        return []
    return [CompressionConfig(weight_step_scale=s, embed_step_scale=s) for s in FALLBACK_STEP_SCALES]


def in_window(n_bytes: int, target: RateTarget, tolerance: float = SEARCH_TOLERANCE) -> bool:
    return abs(n_bytes - target.bytes) <= tolerance * target.bytes
