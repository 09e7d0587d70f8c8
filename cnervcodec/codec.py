"""The one place that composes the codec: frames -> Container (encode) and Container -> frames (decode).

Encode: fit the network, prune it and fine-tune with the mask held, quantize decoder weights and
per-frame embeddings (eq. 4), entropy-code every tensor with whichever coder is smaller, and pack
the result into a ``Container``. The quality an encoder reports is measured on frames rebuilt from
that container by the same code path ``decode`` uses, so it is the quality a user gets. No file
I/O and no printing here: the CLI reads and writes, and progress goes through callbacks.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from cnervcodec import entropy
from cnervcodec.config import CompressionConfig, FitConfig, ModelConfig
from cnervcodec.container import (
    CODER_CATEGORICAL,
    CODER_RAW,
    AudioTrack,
    ColorInfo,
    Container,
    StreamHeader,
    SymbolStream,
    TensorRecord,
    symbol_stream_nbytes,
)
from cnervcodec.errors import BadInputError, CorruptContainerError
from cnervcodec.fit import FitProgress, FitResult, fine_tune, fit
from cnervcodec.model import Decoder, bitstream_tensors
from cnervcodec.prune import apply_masks, magnitude_masks, sparsity
from cnervcodec.quantize import dequantize, quantize_tensor

# A malicious header could claim a huge network; the decoder refuses to build one beyond this.
MAX_DECODER_PARAMS = 256 * 1024 * 1024

# ``decode --interpolate N``: N-1 frames decoded from blended embeddings between each pair of frames.
MAX_INTERPOLATE = 16
INTERPOLATION_MODES = ("linear", "slerp")
# Slerp has no unique path between (nearly) parallel or opposite vectors; closer than this (radians)
# it falls back to the linear blend, which differs from slerp by about angle**2: nothing in float32.
_SLERP_MIN_ANGLE_RAD = 1e-4
# A vector this small next to its partner has no meaningful direction: blend linearly instead.
_SLERP_NEGLIGIBLE_NORM_RATIO = 1e-9


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides the bitstream: network, training recipe, compression."""

    model: ModelConfig
    fit: FitConfig
    compression: CompressionConfig


@dataclass(eq=False)
class EncodeResult:
    container: Container
    decoded: torch.Tensor  # (T, 3, H, W) uint8: exactly what decoding the container gives
    fit_seconds: float
    prune_seconds: float
    train_fps: float
    sparsity: float  # fraction of decoder weights that are zero after pruning


@dataclass(eq=False)
class DecodingNetwork:
    """A decoder with the container's dequantized weights and every frame's embedding."""

    decoder: Decoder
    latents: torch.Tensor  # (T, d, n_h, n_w) float32
    height: int
    width: int


# ---------------------------------------------------------------------------------------------
# Tensors <-> records


def code_symbols(symbols: np.ndarray, bits: int) -> SymbolStream:
    """Entropy-code symbols with the smaller of a categorical ANS stream and plain packed bits."""
    flat = symbols.reshape(-1)
    raw = SymbolStream(coder=CODER_RAW, n_symbols=flat.size, payload=entropy.pack_bits(flat, bits))
    first, counts = entropy.symbol_counts(flat, bits)
    words = entropy.encode_categorical(flat, bits, first, counts)
    categorical = SymbolStream(
        coder=CODER_CATEGORICAL,
        n_symbols=flat.size,
        payload=words.astype("<u4").tobytes(),
        first_symbol=first,
        counts=counts,
    )
    return min((categorical, raw), key=symbol_stream_nbytes)


def decode_symbols(stream: SymbolStream, bits: int) -> np.ndarray:
    """Inverse of ``code_symbols``: (n_symbols,) int32."""
    if stream.coder == CODER_RAW:
        return entropy.unpack_bits(stream.payload, bits, stream.n_symbols)
    words = np.frombuffer(stream.payload, dtype="<u4")
    return entropy.decode_categorical(words, stream.n_symbols, stream.first_symbol, stream.counts)


def compress_tensor(values: np.ndarray, bits: int, axis: int) -> TensorRecord:
    """Quantize (eq. 4) and entropy-code one float tensor."""
    symbols, params = quantize_tensor(values, bits, axis)
    return TensorRecord(shape=tuple(values.shape), quant=params, stream=code_symbols(symbols, bits))


def restore_tensor(record: TensorRecord) -> np.ndarray:
    """The dequantized float32 tensor a record holds."""
    symbols = decode_symbols(record.stream, record.quant.bits)
    return dequantize(symbols, record.quant, record.shape)


# ---------------------------------------------------------------------------------------------
# Decode


