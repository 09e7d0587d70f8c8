"""Frame-rate up-conversion from embeddings: frames between two coded ones, decoded from blends.

CNeRV's content embeddings of neighbouring frames interpolate (paper, table 15), so the N - 1 frames
between each pair of coded frames can be decoded from blended embeddings (``decode --interpolate
N``): linearly, or by slerp (each block's vector turned along a great circle, its length blended
linearly). NeRV's index encoding has no such property, and a NeRV stream carries no embeddings.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch

from cnervcodec.config import INTERPOLATION_MODES, MAX_INTERPOLATE
from cnervcodec.errors import BadInputError
from cnervcodec.model import Decoder, render_latents, render_range

# Slerp has no unique path between (nearly) parallel or opposite vectors; closer than this (radians)
# it falls back to the linear blend, which differs from slerp by about angle**2: nothing in float32.
_SLERP_MIN_ANGLE_RAD = 1e-4
# A vector this small next to its partner has no meaningful direction: blend linearly instead.
_SLERP_NEGLIGIBLE_NORM_RATIO = 1e-9


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


def render_interpolated(decoder: Decoder, latents: torch.Tensor, height: int, width: int, n: int, mode: str,
                        device: torch.device, batch: int = 8, *, start: int = 0,
                        count: int | None = None, half: bool = False) -> Iterator[torch.Tensor]:
    """The frames ``interpolate_embeddings`` describes for coded frames ``start`` .. ``start + count - 1``,
    streamed as (n, 3, H, W) uint8 CPU tensors, one per coded frame: the frame itself, then the
    n - 1 frames towards the next one (the stream's last frame is held).

    The coded frames come from ``render_range``, so they match a plain decode bit for bit even where
    a decoder's float results depend on the batch; the blends go through the decoder ``batch`` at a
    time. Memory stays bounded by about 2 * batch + n frames. ``half``: as ``render_latents``.
    """
    check_interpolation(n, mode)
    if n == 1:
        yield from render_range(decoder, latents, height, width, device, batch, start=start, count=count,
                                half=half)
        return
    n_frames = latents.shape[0]
    index = start
    for coded in render_range(decoder, latents, height, width, device, batch, start=start, count=count, half=half):
        window = latents[index : index + coded.shape[0] + 1]  # these frames and the next one
        blends = between_embeddings(window, n, mode).flatten(0, 1)  # (pairs * (n - 1), d, n_h, n_w)
        blended = (frame for frames in render_latents(decoder, blends, height, width, device, batch, half=half)
                   for frame in frames)
        for frame_index, frame in zip(range(index, index + coded.shape[0]), coded):
            if frame_index == n_frames - 1:  # no next frame: hold this one
                yield frame.unsqueeze(0).repeat(n, 1, 1, 1)
            else:
                yield torch.stack([frame, *itertools.islice(blended, n - 1)])
        index += coded.shape[0]
