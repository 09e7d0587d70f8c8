"""A fit, end to end and measured: what ``cnerv fit`` and ``benchmarks/fit_speed.py`` share.

Composes ``fit`` (training), ``model.render`` (reconstruction) and ``metrics`` (quality of seen and
unseen frames) into one plain dict ready for JSON. It does no printing, reads no files and writes
none: the caller hands it a decoded clip, and saves the model if it wants one.
"""

from __future__ import annotations

from collections.abc import Callable
import time
from pathlib import Path
from typing import Any

import torch

from cnervcodec.config import FitConfig, ModelConfig
from cnervcodec.fit import CheckpointPolicy, FitInterrupted, FitProgress, FitResult, fit
from cnervcodec.metrics import subset_quality
from cnervcodec.embedding import block_projection, padded_floats
from cnervcodec.model import count_parameters, render

ENCODE_SAMPLE_FRAMES = 32  # frames an encode-time measurement runs over


def fit_clip(
    clip: Any,
    model_config: ModelConfig,
    fit_config: FitConfig,
    device: torch.device,
    progress: Callable[[FitProgress], None] | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_every_s: float = 120.0,
    resume: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    size: str = "",
) -> tuple[FitResult, dict[str, Any]]:
    """Fit ``clip`` (a ``video_io.VideoClip``) and measure its seen and unseen frames: (fit, report)."""
    try:
        result = fit(clip.frames, model_config, fit_config, device, progress=progress,
                     checkpoint=CheckpointPolicy(checkpoint_path, checkpoint_every_s), resume=resume,
                     should_stop=should_stop)
    except FitInterrupted as exc:
        if exc.checkpoint is None:
            raise FitInterrupted("fit interrupted; no checkpoint was kept (pass -o or --checkpoint)", None) from None
        raise FitInterrupted(f"fit interrupted; checkpoint saved: continue with --resume {exc.checkpoint}",
                             exc.checkpoint) from None
    return result, fit_report(result, clip, device, size)


def fit_report(result: FitResult, clip: Any, device: torch.device, size: str = "") -> dict[str, Any]:
    """What ``cnerv fit --json`` prints about a fit of ``clip``: network, recipe, speed, seen/unseen quality."""
    config = result.network.config
    decoded = render(result.network, result.inputs)
    encoder = result.network.encoder
    encode_ms = None
    if encoder is not None:  # NeRV has no content encoder: a new frame needs training
        padded = config.padded_size
        encode_ms = encode_time_ms(lambda x: encoder(block_projection(x, config.embedding)), clip.frames,
                                   lambda batch: padded_floats(batch, padded, device), device)
    fields = network_fields(config.arch, size, config.decoder_param_count(), count_parameters(encoder),
                            config.embedding.values_per_frame if config.arch == "cnerv" else 0, list(config.grid),
                            encode_ms)
    return fields | run_fields(result.config.epochs, result.steps, result.fit_seconds, result.train_fps, device, clip) \
        | quality_fields(clip, decoded, result.seen, result.unseen)


def network_fields(arch: str, size: str, decoder_params: int, encoder_params: int, values_per_frame: int,
                   grid: list[int], encode_ms: float | None) -> dict[str, Any]:
    """The report's description of a network: sizes (decoder, encoder, total), code length, encode time."""
    return {"arch": arch, "size": size, "params": decoder_params, "encoder_params": encoder_params,
            "total_params": decoder_params + encoder_params, "embedding_values_per_frame": values_per_frame,
            "grid": grid, "encode_ms_per_frame": encode_ms}


def run_fields(epochs: int, steps: int, fit_seconds: float, train_fps: float, device: torch.device,
               clip: Any) -> dict[str, Any]:
    """The report's description of the training run and its input."""
    return {"epochs": epochs, "steps": steps, "fit_seconds": round(fit_seconds, 3), "train_fps": round(train_fps, 2),
            "device": str(device),
            "input": {"path": clip.source, "frames": clip.n_frames, "width": clip.width, "height": clip.height,
                      "fps": str(clip.fps)}}


def quality_fields(clip: Any, decoded: torch.Tensor, seen: torch.Tensor, unseen: torch.Tensor) -> dict[str, Any]:
    """Seen and unseen quality of ``decoded`` against the clip's frames, their PSNR gap, and notes."""
    quality = subset_quality(clip.frames, decoded, {"seen": seen.cpu(), "unseen": unseen.cpu()})
    seen_q, unseen_q = quality["seen"], quality["unseen"]
    notes = list(clip.notes) + sorted({q.note for q in (seen_q, unseen_q) if q is not None and q.note})
    return {"seen": seen_q.to_dict(per_frame=False) if seen_q else None,
            "unseen": unseen_q.to_dict(per_frame=False) if unseen_q else None,
            "gap_psnr": round(seen_q.psnr - unseen_q.psnr, 3) if seen_q and unseen_q else None,
            "model": None, "notes": notes}


@torch.no_grad()
def encode_time_ms(encode: Callable[[torch.Tensor], torch.Tensor], frames_u8: Any,
                   prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                   sample_frames: int = ENCODE_SAMPLE_FRAMES, batch: int = 8, repeats: int = 3) -> float:
    """Milliseconds per frame of ``encode`` (pixels -> embedding), as the paper times encoding: the
    forward pass alone, frames already decoded and on the device (``prepare`` runs outside the clock).
    The best of ``repeats`` passes over up to ``sample_frames`` frames, after one warm-up batch."""
    count = min(sample_frames, frames_u8.shape[0])
    inputs = [prepare(frames_u8[i : min(i + batch, count)]) for i in range(0, count, batch)]
    encode(inputs[0])
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for x in inputs:
            encode(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return round(1000.0 * best / count, 4)
