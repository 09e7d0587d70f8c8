"""What only CNeRV can do with a trained model: encode frames it never saw, in one forward pass.

A model (``modelfile.ModelFile``) holds the encoder layer and the quantized decoder. Encoding a new
clip with it costs one block projection and one 1x1 convolution per frame, instead of a fit; the
stream either copies the decoder (it stands alone) or refers to it by hash (``--model-ref``: the
file holds only embeddings). ``refine_embeddings`` optionally spends a few gradient steps on the
embeddings alone, the decoder frozen, for quality at the same rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from cnervcodec.codec import (
    EncodeResult,
    compress_decoder,
    compress_tensor,
    decoding_network,
    render_frames,
    restored_decoder,
)
from cnervcodec.config import CompressionConfig, FitConfig
from cnervcodec.container import AudioTrack, ColorInfo, Container, StreamHeader
from cnervcodec.embedding import ContentEncoder, network_inputs
from cnervcodec.errors import BadInputError
from cnervcodec.fit import FitResult, fit_loss
from cnervcodec.modelfile import ModelFile
from cnervcodec.prune import sparsity

EMBED_BATCH_FRAMES = 16
REFINE_LR = 1e-2  # Adam on the embeddings: they are few values, so a larger step than the fit's is safe


def model_file_from_fit(fitted: FitResult, compression: CompressionConfig, metadata: dict[str, Any]) -> ModelFile:
    """A model file from a (pruned) fit: decoder quantized as a stream would hold it, encoder in float32."""
    network = fitted.network
    if network.encoder is None:
        raise BadInputError("only CNeRV networks can be saved as .cnrvm models (NeRV has no encoder)")
    records = compress_decoder(network.decoder, compression)
    encoder = network.encoder
    arrays = {
        "raw_mean": encoder.raw_mean.detach().float().cpu().numpy(),
        "raw_std": encoder.raw_std.detach().float().cpu().numpy(),
        "weight": encoder.reduce.weight.detach().float().cpu().numpy().reshape(encoder.reduce.weight.shape[:2]),
        "bias": encoder.reduce.bias.detach().float().cpu().numpy(),
    }
    return ModelFile(network.config, compression.weight_bits, round(sparsity(network.decoder), 6), records,
                     {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}, dict(metadata))


def model_file_from_container(container: Container, metadata: dict[str, Any]) -> ModelFile:
    """A decode-only model (a .cnrv carries no encoder) whose hash matches the stream's decoder."""
    if not container.decoder:
        raise BadInputError("this .cnrv holds no decoder (it refers to a model): export from the model instead")
    header = container.header
    return ModelFile(header.model, header.weight_bits, header.prune_fraction, container.decoder, None, dict(metadata))


def content_encoder(model_file: ModelFile) -> ContentEncoder:
    """The model's encoder layer as a torch module (eval mode, float32)."""
    if model_file.encoder is None:
        raise BadInputError("this model is decode-only (exported from a .cnrv, which holds no encoder): "
                            "it can decode streams that refer to it but not encode; fit one with cnerv fit -o M.cnrvm")
    encoder = ContentEncoder(model_file.model.embedding)
    arrays = model_file.encoder
    with torch.no_grad():
        encoder.raw_mean.copy_(torch.from_numpy(arrays["raw_mean"]))
        encoder.raw_std.copy_(torch.from_numpy(arrays["raw_std"]))
        encoder.reduce.weight.copy_(torch.from_numpy(arrays["weight"]).reshape(encoder.reduce.weight.shape))
        encoder.reduce.bias.copy_(torch.from_numpy(arrays["bias"]))
    return encoder.eval()


def attach_model(container: Container, model_file: ModelFile | None, model_name: str = "the model") -> Container:
    """A referring stream (MREF) with the model's decoder filled in; other streams pass through."""
    if container.model_ref is None:
        return container
    expected = container.model_ref.hex()
    if model_file is None:
        raise BadInputError(f"this .cnrv refers to the model with SHA-256 {expected}: pass --model MODEL.cnrvm")
    if model_file.sha256 != container.model_ref:
        raise BadInputError(f"wrong model: this .cnrv needs the model with SHA-256 {expected}, "
                            f"{model_name} is {model_file.sha256.hex()}")
    return replace(container, decoder=model_file.decoder)


