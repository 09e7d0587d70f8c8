"""Quality and rate metrics: PSNR (RGB and YUV 4:2:0), MS-SSIM and bits per pixel.

This module owns how a reconstruction is scored, so that the codec, the anchors (x264/x265) and the
RD curves are all measured the same way. Every function is pure: frames in, numbers out, no I/O.

Conventions, chosen to match the NeRV/CNeRV papers and the reference points in ``notes.md``:

* Frames are ``(T, 3, H, W)`` uint8 RGB tensors. The math runs on the frames' device (CPU or CUDA)
  a few frames at a time, so memory stays bounded on long clips; results come back on the CPU.
* Clip scores are means of per-frame scores (the mean of per-frame PSNRs, not the PSNR of the mean
  MSE), as NeRV and its successors report them.
* PSNR is capped at ``PSNR_CAP_DB`` (100 dB) instead of +inf for identical frames, so that JSON output
  stays finite and clip means stay meaningful.
* YUV PSNR is ``(6 Y + U + V) / 8`` on 4:2:0 planes made with the BT.601 limited-range matrix, the
  way the x264/x265 reference points were measured on yuv420p.
* MS-SSIM is pytorch-msssim's (11-px Gaussian window, sigma 1.5, the five standard weights,
  data range 255), with fewer scales on frames too small for five; see ``ms_ssim_scales_for``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

# pytorch-msssim's public ``ms_ssim`` asserts a short side over 160 px whatever the number of
# weights, so the scale loop is reproduced here on top of its per-scale kernel. A test checks that
# five scales give exactly what ``pytorch_msssim.ms_ssim`` gives.
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from cnervcodec.errors import BadInputError
from cnervcodec.rate import bpp

PEAK_U8 = 255.0
PSNR_CAP_DB = 100.0
DEFAULT_BATCH_FRAMES = 8

MS_SSIM_WIN_PX = 11
MS_SSIM_WIN_SIGMA_PX = 1.5
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # finest scale first
MS_SSIM_MAX_SCALES = len(MS_SSIM_WEIGHTS)

# ITU-R BT.601, limited ("TV") range, for R, G, B in 0..255: rows give Y, Cb, Cr. Y spans 16..235
# and Cb/Cr 16..240. Each chroma row sums to zero, so greys have Cb = Cr = 128 exactly.
BT601_LIMITED_MATRIX = (
    (65.481 / 255, 128.553 / 255, 24.966 / 255),
    (-37.797 / 255, -74.203 / 255, 112.0 / 255),
    (112.0 / 255, -93.786 / 255, -18.214 / 255),
)
BT601_LIMITED_OFFSET = (16.0, 128.0, 128.0)
LUMA_RANGE = (16, 235)
CHROMA_RANGE = (16, 240)


# ---------------------------------------------------------------------------------------- checks


def _check_frames(frames_u8: torch.Tensor, name: str) -> None:
    """Refuse anything but a non-empty ``(T, 3, H, W)`` uint8 clip (T may be 0)."""
    if not isinstance(frames_u8, torch.Tensor):
        raise BadInputError(f"{name} frames must be a torch tensor, got {type(frames_u8).__name__}")
    if frames_u8.dim() != 4 or frames_u8.shape[1] != 3:
        raise BadInputError(f"{name} frames must have shape (T, 3, H, W), got {tuple(frames_u8.shape)}")
    if frames_u8.dtype != torch.uint8:
        raise BadInputError(f"{name} frames must be uint8, got {frames_u8.dtype}")
    if frames_u8.shape[2] == 0 or frames_u8.shape[3] == 0:
        raise BadInputError(f"{name} frames are empty ({frames_u8.shape[2]}x{frames_u8.shape[3]} px)")


def _check_pair(ref_u8: torch.Tensor, dist_u8: torch.Tensor) -> None:
    """Both clips valid, with the same frame count and the same frame size."""
    _check_frames(ref_u8, "reference")
    _check_frames(dist_u8, "distorted")
    if ref_u8.shape[0] != dist_u8.shape[0]:
        raise BadInputError(f"reference has {ref_u8.shape[0]} frames, distorted has {dist_u8.shape[0]}")
    if ref_u8.shape[2:] != dist_u8.shape[2:]:
        ref_h, ref_w = ref_u8.shape[2:]
        dist_h, dist_w = dist_u8.shape[2:]
        raise BadInputError(f"reference frames are {ref_w}x{ref_h} px, distorted frames are {dist_w}x{dist_h} px")


def _check_batch(batch: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be at least 1 frame, got {batch}")


def _frame_slices(n_frames: int, batch: int) -> list[slice]:
    """Consecutive chunks of at most ``batch`` frames: the unit of work that bounds memory."""
    return [slice(start, min(start + batch, n_frames)) for start in range(0, n_frames, batch)]


# ------------------------------------------------------------------------------------------ PSNR


def _sse_per_frame(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences per frame of two uint8 tensors ``(N, ...)`` -> ``(N,)`` int64.

    Integer arithmetic makes the error exact and independent of device and summation order.
    """
    diff = ref.to(torch.int32) - dist.to(torch.int32)
    return diff.square().flatten(1).sum(dim=1, dtype=torch.int64)


