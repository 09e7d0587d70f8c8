"""Float models and training checkpoints as safetensors files: tensors plus JSON in the safetensors metadata.

Nothing here unpickles: safetensors stores raw tensors behind a bounded JSON header, and our own
metadata is JSON validated field by field. Before a network is built from a file, the parameter
count its config implies is checked against the tensors actually present, so a forged config
cannot make the reader allocate more than the file holds. Files are written to a temporary name
and renamed, so an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cnervcodec.atomic import atomic_path
from cnervcodec.config import FitConfig, ModelConfig
from cnervcodec.errors import BadInputError, CheckpointError
from cnervcodec.model import VideoNetwork

MODEL_FORMAT = "cnervcodec.model"
CHECKPOINT_FORMAT = "cnervcodec.checkpoint"
BASELINE_FORMAT = "cnervcodec.baseline"  # a paper baseline (cnervcodec.baselines): its own config, weights, embeddings
FORMAT_VERSION = "1"
MAX_FILE_BYTES = 8 << 30
NETWORK_PREFIX = "network."


def atomic_save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file through a temporary file in the same folder, then rename it."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(Path(path)) as temp:
        save_file(contiguous, str(temp), metadata=metadata)


def read_safetensors(path: Path, expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read every tensor and the decoded JSON metadata of one of our safetensors files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_FILE_BYTES} bytes, refusing to read")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw_meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if raw_meta.get("format") != expected_format:
        raise CheckpointError(f"{path}: not a {expected_format} file (format {raw_meta.get('format')!r})")
    if raw_meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported {expected_format} version {raw_meta.get('version')!r}")
    try:
        meta = {key: json.loads(value) for key, value in raw_meta.items() if key not in ("format", "version")}
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: metadata is not valid JSON") from None
    return tensors, meta


def network_tensors(network: VideoNetwork) -> dict[str, torch.Tensor]:
    return {NETWORK_PREFIX + name: tensor for name, tensor in network.state_dict().items()}


def network_from_tensors(path: Path, config_data: Any, tensors: dict[str, torch.Tensor]) -> VideoNetwork:
    """Rebuild a network from its config and stored tensors, refusing any mismatch before allocating."""
    try:
        config = ModelConfig.from_dict(config_data)
    except BadInputError as exc:
        raise CheckpointError(f"{path}: bad model config ({exc})") from None
    stored = {k[len(NETWORK_PREFIX) :]: v for k, v in tensors.items() if k.startswith(NETWORK_PREFIX)}
    expected = config.decoder_param_count() + config.encoder_param_count()
    stored_params = sum(v.numel() for k, v in stored.items() if not k.startswith("encoder.raw_"))
    if stored_params != expected:
        raise CheckpointError(f"{path}: holds {stored_params} parameters, its config needs {expected}")
    network = VideoNetwork(config)
    state = network.state_dict()
    if set(state) != set(stored):
        raise CheckpointError(f"{path}: tensor names do not match the model config")
    for name, tensor in state.items():
        if stored[name].shape != tensor.shape or stored[name].dtype != tensor.dtype:
            raise CheckpointError(f"{path}: tensor {name} has shape {tuple(stored[name].shape)}, expected {tuple(tensor.shape)}")
        if not torch.isfinite(stored[name]).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
    network.load_state_dict(stored)
    return network


def save_model(path: Path, network: VideoNetwork, embeddings: torch.Tensor | None, info: dict[str, Any]) -> None:
    """Save a fitted network (and CNeRV's per-frame embeddings) with JSON info about the fit."""
    tensors = network_tensors(network)
    if embeddings is not None:
        tensors["embeddings"] = embeddings.float()
    metadata = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "model_config": json.dumps(network.config.to_dict()),
        "info": json.dumps(info),
    }
    atomic_save(path, tensors, metadata)


def load_model(path: Path) -> tuple[VideoNetwork, torch.Tensor | None, dict[str, Any]]:
    """Load a model file written by ``save_model``: (network, embeddings or None, info)."""
    tensors, meta = read_safetensors(path, MODEL_FORMAT)
    network = network_from_tensors(path, meta.get("model_config"), tensors)
    embeddings = tensors.get("embeddings")
    if embeddings is not None and network.config.arch == "cnerv":
        n_h, n_w = network.config.grid
        if embeddings.ndim != 4 or tuple(embeddings.shape[1:]) != (network.config.embedding.dim, n_h, n_w):
            raise CheckpointError(f"{path}: embeddings have shape {tuple(embeddings.shape)}, not (T, d, n_h, n_w)")
    info = meta.get("info", {})
    return network, embeddings, info if isinstance(info, dict) else {}


def save_checkpoint(
    path: Path,
    network: VideoNetwork,
    optimizer_tensors: dict[str, torch.Tensor],
    extra_tensors: dict[str, torch.Tensor],
    fit_config: FitConfig,
    state: dict[str, Any],
) -> None:
    """Save everything needed to continue a fit exactly where it stopped."""
    tensors = {**network_tensors(network), **optimizer_tensors, **extra_tensors}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": FORMAT_VERSION,
        "model_config": json.dumps(network.config.to_dict()),
        "fit_config": json.dumps(fit_config.to_dict()),
        "state": json.dumps(state),
    }
    atomic_save(path, tensors, metadata)


def load_checkpoint(path: Path) -> tuple[VideoNetwork, FitConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint: (network, fit config, the other tensors, state dict)."""
    tensors, meta = read_safetensors(path, CHECKPOINT_FORMAT)
    network = network_from_tensors(path, meta.get("model_config"), tensors)
    try:
        fit_config = FitConfig.from_dict(meta.get("fit_config"))
    except (BadInputError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad fit config ({exc})") from None
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint has no training state")
    rest = {k: v for k, v in tensors.items() if not k.startswith(NETWORK_PREFIX)}
    return network, fit_config, rest, state
