"""A fit, end to end and measured: what ``cnerv fit`` and ``benchmarks/fit_speed.py`` share.

Composes ``fit`` (training), ``model.render`` (reconstruction) and ``metrics`` (quality of seen
and unseen frames), saves the model when asked, and returns one plain dict ready for JSON. It does
no printing and reads no files: the caller hands it a decoded clip.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnervcodec.checkpoint import save_model
from cnervcodec.config import FitConfig, ModelConfig
from cnervcodec.fit import CheckpointPolicy, FitInterrupted, FitProgress, FitResult, fit
from cnervcodec.metrics import QualityReport, quality_report
from cnervcodec.model import count_parameters, render


def quality_of(result: FitResult, frames_u8: torch.Tensor, indices: torch.Tensor, batch: int = 8) -> QualityReport | None:
    """Reconstruct frames ``indices`` with the fitted network and measure them against the originals."""
    if len(indices) == 0:
        return None
    device_indices = indices.to(result.inputs.device)
    decoded = render(result.network, result.inputs[device_indices], batch=batch)
    return quality_report(frames_u8[indices], decoded)


def cnerv_embeddings(result: FitResult, batch: int = 64) -> torch.Tensor | None:
    """Every frame's embedding (T, d, n_h, n_w) from the fitted encoder (None for NeRV)."""
    network = result.network
    if network.encoder is None:
        return None
    with torch.no_grad():
        chunks = [network.encoder(result.inputs[i : i + batch]).cpu() for i in range(0, result.inputs.shape[0], batch)]
    return torch.cat(chunks)


def run_fit(
    clip: Any,
    model_config: ModelConfig,
    fit_config: FitConfig,
    device: torch.device,
    progress: Callable[[FitProgress], None] | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_every_s: float = 120.0,
    resume: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    output: Path | None = None,
    size: str = "",
    weight_bits: int = 8,
) -> dict[str, Any]:
    """Fit ``clip`` (a ``video_io.VideoClip``), measure seen/unseen quality, optionally save the model."""
    try:
        result = fit(
            clip.frames,
            model_config,
            fit_config,
            device,
            progress=progress,
            checkpoint=CheckpointPolicy(checkpoint_path, checkpoint_every_s),
            resume=resume,
            should_stop=should_stop,
        )
    except FitInterrupted as exc:
        if exc.checkpoint is None:
            raise FitInterrupted("fit interrupted; no checkpoint was kept (pass -o or --checkpoint)", None) from None
        raise FitInterrupted(f"fit interrupted; checkpoint saved: continue with --resume {exc.checkpoint}", exc.checkpoint) from None
    config = result.network.config
    seen = quality_of(result, clip.frames, result.seen)
    unseen = quality_of(result, clip.frames, result.unseen)
    notes = list(clip.notes) + sorted({q.note for q in (seen, unseen) if q is not None and q.note})
    report = {
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
        "input": {
            "path": clip.source,
            "frames": clip.n_frames,
            "width": clip.width,
            "height": clip.height,
            "fps": str(clip.fps),
        },
        "seen": seen.to_dict(per_frame=False) if seen else None,
        "unseen": unseen.to_dict(per_frame=False) if unseen else None,
        "gap_psnr": round(seen.psnr - unseen.psnr, 3) if seen and unseen else None,
        "model": str(output) if output is not None else None,
        "notes": notes,
    }
    if output is not None and output.suffix == ".cnrvm":
        report["model_sha256"] = save_model_file(output, result, weight_bits, report)
    elif output is not None:
        embeddings = cnerv_embeddings(result)
        save_model(output, result.network.cpu(), embeddings, {"fit": report, "fit_config": result.config.to_dict()})
    return report


def save_model_file(output: Path, result: FitResult, weight_bits: int, report: dict[str, Any]) -> str:
    """Write the fit as a .cnrvm model (decoder quantized to ``weight_bits``); returns its hash."""
    from cnervcodec import __version__
    from cnervcodec.atomic import atomic_write_bytes
    from cnervcodec.config import CompressionConfig
    from cnervcodec.modelfile import write_model_file
    from cnervcodec.reuse import model_file_from_fit

    metadata = {"encoder": f"cnervcodec {__version__}", "trained_on": report["input"],
                "fit": result.config.to_dict(), "seen": report["seen"], "unseen": report["unseen"]}
    model_file = model_file_from_fit(result, CompressionConfig(weight_bits=weight_bits), metadata)
    atomic_write_bytes(output, write_model_file(model_file))
    return model_file.sha256.hex()