def _psnr_db_from_mse(mse: torch.Tensor, peak: float = PEAK_U8) -> torch.Tensor:
    """PSNR in dB of float64 CPU MSEs, capped at ``PSNR_CAP_DB`` (an MSE of 0 gives the cap)."""
    return (10.0 * torch.log10(peak**2 / mse)).clamp(max=PSNR_CAP_DB)


def psnr_rgb_db(ref_u8: torch.Tensor, dist_u8: torch.Tensor, batch: int = DEFAULT_BATCH_FRAMES) -> torch.Tensor:
    """Per-frame PSNR in dB, ``(T,)`` float64 on the CPU, over all three RGB channels (peak 255).

    Identical frames score ``PSNR_CAP_DB`` (100 dB), not +inf, so reports stay finite.
    """
    _check_pair(ref_u8, dist_u8)
    _check_batch(batch)
    dist_u8 = dist_u8.to(ref_u8.device)
    n_values = 3 * ref_u8.shape[2] * ref_u8.shape[3]
    sse = [_sse_per_frame(ref_u8[s], dist_u8[s]).cpu() for s in _frame_slices(ref_u8.shape[0], batch)]
    sse_all = torch.cat(sse) if sse else torch.zeros(0, dtype=torch.int64)
    return _psnr_db_from_mse(sse_all.to(torch.float64) / n_values)


# ------------------------------------------------------------------------------------ YUV 4:2:0


