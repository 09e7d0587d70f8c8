"""Quality and rate metrics: PSNR (RGB and YUV 4:2:0), MS-SSIM and bits per pixel.

This module owns how a reconstruction is scored, so that the codec, the anchors (x264/x265) and the
RD curves are all measured the same way. Every function is pure: frames in, numbers out, no I/O.

Conventions, chosen to match the NeRV/CNeRV papers and the reference points in ``notes.md``:

* Frames are ``(T, 3, H, W)`` uint8 RGB tensors, or frame stores (``frame_store``: frames on disk),
  read only as slices ``x[a:b]`` of at most ``batch`` frames. The math runs on the frames' device (CPU
  or CUDA) one frame at a time within a batch, so memory stays bounded on long clips; results come
  back on the CPU. ``QualityAccumulator`` scores a clip batch by batch as it is decoded
  (``cnerv metrics``), and can score a batch's frames on several threads.
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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from cnervcodec import frame_store
from cnervcodec.errors import BadInputError

# pytorch-msssim's public ``ms_ssim`` asserts a short side over 160 px whatever the number of
# weights, so the scale loop is reproduced (in ``msssim``, with its per-scale kernel made fast). A
# test checks that five scales give what ``pytorch_msssim.ms_ssim`` gives.
from cnervcodec.msssim import (  # noqa: F401 (re-exported: the metrics' public names)
    MS_SSIM_MAX_SCALES,
    MS_SSIM_WEIGHTS,
    MS_SSIM_WIN_PX,
    MS_SSIM_WIN_SIGMA_PX,
    _avg_pool_2x2,
    _fallback_win_px,
    _ms_ssim_batch,
    _scale_weights,
    ms_ssim_note,
    ms_ssim_scales_for,
)
from cnervcodec.rate import bpp

PEAK_U8 = 255.0
PSNR_CAP_DB = 100.0
DEFAULT_BATCH_FRAMES = 8
_EXACT_RUN = 128  # squared 8-bit differences a float32 sum adds exactly: 128 * 255**2 < 2**24

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


def _check_frames(frames_u8, name: str) -> None:
    """Refuse anything but a ``(T, 3, H, W)`` uint8 clip (T may be 0): a tensor or a frame store."""
    if not frame_store.is_frames(frames_u8):
        raise BadInputError(f"{name} frames must be a torch tensor, got {type(frames_u8).__name__}")
    if frames_u8.dim() != 4 or frames_u8.shape[1] != 3:
        raise BadInputError(f"{name} frames must have shape (T, 3, H, W), got {tuple(frames_u8.shape)}")
    if frames_u8.dtype != torch.uint8:
        raise BadInputError(f"{name} frames must be uint8, got {frames_u8.dtype}")
    if frames_u8.shape[2] == 0 or frames_u8.shape[3] == 0:
        raise BadInputError(f"{name} frames are empty ({frames_u8.shape[2]}x{frames_u8.shape[3]} px)")


def _check_pair(ref_u8, dist_u8) -> None:
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


def _chunks(ref_u8, dist_u8, batch: int, planes=None):
    """(ref, dist, planes or None) per chunk of ``batch`` frames, read as contiguous slices (a frame
    store reads just those frames), on the reference's device."""
    device = getattr(ref_u8, "device", torch.device("cpu"))
    for s in _frame_slices(ref_u8.shape[0], batch):
        chunk_planes = None if planes is None else tuple(p[s.start : s.stop].to(device) for p in planes)
        yield ref_u8[s.start : s.stop].to(device), dist_u8[s.start : s.stop].to(device), chunk_planes


