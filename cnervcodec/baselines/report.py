"""A baseline fit, end to end and measured, with the same report fields as CNeRV's (``fit_report``), and
its file: safetensors with the baseline's config, weights and every frame's embedding (no pickle)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnervcodec.baselines.config import BaselineConfig
from cnervcodec.baselines.networks import parameter_counts
from cnervcodec.baselines.train import BaselineFit, baseline_codes, baseline_render, fit_baseline
from cnervcodec.config import FitConfig
from cnervcodec.embedding import padded_floats
from cnervcodec.fit import FitProgress
from cnervcodec.fit_report import encode_time_ms, network_fields, quality_fields, run_fields
from cnervcodec.safetensors_files import BASELINE_FORMAT, FORMAT_VERSION, atomic_save


def fit_baseline_clip(clip: Any, config: BaselineConfig, fit_config: FitConfig, device: torch.device,
                      progress: Callable[[FitProgress], None] | None = None,
                      should_stop: Callable[[], bool] = lambda: False, size: str = "") -> tuple[BaselineFit, dict[str, Any]]:
    """Fit ``clip`` (a ``video_io.VideoClip``) with a baseline and measure it: (fit, report)."""
    fit = fit_baseline(clip.frames, config, fit_config, device, progress=progress, should_stop=should_stop)
    return fit, baseline_report(fit, clip, device, size)


def baseline_report(fit: BaselineFit, clip: Any, device: torch.device, size: str = "") -> dict[str, Any]:
    """``cnerv fit --json``'s fields for a baseline, plus its widths (``baseline`` holds the whole config)."""
    encoder_params, decoder_params = parameter_counts(fit.config)
    padded = fit.config.geometry.padded_size
    encode_ms = encode_time_ms(fit.network.encode, fit.frames, lambda b: padded_floats(b, padded, device), device)
    fields = network_fields(fit.config.arch, size, decoder_params, encoder_params,
                            fit.config.embedding_values_per_frame, list(fit.config.grid), encode_ms)
    decoded = baseline_render(fit, device)
    return (fields | {"baseline": fit.config.to_dict()}
            | run_fields(fit.fit_config.epochs, fit.steps, fit.fit_seconds, fit.train_fps, device, clip)
            | quality_fields(clip, decoded, fit.seen, fit.unseen))


def save_baseline(path: Path, fit: BaselineFit, report: dict[str, Any], device: torch.device) -> None:
    """Write the fit: ``network.*`` weights, ``embeddings`` (T, c, rows, cols) float32, and JSON metadata
    (``baseline_config``, ``info`` = {"fit": report, "fit_config": ...}), what ``cnerv analyze`` reads."""
    tensors = {f"network.{name}": tensor for name, tensor in fit.network.state_dict().items()}
    tensors["embeddings"] = baseline_codes(fit, device)
    metadata = {"format": BASELINE_FORMAT, "version": FORMAT_VERSION,
                "baseline_config": json.dumps(fit.config.to_dict()),
                "info": json.dumps({"fit": report, "fit_config": fit.fit_config.to_dict()})}
    atomic_save(path, tensors, metadata)
