"""Scoring a ``.cnrv`` against its source a batch at a time, so a long clip is never held whole.

``codec`` makes and reads the bytes; this module decodes them in batches and scores each batch against
the reference frames (a tensor or a ``frame_store`` store): the rate search's YUV-PSNR per candidate,
on a sample of frames for a long clip, and where a long clip's decoded frames go for the encode report.
"""

from __future__ import annotations

from typing import Any

import torch

from cnervcodec.fit import Planes
from cnervcodec.frame_store import take
from cnervcodec.model import render_latents

RATE_SCORE_FRAMES = 256  # frames the rate search decodes per candidate, at most


def decode_options(reference_u8) -> dict[str, Any]:
    """``decode``'s options for scoring against ``reference_u8``: a stored (long) clip decodes to disk
    beside it, so neither is ever held whole."""
    if isinstance(reference_u8, torch.Tensor):
        return {}
    return {"to_disk": True, "cache_dir": getattr(reference_u8, "directory", None)}


def decoded_psnr_yuv(network, reference_u8, planes: Planes | None, device: torch.device | str = "cpu",
                     batch: int = 8, indices: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame YUV-PSNR of the frames a parsed stream (``codec.open_stream``) decodes to against
    ``reference_u8`` (and the source's own ``planes``), a batch at a time: a long clip's rate search
    scores this way without holding its frames. ``indices``: score only those frames."""
    from cnervcodec.metrics import psnr_yuv_db

    model = network.header.model
    latents = network.latents
    if indices is not None:
        latents = latents[indices]
        reference_u8 = take(reference_u8, indices)
        planes = tuple(take(p, indices) for p in planes) if planes is not None else None
    scores, start = [], 0
    for part in render_latents(network.decoder, latents, model.height, model.width, torch.device(device), batch):
        end = start + part.shape[0]
        part_planes = tuple(p[start:end] for p in planes) if planes is not None else None
        scores.append(psnr_yuv_db(reference_u8[start:end], part, planes=part_planes))
        start = end
    return torch.cat(scores)


def score_sample(n_frames: int) -> torch.Tensor | None:
    """The frames a rate search scores its candidates on: all of a clip up to ``RATE_SCORE_FRAMES``, else
    that many evenly spaced (a 20,000-frame clip would otherwise be decoded once per candidate)."""
    if n_frames <= RATE_SCORE_FRAMES:
        return None
    return torch.linspace(0, n_frames - 1, RATE_SCORE_FRAMES).round().long().unique()