def _cat(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ PSNR


def _sse_per_frame(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences per frame of two uint8 tensors ``(N, ...)`` -> ``(N,)`` int64.

    Exact, whatever the device and summation order: differences and squares of 8-bit values are
    integers float32 holds exactly, a float32 sum of ``_EXACT_RUN`` squares stays under 2**24 (exact
    too), and the float64 sum of those runs under 2**53. One frame at a time, so the float copies
    stay cache-sized; ~6x faster than the int32 arithmetic it replaces.
    """
    sse = torch.empty(ref.shape[0], dtype=torch.int64, device=ref.device)
    for i in range(ref.shape[0]):
        squares = ref[i].to(torch.float32).sub_(dist[i].to(torch.float32)).square_().view(-1)
        whole = squares.numel() // _EXACT_RUN * _EXACT_RUN
        total = squares[:whole].view(-1, _EXACT_RUN).sum(dim=1).sum(dtype=torch.float64)
        sse[i] = (total + squares[whole:].sum(dtype=torch.float64)).to(torch.int64)
    return sse


def _psnr_db_from_mse(mse: torch.Tensor, peak: float = PEAK_U8) -> torch.Tensor:
    """PSNR in dB of float64 CPU MSEs, capped at ``PSNR_CAP_DB`` (an MSE of 0 gives the cap)."""
    return (10.0 * torch.log10(peak**2 / mse)).clamp(max=PSNR_CAP_DB)


def _psnr_rgb_chunk(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    return _psnr_db_from_mse(_sse_per_frame(ref, dist).cpu().to(torch.float64) / ref[0].numel())


def psnr_rgb_db(ref_u8, dist_u8, batch: int = DEFAULT_BATCH_FRAMES) -> torch.Tensor:
    """Per-frame PSNR in dB, ``(T,)`` float64 on the CPU, over all three RGB channels (peak 255).

    Identical frames score ``PSNR_CAP_DB`` (100 dB), not +inf, so reports stay finite.
    """
    _check_pair(ref_u8, dist_u8)
    _check_batch(batch)
    return _cat([_psnr_rgb_chunk(ref, dist) for ref, dist, _ in _chunks(ref_u8, dist_u8, batch)])


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


def _frame_yuv420(frame_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rgb_to_yuv420`` of one ``(3, H, W)`` frame, bit for bit (a test checks it), in a third of the
    time: the einsum's sum ``(m0 R + m1 G) + m2 B`` spelled out row by row in place, and the 2x2 mean
    as strided adds (``avg_pool2d``'s order) instead of the pooling kernel."""
    rgb = frame_u8.to(torch.float32)  # (3, H, W)
    term = torch.empty_like(rgb[0])
    rows = []
    for coefficients, offset in zip(BT601_LIMITED_MATRIX, BT601_LIMITED_OFFSET):
        row = torch.mul(rgb[0], coefficients[0])
        for channel in (1, 2):
            row.add_(torch.mul(rgb[channel], coefficients[channel], out=term))
        rows.append(row.add_(offset))
    pad_w, pad_h = rgb.shape[-1] % 2, rgb.shape[-2] % 2
    u, v = (_avg_pool_2x2(F.pad(c[None, None], (0, pad_w, 0, pad_h), mode="replicate")[0] if pad_w or pad_h
                          else c[None])[0] for c in rows[1:])

    def rounded(values: torch.Tensor, value_range: tuple[int, int]) -> torch.Tensor:
        return values.add_(0.5).floor_().clamp_(*value_range).to(torch.uint8)

    return rounded(rows[0], LUMA_RANGE), rounded(u, CHROMA_RANGE), rounded(v, CHROMA_RANGE)


def _psnr_yuv_chunk(ref: torch.Tensor, dist: torch.Tensor, planes: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
    """6:1:1 YUV PSNR of each frame of a chunk (``psnr_yuv_db``), one frame at a time."""
    values = torch.empty(ref.shape[0], dtype=torch.float64)
    for i in range(ref.shape[0]):
        ref_planes = _frame_yuv420(ref[i]) if planes is None else tuple(p[i] for p in planes)
        psnr_y, psnr_u, psnr_v = (
            _psnr_db_from_mse(_sse_per_frame(r[None], d[None]).cpu().to(torch.float64) / r.numel())
            for r, d in zip(ref_planes, _frame_yuv420(dist[i]))
        )
        values[i] = ((6.0 * psnr_y + psnr_u + psnr_v) / 8.0)[0]
    return values


def psnr_yuv_db(ref_u8, dist_u8, batch: int = DEFAULT_BATCH_FRAMES,
                planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-frame ``(6 PSNR_Y + PSNR_U + PSNR_V) / 8`` in dB on 4:2:0 planes, ``(T,)`` float64 on the CPU.

    The 6:1:1 weighting is the JVET/HEVC common-test-conditions convention used for the reference
    points; each plane's PSNR is capped at ``PSNR_CAP_DB`` before weighting. ``planes``: the source's
    own 4:2:0 planes (``VideoClip.planes``, tensors or stores), the reference when given (JVET
    convention); otherwise ``ref_u8`` converted with ``rgb_to_yuv420``. ``dist_u8`` is always
    converted that way.
    """
    _check_pair(ref_u8, dist_u8)
    _check_batch(batch)
    if planes is not None:
        _check_planes(planes, ref_u8)
    return _cat([_psnr_yuv_chunk(ref, dist, p) for ref, dist, p in _chunks(ref_u8, dist_u8, batch, planes)])


def _check_planes(planes: tuple, ref_u8) -> None:
    """The planes must be uint8 4:2:0 planes of the very frames ``ref_u8`` holds."""
    n, _, height, width = ref_u8.shape
    chroma = (n, (height + 1) // 2, (width + 1) // 2)
    expected = ((n, height, width), chroma, chroma)
    if len(planes) != 3 or any(p.dtype != torch.uint8 or tuple(p.shape) != e for p, e in zip(planes, expected)):
        raise BadInputError(f"reference planes must be uint8 Y {expected[0]} and U, V {chroma}, got "
                            f"{[tuple(p.shape) for p in planes]}")


# --------------------------------------------------------------------------------------- MS-SSIM


def _ms_ssim_setup(height: int, width: int) -> tuple[int, tuple[float, ...], int]:
    """(scales, weights, window px) for a frame size (see ``ms_ssim_per_frame``)."""
    scales = ms_ssim_scales_for(height, width)
    win_px = MS_SSIM_WIN_PX if scales > 0 else _fallback_win_px(height, width)
    return scales, _scale_weights(scales), win_px


def _ms_ssim_chunk(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    _, weights, win_px = _ms_ssim_setup(*ref.shape[2:])
    return _ms_ssim_batch(ref, dist, weights, win_px).cpu().to(torch.float64)


def ms_ssim_per_frame(ref_u8, dist_u8, batch: int = DEFAULT_BATCH_FRAMES) -> tuple[torch.Tensor, int]:
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
    values = _cat([_ms_ssim_chunk(ref, dist) for ref, dist, _ in _chunks(ref_u8, dist_u8, batch)])
    return values, ms_ssim_scales_for(*ref_u8.shape[2:])


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


def _frame_scores(ref: torch.Tensor, dist: torch.Tensor, planes) -> torch.Tensor:
    """(PSNR, YUV-PSNR, MS-SSIM) of one frame pair ``(1, 3, H, W)``: the unit a worker thread scores."""
    return torch.stack([_psnr_rgb_chunk(ref, dist)[0], _psnr_yuv_chunk(ref, dist, planes)[0],
                        _ms_ssim_chunk(ref, dist)[0]])


class QualityAccumulator:
    """Scores a clip batch by batch (``add``), keeping only the per-frame values; ``report`` at the end.

    ``cnerv metrics`` feeds it frames as they are decoded, so neither clip is ever held whole.
    ``workers`` > 1 scores a batch's frames on that many threads: each frame's math is a chain of
    small, cache-sized operations, which scale across cores this way far better than through
    torch's intra-op threads (give those 1, ``torch.set_num_threads``, or they oversubscribe).
    """

    def __init__(self, workers: int = 1) -> None:
        self._values: list[torch.Tensor] = []  # (n, 3) per batch: PSNR, YUV-PSNR, MS-SSIM
        self._size: tuple[int, int] | None = None
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def add(self, ref_u8: torch.Tensor, dist_u8: torch.Tensor, planes: tuple | None = None) -> None:
        """Score one batch ``(n, 3, H, W)`` (tensors), against the source's ``planes`` when given."""
        _check_pair(ref_u8, dist_u8)
        if planes is not None:
            _check_planes(planes, ref_u8)
        if self._size is not None and tuple(ref_u8.shape[2:]) != self._size:
            height, width = self._size
            raise BadInputError(f"frames change size from {width}x{height} px to {ref_u8.shape[3]}x{ref_u8.shape[2]} px")
        self._size = tuple(ref_u8.shape[2:])
        dist_u8 = dist_u8.to(ref_u8.device)
        jobs = [(ref_u8[i : i + 1], dist_u8[i : i + 1], None if planes is None else tuple(p[i : i + 1] for p in planes))
                for i in range(ref_u8.shape[0])]
        scores = self._pool.map(lambda job: _frame_scores(*job), jobs) if self._pool else (_frame_scores(*j) for j in jobs)
        self._values.append(torch.stack(list(scores)) if jobs else torch.zeros((0, 3), dtype=torch.float64))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def report(self) -> QualityReport:
        """The clip's ``QualityReport`` over every frame added so far."""
        self.close()
        values = torch.cat(self._values) if self._values else torch.zeros((0, 3), dtype=torch.float64)
        if values.shape[0] == 0 or self._size is None:
            raise BadInputError("no frames to compare")
        psnr, psnr_yuv, ms_ssim = values.unbind(1)
        return QualityReport(
            frames=values.shape[0],
            psnr=float(psnr.mean()),
            psnr_yuv=float(psnr_yuv.mean()),
            ms_ssim=float(ms_ssim.mean()),
            ms_ssim_scales=ms_ssim_scales_for(*self._size),
            per_frame_psnr=psnr.tolist(),
            per_frame_psnr_yuv=psnr_yuv.tolist(),
            per_frame_ms_ssim=ms_ssim.tolist(),
            note=ms_ssim_note(*self._size),
        )


def quality_report(ref_u8, dist_u8, batch: int = DEFAULT_BATCH_FRAMES,
                   planes: tuple | None = None) -> QualityReport:
    """Score ``dist_u8`` against ``ref_u8`` (tensors or frame stores): PSNR (RGB and YUV) and MS-SSIM,
    per frame and averaged, in one pass of ``batch`` frames at a time. YUV-PSNR is against the
    source's own 4:2:0 ``planes`` when given (``psnr_yuv_db``)."""
    _check_pair(ref_u8, dist_u8)
    _check_batch(batch)
    if ref_u8.shape[0] == 0:
        raise BadInputError("no frames to compare")
    if planes is not None:
        _check_planes(planes, ref_u8)
    accumulator = QualityAccumulator()
    for ref, dist, chunk_planes in _chunks(ref_u8, dist_u8, batch, planes):
        accumulator.add(ref, dist, chunk_planes)
    return accumulator.report()


def subset_quality(ref_u8, dist_u8, subsets: dict[str, torch.Tensor]) -> dict[str, QualityReport | None]:
    """``quality_report`` of each named set of frame indices (None for an empty set): the seen and
    unseen frames of a ``--holdout`` or ``--fit-every`` fit, scored apart because unseen frames rely
    on the encoder generalizing and are usually the worse ones. Stores are subset lazily
    (``frame_store.take``), so only a batch of frames is ever read at a time."""
    return {name: quality_report(frame_store.take(ref_u8, indices), frame_store.take(dist_u8, indices))
            if len(indices) else None for name, indices in subsets.items()}