def subsample_chroma_2x2(plane: torch.Tensor) -> torch.Tensor:
    """Average 2x2 blocks of ``(T, C, H, W)`` float planes -> ``(T, C, ceil(H/2), ceil(W/2))``.

    Odd sizes are padded by repeating the last row/column, so an edge sample averages real pixels
    only (zero padding would darken the edge chroma).
    """
    pad_w, pad_h = plane.shape[-1] % 2, plane.shape[-2] % 2
    if pad_w or pad_h:
        plane = F.pad(plane, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(plane, kernel_size=2)


def _round_to_u8(values: torch.Tensor, value_range: tuple[int, int]) -> torch.Tensor:
    """Round half up (as video converters do) and clamp to the legal range of the plane."""
    return torch.floor(values + 0.5).clamp(*value_range).to(torch.uint8)


def rgb_to_yuv420(frames_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8-bit RGB ``(T, 3, H, W)`` -> uint8 planes Y ``(T, H, W)``, U and V ``(T, ceil(H/2), ceil(W/2))``.

    BT.601 limited range (Y 16..235, Cb/Cr 16..240), chroma averaged over 2x2 blocks in full
    precision and rounded once. This is the matrix the x264/x265 reference points of ``notes.md``
    were scored with on yuv420p, so YUV PSNRs here are comparable to them. The planes stay on the
    input's device.
    """
    _check_frames(frames_u8, "input")
    rgb = frames_u8.to(torch.float32)  # (T, 3, H, W)
    matrix = torch.tensor(BT601_LIMITED_MATRIX, dtype=torch.float32, device=rgb.device)
    offset = torch.tensor(BT601_LIMITED_OFFSET, dtype=torch.float32, device=rgb.device)
    yuv = torch.einsum("ij,tjhw->tihw", matrix, rgb) + offset[:, None, None]  # (T, 3, H, W)
    chroma = subsample_chroma_2x2(yuv[:, 1:])  # (T, 2, ceil(H/2), ceil(W/2))
    y = _round_to_u8(yuv[:, 0], LUMA_RANGE)
    u = _round_to_u8(chroma[:, 0], CHROMA_RANGE)
    v = _round_to_u8(chroma[:, 1], CHROMA_RANGE)
    return y, u, v


def psnr_yuv_db(ref_u8: torch.Tensor, dist_u8: torch.Tensor, batch: int = DEFAULT_BATCH_FRAMES,
                planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-frame ``(6 PSNR_Y + PSNR_U + PSNR_V) / 8`` in dB on 4:2:0 planes, ``(T,)`` float64 on the CPU.

    The 6:1:1 weighting is the JVET/HEVC common-test-conditions convention used for the reference
    points; each plane's PSNR is capped at ``PSNR_CAP_DB`` before weighting. ``planes``: the source's
    own 4:2:0 planes (``VideoClip.planes``), the reference when given (JVET convention); otherwise
    ``ref_u8`` converted with ``rgb_to_yuv420``. ``dist_u8`` is always converted that way.
    """
    _check_pair(ref_u8, dist_u8)
    _check_batch(batch)
    if planes is not None:
        _check_planes(planes, ref_u8)
    dist_u8 = dist_u8.to(ref_u8.device)
    per_chunk = []
    for s in _frame_slices(ref_u8.shape[0], batch):
        ref_planes = rgb_to_yuv420(ref_u8[s]) if planes is None else tuple(p[s].to(ref_u8.device) for p in planes)
        pairs = zip(ref_planes, rgb_to_yuv420(dist_u8[s]))
        psnr_y, psnr_u, psnr_v = (
            _psnr_db_from_mse(_sse_per_frame(ref, dist).cpu().to(torch.float64) / ref[0].numel())
            for ref, dist in pairs
        )
        per_chunk.append((6.0 * psnr_y + psnr_u + psnr_v) / 8.0)
    return torch.cat(per_chunk) if per_chunk else torch.zeros(0, dtype=torch.float64)


def _check_planes(planes: tuple[torch.Tensor, ...], ref_u8: torch.Tensor) -> None:
    """The planes must be uint8 4:2:0 planes of the very frames ``ref_u8`` holds."""
    n, _, height, width = ref_u8.shape
    chroma = (n, (height + 1) // 2, (width + 1) // 2)
    expected = ((n, height, width), chroma, chroma)
    if len(planes) != 3 or any(p.dtype != torch.uint8 or tuple(p.shape) != e for p, e in zip(planes, expected)):
        raise BadInputError(f"reference planes must be uint8 Y {expected[0]} and U, V {chroma}, got "
                            f"{[tuple(p.shape) for p in planes]}")


# --------------------------------------------------------------------------------------- MS-SSIM


def ms_ssim_scales_for(height: int, width: int) -> int:
    """How many MS-SSIM scales (1..5) a ``height x width`` frame supports with the 11-px window.

    ``k`` scales downsample ``k - 1`` times, and the coarsest scale must still hold the window:
    short side > (11 - 1) * 2**(k - 1), i.e. over 160 px for all five. Returns 0 when not even one
    scale fits (short side under 11 px); ``ms_ssim_per_frame`` then falls back to plain SSIM with a
    smaller window.
    """
    short_side_px = min(height, width)
    for scales in range(MS_SSIM_MAX_SCALES, 0, -1):
        if short_side_px > (MS_SSIM_WIN_PX - 1) * 2 ** (scales - 1):
            return scales
    return 0


def _fallback_win_px(height: int, width: int) -> int:
    """The largest odd window that fits a frame too small for the 11-px one."""
    short_side_px = min(height, width)
    return short_side_px if short_side_px % 2 else short_side_px - 1


def ms_ssim_note(height: int, width: int) -> str:
    """Why MS-SSIM on this frame size is not the standard five-scale value; "" when it is."""
    scales = ms_ssim_scales_for(height, width)
    short_side_px = min(height, width)
    if scales == MS_SSIM_MAX_SCALES:
        return ""
    if scales > 0:
        five_scale_min_px = (MS_SSIM_WIN_PX - 1) * 2 ** (MS_SSIM_MAX_SCALES - 1) + 1
        return f"MS-SSIM over {scales} scales (frame short side {short_side_px} px < {five_scale_min_px})"
    return (
        f"single-scale SSIM with a {_fallback_win_px(height, width)}-px window instead of MS-SSIM "
        f"(frame short side {short_side_px} px < {MS_SSIM_WIN_PX})"
    )


def _scale_weights(scales: int) -> tuple[float, ...]:
    """The first ``scales`` standard weights renormalised to sum to 1 (one scale: just SSIM)."""
    kept = MS_SSIM_WEIGHTS[: max(scales, 1)]
    total = sum(kept)
    return tuple(w / total for w in kept)


def _ms_ssim_batch(ref: torch.Tensor, dist: torch.Tensor, weights: tuple[float, ...], win_px: int) -> torch.Tensor:
    """MS-SSIM of float ``(N, 3, H, W)`` batches in 0..255 -> ``(N,)``, as pytorch-msssim computes it.

    Same per-scale kernel, the same zero-padded 2x2 average pooling between scales, the same ReLU
    on contrast-structure terms, and the mean over channels of the weighted product.
    """
    win = _fspecial_gauss_1d(win_px, MS_SSIM_WIN_SIGMA_PX).repeat(ref.shape[1], 1, 1, 1)
    terms = []
    for scale in range(len(weights)):
        ssim_per_channel, cs_per_channel = _ssim(ref, dist, data_range=PEAK_U8, win=win, size_average=False)
        if scale < len(weights) - 1:
            terms.append(torch.relu(cs_per_channel))
            padding = [side % 2 for side in ref.shape[2:]]
            ref = F.avg_pool2d(ref, kernel_size=2, padding=padding)
            dist = F.avg_pool2d(dist, kernel_size=2, padding=padding)
    terms.append(torch.relu(ssim_per_channel))
    stacked = torch.stack(terms)  # (scales, N, 3)
    weights_t = stacked.new_tensor(weights).view(-1, 1, 1)
    return torch.prod(stacked**weights_t, dim=0).mean(dim=1)


def ms_ssim_per_frame(
    ref_u8: torch.Tensor, dist_u8: torch.Tensor, batch: int = DEFAULT_BATCH_FRAMES
) -> tuple[torch.Tensor, int]:
    """Per-frame MS-SSIM ``(T,)`` float64 on the CPU, and the number of scales used.

    Frames with a short side of 161 px or more get the standard five scales. Smaller frames get as
    many scales as fit (``ms_ssim_scales_for``) with the first weights renormalised, which keeps the
    finest scales' meaning. Frames under 11 px report 0 scales and get single-scale SSIM with the
    largest odd window that fits (clamped at 0 like MS-SSIM's last term): a number, not a crash,
    but not comparable with MS-SSIM; ``ms_ssim_note`` says which was used. Computed in float32
    with data range 255, ``batch`` frames at a time.
    """
    _check_pair(ref_u8, dist_u8)
    _check_batch(batch)
    dist_u8 = dist_u8.to(ref_u8.device)
    height, width = ref_u8.shape[2:]
    scales = ms_ssim_scales_for(height, width)
    win_px = MS_SSIM_WIN_PX if scales > 0 else _fallback_win_px(height, width)
    weights = _scale_weights(scales)
    per_chunk = [
        _ms_ssim_batch(ref_u8[s].to(torch.float32), dist_u8[s].to(torch.float32), weights, win_px).cpu()
        for s in _frame_slices(ref_u8.shape[0], batch)
    ]
    values = torch.cat(per_chunk) if per_chunk else torch.zeros(0)
    return values.to(torch.float64), scales


# ---------------------------------------------------------------------------------- rate, report


@dataclass(frozen=True)
class QualityReport:
    """A clip's quality scores: means over frames plus the per-frame values they came from.

    ``note`` is "" for standard five-scale MS-SSIM and otherwise says what was computed instead, so
    that a JSON reader cannot mistake a 4-scale value for a comparable one.
    """

    frames: int
    psnr: float  # dB, RGB, mean over frames
    psnr_yuv: float  # dB, (6Y + U + V) / 8 on BT.601 4:2:0, mean over frames
    ms_ssim: float  # mean over frames
    ms_ssim_scales: int
    per_frame_psnr: list[float]
    per_frame_psnr_yuv: list[float]
    per_frame_ms_ssim: list[float]
    note: str = ""

    def to_dict(self, per_frame: bool = True) -> dict:
        """Plain JSON types keyed by field name; ``per_frame=False`` drops the three lists."""
        data = asdict(self)
        if not per_frame:
            for key in ("per_frame_psnr", "per_frame_psnr_yuv", "per_frame_ms_ssim"):
                del data[key]
        return data


def rate_point(report: QualityReport, n_bytes: int, height: int, width: int) -> dict[str, float]:
    """One rate-distortion point as every report prints it: bytes, bpp, PSNR (RGB, YUV), MS-SSIM."""
    return {"bytes": n_bytes, "bpp": bpp(n_bytes, report.frames, height, width), "psnr": report.psnr,
            "psnr_yuv": report.psnr_yuv, "ms_ssim": report.ms_ssim}


def quality_report(ref_u8: torch.Tensor, dist_u8: torch.Tensor, batch: int = DEFAULT_BATCH_FRAMES,
                   planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> QualityReport:
    """Score ``dist_u8`` against ``ref_u8``: PSNR (RGB and YUV) and MS-SSIM, per frame and averaged.
    YUV-PSNR is against the source's own 4:2:0 ``planes`` when given (``psnr_yuv_db``)."""
    _check_pair(ref_u8, dist_u8)
    if ref_u8.shape[0] == 0:
        raise BadInputError("no frames to compare")
    psnr = psnr_rgb_db(ref_u8, dist_u8, batch)
    psnr_yuv = psnr_yuv_db(ref_u8, dist_u8, batch, planes)
    ms_ssim, scales = ms_ssim_per_frame(ref_u8, dist_u8, batch)
    height, width = ref_u8.shape[2:]
    return QualityReport(
        frames=ref_u8.shape[0],
        psnr=float(psnr.mean()),
        psnr_yuv=float(psnr_yuv.mean()),
        ms_ssim=float(ms_ssim.mean()),
        ms_ssim_scales=scales,
        per_frame_psnr=psnr.tolist(),
        per_frame_psnr_yuv=psnr_yuv.tolist(),
        per_frame_ms_ssim=ms_ssim.tolist(),
        note=ms_ssim_note(height, width),
    )


def subset_quality(ref_u8: torch.Tensor, dist_u8: torch.Tensor,
                   subsets: dict[str, torch.Tensor]) -> dict[str, QualityReport | None]:
    """``quality_report`` of each named set of frame indices (None for an empty set): the seen and
    unseen frames of a ``--holdout`` or ``--fit-every`` fit, scored apart because unseen frames rely
    on the encoder generalizing and are usually the worse ones."""
    return {name: quality_report(ref_u8[indices], dist_u8[indices]) if len(indices) else None
            for name, indices in subsets.items()}