def check_frame_size(model_file: ModelFile, width: int, height: int) -> None:
    model = model_file.model
    if (width, height) != (model.width, model.height):
        raise BadInputError(f"the model was fitted at {model.width}x{model.height} and this input is {width}x{height}: "
                            f"use --scale {model.width}x{model.height}")


@torch.no_grad()
def embed_frames(frames_u8: torch.Tensor, model_file: ModelFile, device: torch.device) -> torch.Tensor:
    """Every frame's embedding (T, d, n_h, n_w) from the model's encoder, one forward pass each."""
    config = model_file.model
    encoder = content_encoder(model_file).to(device)
    chunks = []
    for start in range(0, frames_u8.shape[0], EMBED_BATCH_FRAMES):
        batch = frames_u8[start:start + EMBED_BATCH_FRAMES].to(device)
        raw = network_inputs("cnerv", config.embedding, config.padded_size, batch)
        chunks.append(encoder(raw).float().cpu())
    return torch.cat(chunks)


def refine_embeddings(frames_u8: torch.Tensor, embeddings: torch.Tensor, model_file: ModelFile, steps: int,
                      device: torch.device, batch: int = 2) -> torch.Tensor:
    """``steps`` passes of Adam over the embeddings alone (the decoder frozen), with the fit's loss."""
    config = model_file.model
    decoder = restored_decoder(config, model_file.decoder).to(device)
    for param in decoder.parameters():
        param.requires_grad_(False)
    latents = embeddings.clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([latents], lr=REFINE_LR)
    l1_weight = FitConfig().l1_weight
    for _ in range(steps):
        for start in range(0, frames_u8.shape[0], batch):
            target = frames_u8[start:start + batch].to(device).float().div_(255.0)
            pred = decoder(latents[start:start + batch])[..., : config.height, : config.width]
            loss = fit_loss(pred, target, l1_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return latents.detach().cpu()


def encode_with_model(
    frames_u8: torch.Tensor,
    fps: Fraction,
    model_file: ModelFile,
    compression: CompressionConfig,
    device: torch.device,
    *,
    model_ref: bool = False,
    refine_steps: int = 0,
    color: ColorInfo = ColorInfo(),
    audio: AudioTrack | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EncodeResult:
    """Encode a clip with a trained model: embeddings only, no fit (``compression.embed_bits`` /
    ``embed_axis`` apply; the decoder is the model's, already quantized)."""
    n_frames, _, height, width = frames_u8.shape
    check_frame_size(model_file, width, height)
    started = time.monotonic()
    embeddings = embed_frames(frames_u8, model_file, device)
    if refine_steps > 0:
        if progress:
            progress(f"refining embeddings: {refine_steps} passes")
        embeddings = refine_embeddings(frames_u8, embeddings, model_file, refine_steps, device)
    record = compress_tensor(embeddings.numpy(), compression.embed_bits, compression.embed_axis)
    header = StreamHeader(model=model_file.model, n_frames=n_frames, fps=fps, color=color,
                          weight_bits=model_file.weight_bits, embed_bits=compression.embed_bits,
                          prune_fraction=model_file.prune_fraction)
    container = Container(header=header, decoder=() if model_ref else model_file.decoder, embeddings=record,
                          audio=audio, metadata=dict(metadata or {}),
                          model_ref=model_file.sha256 if model_ref else None)
    embed_seconds = time.monotonic() - started
    decoded = render_stream(attach_model(container, model_file), device)
    return EncodeResult(container=container, decoded=decoded, fit_seconds=embed_seconds, prune_seconds=0.0,
                        train_fps=n_frames / embed_seconds if embed_seconds > 0 else 0.0,
                        sparsity=model_file.prune_fraction)


def render_stream(container: Container, device: torch.device) -> torch.Tensor:
    """All frames a (model-attached) container decodes to, (T, 3, H, W) uint8."""
    return torch.cat(list(render_frames(decoding_network(container), device)))
