"""What only CNeRV can do with a trained model: encode frames it never saw, in one forward pass.

A model (``format.model_file.ModelFile``) holds the encoder layer and the quantized decoder. Encoding a new
clip with it costs one block projection and one 1x1 convolution per frame, instead of a fit; the
stream either copies the decoder (it stands alone) or refers to it by hash (``--model-ref``: the
file holds only embeddings). ``refine_embeddings`` optionally spends a few gradient steps on the
embeddings alone, the decoder frozen, for quality at the same rate. Turning the embeddings into a
stream is ``codec.encode_with_model``'s job.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cnervcodec.config import CompressionConfig, FitConfig
from cnervcodec.embedding import ContentEncoder, network_inputs
from cnervcodec.errors import BadInputError
from cnervcodec.losses import l1_ssim_loss
from cnervcodec.format.model_file import ModelFile
from cnervcodec.format.stream import read_container
from cnervcodec.model import VideoNetwork
from cnervcodec.prune import sparsity
from cnervcodec.tensor_coding import compress_decoder, restored_decoder

EMBED_BATCH_FRAMES = 16
REFINE_LR = 1e-2  # Adam on the embeddings: they are few values, so a larger step than the fit's is safe


def model_file_from_network(network: VideoNetwork, compression: CompressionConfig,
                            metadata: dict[str, Any]) -> ModelFile:
    """A model file from a fitted (and perhaps pruned) network: the decoder quantized as a stream
    would hold it, the encoder in float32."""
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


def model_file_from_stream(data: bytes, metadata: dict[str, Any]) -> ModelFile:
    """A decode-only model from a ``.cnrv`` file's bytes (a stream carries no encoder) whose hash
    matches the stream's decoder."""
    container = read_container(data)
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
            loss = l1_ssim_loss(pred, target, l1_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return latents.detach().cpu()