def decoding_network(container: Container) -> DecodingNetwork:
    """Build the decoder from a container; shapes that do not match its config are corruption."""
    config = container.header.model
    if container.embeddings is None:
        raise BadInputError("this .cnrv holds a NeRV network (frame-index input): cnerv decodes CNeRV streams only")
    if container.model_ref is not None and not container.decoder:
        raise BadInputError(f"this .cnrv refers to the model with SHA-256 {container.model_ref.hex()}: "
                            "pass --model MODEL.cnrvm")
    latents = torch.from_numpy(restore_tensor(container.embeddings))
    return DecodingNetwork(decoder=restored_decoder(config, container.decoder), latents=latents,
                           height=config.height, width=config.width)


def restored_decoder(config: ModelConfig, records: tuple[TensorRecord, ...]) -> Decoder:
    """A decoder with the dequantized weights of ``records``; a count or shape that does not match
    ``config`` is corruption (the records come from a file)."""
    if config.decoder_param_count() > MAX_DECODER_PARAMS:
        raise CorruptContainerError(f"corrupt .cnrv: header describes a decoder of {config.decoder_param_count():,} parameters")
    decoder = Decoder(config)
    expected = bitstream_tensors(decoder)
    if len(expected) != len(records):
        raise CorruptContainerError(
            f"corrupt .cnrv: {len(records)} decoder tensors for a network that has {len(expected)}"
        )
    state = {}
    for (name, tensor), record in zip(expected, records):
        if tuple(tensor.shape) != record.shape:
            raise CorruptContainerError(f"corrupt .cnrv: tensor {name} has shape {record.shape}, expected {tuple(tensor.shape)}")
        state[name] = torch.from_numpy(restore_tensor(record))
    decoder.load_state_dict(state)
    decoder.eval()
    return decoder


def render_frames(network: DecodingNetwork, device: torch.device, batch: int = 8) -> Iterator[torch.Tensor]:
    """Rebuilt frames, ``batch`` at a time, as (B, 3, H, W) uint8 CPU tensors (streamed: memory stays bounded)."""
    return render_latents(network, network.latents, device, batch)


@torch.inference_mode()
def render_latents(network: DecodingNetwork, latents: torch.Tensor, device: torch.device,
                   batch: int = 8) -> Iterator[torch.Tensor]:
    """Frames that ``network``'s decoder makes from any (L, d, n_h, n_w) latents, ``batch`` at a time,
    as (B, 3, H, W) uint8 CPU tensors: the file's own latents, or interpolated ones."""
    decoder = network.decoder.to(device)
    if device.type == "cuda":
        decoder = decoder.to(memory_format=torch.channels_last)
    for start in range(0, latents.shape[0], batch):
        chunk = latents[start : start + batch].to(device)
        frames = decoder(chunk)[..., : network.height, : network.width]
        yield frames.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()


# ---------------------------------------------------------------------------------------------
# Frame-rate up-conversion: CNeRV's content embeddings of neighbouring frames interpolate (paper,
# table 15), so frames between two coded ones can be decoded from blended embeddings. NeRV's index
# encoding has no such property, and a NeRV stream carries no embeddings to blend.


def check_interpolation(n: int, mode: str, arch: str = "cnerv") -> None:
    """Refuse a factor or blend the decoder does not offer, and streams without embeddings."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_INTERPOLATE:
        raise BadInputError(f"bad interpolation factor {n!r}: give a whole number from 1 (off) to {MAX_INTERPOLATE}")
    if mode not in INTERPOLATION_MODES:
        raise BadInputError(f"bad interpolation mode {mode!r}: choose {' or '.join(INTERPOLATION_MODES)}")
    if n > 1 and arch != "cnerv":
        raise BadInputError(f"cannot interpolate a {arch} stream: it has no per-frame embeddings to blend "
                            "(only CNeRV streams do)")


def interpolate_embeddings(embeddings: torch.Tensor, n: int, mode: str = "linear") -> torch.Tensor:
    """(T, d, n_h, n_w) -> (T * n, d, n_h, n_w): ``n`` times as many frames over the same duration.

    Row ``i * n`` is ``embeddings[i]`` itself (so those frames decode exactly as without
    interpolation); rows ``i * n + k`` blend frames i and i + 1 at ``a = k / n``. The last frame has
    no successor and is held: repeated n - 1 times, so that the video (and its audio) keeps its length.
    Whole-sequence form of what ``render_interpolated`` does a batch at a time.
    """
    check_interpolation(n, mode)
    n_frames = embeddings.shape[0]
    out = embeddings.repeat_interleave(n, dim=0)  # (T * n, d, n_h, n_w): every frame held n times
    if n > 1 and n_frames > 1:
        out.view(n_frames, n, *embeddings.shape[1:])[:-1, 1:] = between_embeddings(embeddings, n, mode)
    return out


def between_embeddings(embeddings: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """(T, d, n_h, n_w) -> (T - 1, n - 1, d, n_h, n_w): the blends at ``a = k / n``, k = 1 .. n - 1,
    between each frame and the next. Computed in float64 and returned in the input's dtype."""
    if embeddings.ndim != 4:
        raise ValueError(f"embeddings must be (T, d, n_h, n_w), got {tuple(embeddings.shape)}")
    check_interpolation(n, mode)
    weights = torch.arange(1, n, dtype=torch.float64) / n  # (n - 1,)
    left, right = embeddings[:-1].double(), embeddings[1:].double()
    blend = _slerp if mode == "slerp" else _lerp
    return blend(left, right, weights).to(embeddings.dtype)


