"""The one place that composes the codec: frames -> Container (encode) and Container -> frames (decode).

Encode: fit the network, prune it and fine-tune with the mask held, quantize decoder weights and
per-frame embeddings (eq. 4), entropy-code every tensor with whichever coder is smaller, and pack
the result into a ``Container``. The quality an encoder reports is measured on frames rebuilt from
that container by the same code path ``decode`` uses, so it is the quality a user gets. No file
I/O and no printing here: the CLI reads and writes, and progress goes through callbacks.
"""

from __future__ import annotations

import copy
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
from cnervcodec.errors import CorruptContainerError
from cnervcodec.fit import FitProgress, FitResult, fine_tune, fit
from cnervcodec.model import Decoder, bitstream_tensors
from cnervcodec.prune import apply_masks, magnitude_masks, sparsity
from cnervcodec.quantize import dequantize, quantize_tensor

# A malicious header could claim a huge network; the decoder refuses to build one beyond this.
MAX_DECODER_PARAMS = 256 * 1024 * 1024


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
    if config.decoder_param_count() > MAX_DECODER_PARAMS:
        raise CorruptContainerError(f"corrupt .cnrv: header describes a decoder of {config.decoder_param_count():,} parameters")
    if container.embeddings is None:
        raise CorruptContainerError("corrupt .cnrv: no embeddings (NeRV streams are not supported by this decoder)")
    decoder = Decoder(config)
    expected = bitstream_tensors(decoder)
    if len(expected) != len(container.decoder):
        raise CorruptContainerError(
            f"corrupt .cnrv: {len(container.decoder)} decoder tensors for a network that has {len(expected)}"
        )
    state = {}
    for (name, tensor), record in zip(expected, container.decoder):
        if tuple(tensor.shape) != record.shape:
            raise CorruptContainerError(f"corrupt .cnrv: tensor {name} has shape {record.shape}, expected {tuple(tensor.shape)}")
        state[name] = torch.from_numpy(restore_tensor(record))
    decoder.load_state_dict(state)
    decoder.eval()
    latents = torch.from_numpy(restore_tensor(container.embeddings))
    return DecodingNetwork(decoder=decoder, latents=latents, height=config.height, width=config.width)


@torch.inference_mode()
def render_frames(network: DecodingNetwork, device: torch.device, batch: int = 8) -> Iterator[torch.Tensor]:
    """Rebuilt frames, ``batch`` at a time, as (B, 3, H, W) uint8 CPU tensors (streamed: memory stays bounded)."""
    decoder = network.decoder.to(device)
    if device.type == "cuda":
        decoder = decoder.to(memory_format=torch.channels_last)
    for start in range(0, network.latents.shape[0], batch):
        latents = network.latents[start : start + batch].to(device)
        frames = decoder(latents)[..., : network.height, : network.width]
        yield frames.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()


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
    records = tuple(
        compress_tensor(tensor.detach().float().cpu().numpy(), compression.weight_bits, compression.weight_axis)
        for _, tensor in bitstream_tensors(decoder)
    )
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
