"""A fit, end to end and measured: what ``cnerv fit`` and ``benchmarks/fit_speed.py`` share.

Composes ``fit`` (training), ``model.render`` (reconstruction) and ``metrics`` (quality of seen and
unseen frames) into one plain dict ready for JSON. It does no printing, reads no files and writes
none: the caller hands it a decoded clip, and saves the model if it wants one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnervcodec.config import FitConfig, ModelConfig
from cnervcodec.fit import CheckpointPolicy, FitInterrupted, FitProgress, FitResult, fit
from cnervcodec.metrics import subset_quality
from cnervcodec.model import count_parameters, render


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
    quality = subset_quality(clip.frames, decoded, {"seen": result.seen.cpu(), "unseen": result.unseen.cpu()})
    seen, unseen = quality["seen"], quality["unseen"]
    notes = list(clip.notes) + sorted({q.note for q in (seen, unseen) if q is not None and q.note})
    return {
        "arch": config.arch,
        "size": size,
        "params": config.decoder_param_count(),
        "encoder_params": count_parameters(result.network.encoder),
        "embedding_values_per_frame": config.embedding.values_per_frame if config.arch == "cnerv" else 0,
        "grid": list(config.grid),
        "epochs": result.config.epochs,
        "steps": result.steps,
        "fit_seconds": round(result.fit_seconds, 3),
        "train_fps": round(result.train_fps, 2),
        "device": str(device),
        "input": {"path": clip.source, "frames": clip.n_frames, "width": clip.width, "height": clip.height,
                  "fps": str(clip.fps)},
        "seen": seen.to_dict(per_frame=False) if seen else None,
        "unseen": unseen.to_dict(per_frame=False) if unseen else None,
        "gap_psnr": round(seen.psnr - unseen.psnr, 3) if seen and unseen else None,
        "model": None,
        "notes": notes,
    }