def _lerp(left: torch.Tensor, right: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(P, ...) x 2, (K,) -> (P, K, ...): ``(1 - a) * left + a * right``."""
    a = weights.view(1, -1, *([1] * (left.ndim - 1)))
    return (1 - a) * left.unsqueeze(1) + a * right.unsqueeze(1)


def _slerp(left: torch.Tensor, right: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(P, d, n_h, n_w) x 2, (K,) -> (P, K, d, n_h, n_w): each block's d-vector turns along the great
    circle from its direction in ``left`` to that in ``right`` while its length changes linearly.

    Turning rather than cutting across keeps a blend as long as the vectors it comes from (a
    linear midpoint of two unit vectors 90 degrees apart is only 0.71 long). Where the direction
    is not defined, see ``_SLERP_MIN_ANGLE_RAD`` and ``_SLERP_NEGLIGIBLE_NORM_RATIO``, the
    block falls back to ``_lerp``.
    """
    x0 = left.movedim(1, -1).unsqueeze(1)  # (P, 1, n_h, n_w, d)
    x1 = right.movedim(1, -1).unsqueeze(1)
    a = weights.view(1, -1, 1, 1, 1)  # (1, K, 1, 1, 1)
    r0, r1 = x0.norm(dim=-1, keepdim=True), x1.norm(dim=-1, keepdim=True)
    u0 = x0 / torch.where(r0 > 0, r0, 1.0)
    u1 = x1 / torch.where(r1 > 0, r1, 1.0)
    cos = (u0 * u1).sum(dim=-1, keepdim=True)
    angle = torch.atan2((u1 - cos * u0).norm(dim=-1, keepdim=True), cos)  # accurate near 0 and pi, unlike acos
    linear = (1 - a) * x0 + a * x1
    fallback = ((angle < _SLERP_MIN_ANGLE_RAD) | (angle > torch.pi - _SLERP_MIN_ANGLE_RAD)
                | (torch.minimum(r0, r1) <= _SLERP_NEGLIGIBLE_NORM_RATIO * torch.maximum(r0, r1)))
    sin_angle = torch.where(fallback, 1.0, torch.sin(angle))
    direction = (torch.sin((1 - a) * angle) * u0 + torch.sin(a * angle) * u1) / sin_angle
    spherical = ((1 - a) * r0 + a * r1) * direction
    return torch.where(fallback, linear, spherical).movedim(-1, 2)


def render_interpolated(network: DecodingNetwork, n: int, mode: str, device: torch.device,
                        batch: int = 8) -> Iterator[torch.Tensor]:
    """The T * n frames that ``interpolate_embeddings`` describes, streamed as (n, 3, H, W) uint8
    CPU tensors, one per coded frame: the frame itself, then the n - 1 frames towards the next.

    The coded frames are decoded in the same batches as ``render_frames`` so that they match a
    plain decode bit for bit, even where a decoder's float results depend on the batch; the blends
    go through the decoder ``batch`` at a time. Memory stays bounded by about 2 * batch + n frames.
    """
    check_interpolation(n, mode)
    if n == 1:
        yield from render_frames(network, device, batch)
        return
    latents = network.latents
    n_frames = latents.shape[0]
    for start, coded in zip(range(0, n_frames, batch), render_frames(network, device, batch)):
        window = latents[start : start + coded.shape[0] + 1]  # these frames and the next one
        blends = between_embeddings(window, n, mode).flatten(0, 1)  # (pairs * (n - 1), d, n_h, n_w)
        blended = (frame for frames in render_latents(network, blends, device, batch) for frame in frames)
        for index, frame in zip(range(start, start + coded.shape[0]), coded):
            if index == n_frames - 1:  # no next frame: hold this one
                yield frame.unsqueeze(0).repeat(n, 1, 1, 1)
            else:
                yield torch.stack([frame, *itertools.islice(blended, n - 1)])


# ---------------------------------------------------------------------------------------------
# Encode


def prune_fit(
    frames_u8: torch.Tensor,
    fitted: FitResult,
    compression: CompressionConfig,
    device: torch.device,
    progress: Callable[[FitProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> FitResult:
    """Global magnitude pruning of a copy of the fit, then a short fine-tune with the mask held."""
    result = replace(fitted, network=copy.deepcopy(fitted.network))
    decoder = result.network.decoder
    masks = magnitude_masks(decoder, compression.prune)
    if compression.prune_epochs == 0:
        apply_masks(decoder, masks)
        return result
    recipe = replace(
        result.config,
        epochs=compression.prune_epochs,
        lr=result.config.lr * compression.prune_lr_frac,
        warmup_frac=0.0,
    )
    return fine_tune(
        frames_u8, result.network, recipe, device, lambda: apply_masks(decoder, masks), progress, should_stop
    )


@torch.no_grad()
def _embeddings(result: FitResult, batch: int = 64) -> np.ndarray:
    """Every frame's embedding (T, d, n_h, n_w), float32, from the fitted encoder."""
    encoder = result.network.encoder
    chunks = [encoder(result.inputs[i : i + batch]).float().cpu() for i in range(0, result.inputs.shape[0], batch)]
    return torch.cat(chunks).numpy()


def compress_decoder(decoder: Decoder, compression: CompressionConfig) -> tuple[TensorRecord, ...]:
    """Every decoder tensor quantized and coded, in bitstream order: a stream's DECO and a model's."""
    return tuple(
        compress_tensor(tensor.detach().float().cpu().numpy(), compression.weight_bits, compression.weight_axis)
        for _, tensor in bitstream_tensors(decoder)
    )


def build_container(
    result: FitResult,
    n_frames: int,
    fps: Fraction,
    compression: CompressionConfig,
    *,
    color: ColorInfo = ColorInfo(),
    audio: AudioTrack | None = None,
    metadata: dict[str, Any] | None = None,
) -> Container:
    """Quantize and code a fitted (and pruned) network into a container."""
    decoder = result.network.decoder
    records = compress_decoder(decoder, compression)
    embeddings = compress_tensor(_embeddings(result), compression.embed_bits, compression.embed_axis)
    header = StreamHeader(
        model=result.network.config,
        n_frames=n_frames,
        fps=fps,
        color=color,
        weight_bits=compression.weight_bits,
        embed_bits=compression.embed_bits,
        prune_fraction=round(sparsity(decoder), 6),
    )
    return Container(header=header, decoder=records, embeddings=embeddings, audio=audio, metadata=dict(metadata or {}))


def compress_fit(
    frames_u8: torch.Tensor,
    fitted: FitResult,
    fps: Fraction,
    compression: CompressionConfig,
    device: torch.device,
    *,
    color: ColorInfo = ColorInfo(),
    audio: AudioTrack | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[FitProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> EncodeResult:
    """Prune (on a copy: ``fitted`` stays reusable for other settings), quantize and code one fit.

    One fit can serve a whole ladder of ``--bits`` / ``--prune`` points this way.
    """
    compression = compression.validate()
    result = fitted
    prune_start = time.monotonic()
    if compression.prune > 0:
        result = prune_fit(frames_u8, fitted, compression, device, progress, should_stop)
    prune_seconds = time.monotonic() - prune_start if compression.prune > 0 else 0.0
    container = build_container(
        result, frames_u8.shape[0], fps, compression, color=color, audio=audio, metadata=metadata
    )
    decoded = torch.cat(list(render_frames(decoding_network(container), device)))
    return EncodeResult(
        container=container,
        decoded=decoded,
        fit_seconds=fitted.fit_seconds,
        prune_seconds=prune_seconds,
        train_fps=fitted.train_fps,
        sparsity=sparsity(result.network.decoder),
    )


def encode_metadata(source_name: str, size: str, preset: str, fit_config, compression: CompressionConfig,
                    encoder: str) -> dict[str, Any]:
    """The ``meta`` chunk ``cnerv encode`` writes (encoder, source, settings): shared so that every
    tool that reports a .cnrv size counts the same bytes as the file ``cnerv encode`` would write."""
    return {"encoder": encoder, "source": source_name,
            "settings": {"size": size, "preset": preset, "fit": fit_config.to_dict(),
                         "compression": compression.to_dict()}}


def encode(
    frames_u8: torch.Tensor,
    fps: Fraction,
    settings: EncodeSettings,
    device: torch.device,
    *,
    color: ColorInfo = ColorInfo(),
    audio: AudioTrack | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[str, FitProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> EncodeResult:
    """Fit, prune, quantize and code ``frames_u8`` (T, 3, H, W); ``progress(stage, report)``."""
    settings.compression.validate()
    fit_progress = (lambda p: progress("fit", p)) if progress else None
    fitted = fit(frames_u8, settings.model, settings.fit, device, progress=fit_progress, should_stop=should_stop)
    return compress_fit(
        frames_u8, fitted, fps, settings.compression, device, color=color, audio=audio, metadata=metadata,
        progress=(lambda p: progress("prune", p)) if progress else None, should_stop=should_stop,
    )
