"""Reference encodes ("anchors") with x264, x265 and SVT-AV1, scored exactly like CNeRV.

An anchor point is one encode of a clip at one CRF (or QP): its rate, counted from the encoder's
own packets, and its decoded frames, converted to RGB the way ``video_io`` converts any input, so
that ``cnerv metrics`` on a file holding the same packets gives the same numbers. Everything runs in
process through PyAV; no container is written, since MP4 boxes would outweigh the payload of a
tiny clip (notes.md).

Choices, each for comparability:

* Input: RGB -> yuv420p with ``metrics.rgb_to_yuv420`` (BT.601 limited range), so the encoder sees
  exactly the planes the YUV-PSNR reference is computed from; the stream is tagged smpte170m /
  limited range, so decoders (and ``frame_to_rgb``) convert back with the same matrix.
* Rate: bytes of the elementary stream (Annex-B for H.264/HEVC, low-overhead OBUs for AV1, whose
  2-byte temporal delimiters are kept), plus extradata if the encoder made any. x264's version SEI
  (~0.7 KB, not video) is removed with the ``filter_units=remove_types=6`` bitstream filter; x265
  is told not to write its info SEI (``info=0``). SVT-AV1 writes no metadata OBUs.
* Threads default to 1: x264 and x265 output depends on the thread count, and an anchor should not
  change with the machine it ran on.
* Odd frame sizes are refused (4:2:0 needs even sides) rather than padded or cropped, which would
  change what is being compared; scale the input to an even size (``--scale``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

import av
import av.bitstream
import numpy as np
import torch
from av.video.reformatter import ColorRange

from cnervcodec import metrics
from cnervcodec.errors import BadInputError
from cnervcodec.video_frames import frame_to_rgb

AVCOL_SMPTE170M = 6  # BT.601 525-line: matrix, primaries and transfer codes used to tag the stream
CRF_STEP = 5
CONVERT_BATCH_FRAMES = 8  # bounds rgb_to_yuv420's float32 working set on long clips
MIN_FPS, MAX_FPS = Fraction(1, 1000), Fraction(10_000)
MAX_FPS_DENOMINATOR = 1_000_000  # 30000/1001 style rates stay exact; float noise is rounded off
X264_SEI_FILTER = "filter_units=remove_types=6"
# SVT-AV1 presets are numbers (0 slowest .. 13 fastest); x264's names map onto them so that one
# ``preset`` works for all codecs. "medium" -> 6: SVT-AV1's docs put 4-6 at the efficiency end
# usable for evaluation and 8+ at real-time speeds; 6 is the fastest of the former.
SVT_PRESETS = MappingProxyType({
    "placebo": 0, "veryslow": 2, "slower": 4, "slow": 5, "medium": 6,
    "fast": 8, "faster": 10, "veryfast": 11, "superfast": 12, "ultrafast": 13,
})
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")


@dataclass(frozen=True)
class _CodecSpec:
    encoder: str
    decoder: str
    min_crf: int  # libsvtav1 reads crf/qp 0 as "unset" (it then encodes at SVT's default), so 1
    max_crf: int
    min_side_px: int
    default_crfs: tuple[int, ...]
    params_option: str  # FFmpeg's pass-through option for the library's own parameters
    bitstream_format: str


# AV1's default ladder, evenly spaced: on foreman (QCIF, 25 fps, preset 6) SVT-AV1 CRF 27..63 spans
# 40.2..32.7 dB YUV-PSNR, the range x264 CRF 22..37 spans (40.4..32.5 dB); SVT-AV1's CRF moves
# PSNR about half as fast as x264's below CRF 55, so equal-PSNR points are not equal CRFs.
CODECS = MappingProxyType({
    "x264": _CodecSpec("libx264", "h264", 0, 51, 2, (22, 27, 32, 37), "x264-params", "H.264 Annex-B"),
    "x265": _CodecSpec("libx265", "hevc", 0, 51, 16, (22, 27, 32, 37), "x265-params", "HEVC Annex-B"),
    "av1": _CodecSpec("libsvtav1", "libdav1d", 1, 63, 4, (27, 39, 51, 63), "svtav1-params",
                      "AV1 low-overhead OBUs (Section 5)"),
})


@dataclass(frozen=True, eq=False)
class AnchorPoint:
    """One reference encode: its rate, its decoded frames and how it was made.

    ``bitstream`` is the counted elementary stream itself (extradata first, if any), so it can be
    written to a ``.264``/``.265``/``.obu`` file and decoded by anything; ``n_bytes`` equals its
    length and the sum of ``packet_sizes`` plus the extradata. ``eq=False``: it holds a tensor.
    """

    codec: str
    crf: int | None
    qp: int | None
    n_bytes: int
    bpp: float
    frames_u8: torch.Tensor  # (T, 3, H, W) uint8 RGB, decoded and converted like video_io does
    settings: dict
    packet_sizes: tuple[int, ...] = field(repr=False)
    bitstream: bytes = field(repr=False)


# ---------------------------------------------------------------------------------------- checks


def _codec_spec(codec: str) -> _CodecSpec:
    if codec not in CODECS:
        raise BadInputError(f"unknown anchor codec {codec!r}: use one of {', '.join(CODECS)}")
    return CODECS[codec]


def _check_rate(spec: _CodecSpec, codec: str, crf: int | None, qp: int | None) -> tuple[str, int]:
    """Exactly one of CRF and QP, a whole number in the codec's range -> (option name, value)."""
    if (crf is None) == (qp is None):
        raise BadInputError(f"give {codec} exactly one of crf and qp, got crf={crf} qp={qp}")
    name, value = ("crf", crf) if crf is not None else ("qp", qp)
    if isinstance(value, bool) or not isinstance(value, int) or not spec.min_crf <= value <= spec.max_crf:
        raise BadInputError(f"bad {codec} {name} {value!r}: give a whole number from {spec.min_crf} to {spec.max_crf}")
    return name, value


def _check_frames(frames_u8: torch.Tensor, codec: str, spec: _CodecSpec) -> None:
    if not isinstance(frames_u8, torch.Tensor) or frames_u8.dim() != 4 or frames_u8.shape[1] != 3:
        raise BadInputError(f"anchor frames must be a (T, 3, H, W) tensor, got {getattr(frames_u8, 'shape', type(frames_u8))}")
    if frames_u8.dtype != torch.uint8 or frames_u8.shape[0] == 0:
        raise BadInputError(f"anchor frames must be uint8 and at least one frame, got {frames_u8.dtype} x {frames_u8.shape[0]}")
    height, width = frames_u8.shape[2:]
    if width % 2 or height % 2:
        raise BadInputError(f"{codec} anchors need even sides for yuv420p, got {width}x{height}: scale to an even size (--scale)")
    if min(width, height) < spec.min_side_px:
        raise BadInputError(f"{codec} needs frames of at least {spec.min_side_px}x{spec.min_side_px} px, got {width}x{height}")


def _check_fps(fps: Fraction) -> Fraction:
    """A frame rate FFmpeg's 32-bit rationals can hold: floats such as 29.97 become 2997/100."""
    try:
        rate = Fraction(fps)
    except (TypeError, ValueError, OverflowError):
        raise BadInputError(f"bad frame rate {fps!r}: give a positive finite number") from None
    if not MIN_FPS <= rate <= MAX_FPS:
        raise BadInputError(f"bad frame rate {fps}: give a rate from {MIN_FPS} to {MAX_FPS} frames/s")
    return rate if rate.denominator <= MAX_FPS_DENOMINATOR else rate.limit_denominator(MAX_FPS_DENOMINATOR)


def _check_preset(codec: str, preset: str) -> str:
    """The preset as the encoder takes it: x264/x265 names, SVT-AV1 numbers (names are mapped)."""
    if codec == "av1":
        number = SVT_PRESETS.get(preset, preset)
        if str(number).isdigit() and 0 <= int(number) <= 13:
            return str(number)
        raise BadInputError(f"bad av1 preset {preset!r}: use 0..13 or one of {', '.join(SVT_PRESETS)}")
    if preset not in X26X_PRESETS:
        raise BadInputError(f"bad {codec} preset {preset!r}: use one of {', '.join(X26X_PRESETS)}")
    return preset


# -------------------------------------------------------------------------------------- encoding


def _encoder_options(codec: str, preset: str, rate: tuple[str, int], threads: int) -> dict[str, str]:
    """FFmpeg options: tuned for PSNR (the metric the anchors are compared on), quiet, no info SEI."""
    options = {"preset": preset, rate[0]: str(rate[1])}
    if codec == "x264":
        options |= {"tune": "psnr", "x264-params": f"threads={threads}" if threads else ""}
    elif codec == "x265":
        pools = f":frame-threads={threads}:pools={threads}" if threads else ""
        options |= {"tune": "psnr", "x265-params": "info=0:log-level=error" + pools}
    else:  # SVT-AV1 logs to stderr unless SVT_LOG=1 is in the environment; tune=1 is PSNR
        options |= {"svtav1-params": "tune=1" + (f":lp={threads}" if threads else "")}
    return options


def _open_encoder(spec: _CodecSpec, width: int, height: int, fps: Fraction, options: dict[str, str]):
    """An encoder for yuv420p frames numbered in frame periods, tagged BT.601 limited range."""
    if spec.encoder == "libsvtav1":  # SVT-AV1 prints its config to stderr unless told (1 = errors only)
        os.environ.setdefault("SVT_LOG", "1")
    ctx = av.CodecContext.create(spec.encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = 1 / fps, fps
    ctx.color_range = ColorRange.MPEG
    ctx.colorspace = ctx.color_primaries = ctx.color_trc = AVCOL_SMPTE170M
    ctx.options = options
    ctx.open()
    return ctx


def _yuv_frames(frames_u8: torch.Tensor, planes=None):
    """Fresh yuv420p VideoFrames (pict_type NONE, no source time base) of the source's own 4:2:0 ``planes``
    when given (JVET convention: the anchors code what the source holds), else ``rgb_to_yuv420``'s."""
    height, width = frames_u8.shape[2:]
    for start in range(0, frames_u8.shape[0], CONVERT_BATCH_FRAMES):
        chunk = slice(start, start + CONVERT_BATCH_FRAMES)
        source = metrics.rgb_to_yuv420(frames_u8[chunk]) if planes is None else tuple(p[chunk] for p in planes)
        y, u, v = (p.cpu().numpy() for p in source)
        for k in range(y.shape[0]):
            i420 = np.concatenate([y[k].ravel(), u[k].ravel(), v[k].ravel()]).reshape(height * 3 // 2, width)
            frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
            frame.color_range, frame.colorspace = ColorRange.MPEG, AVCOL_SMPTE170M
            frame.pts = start + k
            yield frame


def _encode(ctx, frames_u8: torch.Tensor, planes=None) -> list:
    packets = []
    for frame in _yuv_frames(frames_u8, planes):
        packets += ctx.encode(frame)
    return packets + ctx.encode(None)


def _strip_sei(codec: str, packets: list) -> list:
    """x264's packets without SEI NAL units (only its version/options text is there)."""
    if codec != "x264":
        return packets
    bsf = av.bitstream.BitStreamFilterContext(X264_SEI_FILTER, CODECS[codec].decoder)
    kept = []
    for packet in packets:
        kept += bsf.filter(packet)
    return kept + bsf.filter(None)


def _decode(spec: _CodecSpec, extradata: bytes, chunks: list[bytes]) -> torch.Tensor:
    """Decode the counted bytes with a fresh decoder; RGB exactly as ``read_video`` makes it."""
    ctx = av.CodecContext.create(spec.decoder, "r")
    if extradata:
        ctx.extradata = extradata
    decoded = []
    for chunk in [*chunks, None]:
        for frame in ctx.decode(av.Packet(chunk) if chunk is not None else None):
            decoded.append(torch.from_numpy(frame_to_rgb(frame)).permute(2, 0, 1))
    return torch.stack(decoded) if decoded else torch.zeros((0, 3, 0, 0), dtype=torch.uint8)


# -------------------------------------------------------------------------------------- settings


def _library_text(codec: str, first_packet: bytes, spec: _CodecSpec, width: int, height: int,
                  fps: Fraction, options: dict[str, str]) -> str:
    """The encoder library's own version and options line, or "" where it writes none.

    x264 puts it in the SEI that is stripped afterwards; x265 only with ``info``, so a one-frame
    probe with ``info=1`` at the same size and options reads it; SVT-AV1 writes none.
    """
    if codec == "x264":
        found = re.search(rb"x264 - core [\x20-\x7e]*", first_packet)
    elif codec == "x265":
        probe_options = {**options, "x265-params": options["x265-params"].replace("info=0", "info=1")}
        probe = _open_encoder(spec, width, height, fps, probe_options)
        grey = torch.full((1, 3, height, width), 128, dtype=torch.uint8)
        found = re.search(rb"x265 \(build [\x20-\x7e]*", b"".join(bytes(p) for p in _encode(probe, grey)))
    else:
        found = None
    return found.group(0).decode("ascii") if found else ""


def _settings(codec: str, spec: _CodecSpec, options: dict[str, str], library_text: str,
              threads: int, extradata_bytes: int, sei_bytes: int) -> dict:
    """What a report needs to reproduce the anchor: encoder, parameters, colour, versions."""
    keyint = re.search(r"(?<![-\w])keyint=(\d+)", library_text)
    version = re.match(r"(x264 - core \d+[^-]*|x265 \(build \d+\) - \S+)", library_text)
    return {
        "encoder": spec.encoder,
        "encoder_long_name": av.codec.Codec(spec.encoder, "w").long_name,
        "decoder": spec.decoder,
        "preset": options["preset"],
        "tune": options.get("tune", "psnr (svtav1-params tune=1)"),
        "crf": int(options["crf"]) if "crf" in options else None,
        "qp": int(options["qp"]) if "qp" in options else None,
        spec.params_option: options[spec.params_option],
        "ffmpeg_options": dict(options),
        "threads": threads,
        "pix_fmt": "yuv420p",
        "rgb_to_yuv": "cnervcodec.metrics.rgb_to_yuv420 (BT.601 limited range, 2x2 chroma mean)",
        "yuv_to_rgb": "cnervcodec.video_frames.frame_to_rgb (swscale, accurate rounding)",
        "colour_matrix": "BT.601 (smpte170m, tagged in the stream)",
        "colour_range": "limited (tv)",
        "keyint": int(keyint.group(1)) if keyint else "encoder default",
        "library_options": library_text,
        "bitstream_format": spec.bitstream_format,
        "bitstream_filter": X264_SEI_FILTER if codec == "x264" else None,
        "sei_bytes_removed": sei_bytes,
        "extradata_bytes": extradata_bytes,
        "versions": {
            "pyav": av.__version__,
            "ffmpeg": av.ffmpeg_version_info,
            "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "library": version.group(1).strip() if version else "not reported by the library in process",
        },
    }


# ------------------------------------------------------------------------------------------- API


def encode_anchor(frames_u8: torch.Tensor, fps: Fraction, codec: str, *, crf: int | None = None,
                  qp: int | None = None, preset: str = "medium", threads: int = 1, planes=None) -> AnchorPoint:
    """Encode RGB frames ``(T, 3, H, W)`` uint8 with ``codec`` ("x264", "x265" or "av1") at one CRF
    or QP, decode the counted packets and return the point (see the module docstring for why
    each setting is what it is)."""
    spec = _codec_spec(codec)
    rate = _check_rate(spec, codec, crf, qp)
    _check_frames(frames_u8, codec, spec)
    fps = _check_fps(fps)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise BadInputError(f"bad thread count {threads!r}: give 1 or more (0: the encoder's own choice)")
    n_frames, _, height, width = frames_u8.shape
    options = _encoder_options(codec, _check_preset(codec, preset), rate, threads)
    ctx = _open_encoder(spec, width, height, fps, options)
    packets = _encode(ctx, frames_u8, planes)
    extradata = bytes(ctx.extradata or b"")
    raw_chunks = [bytes(p) for p in packets]
    library_text = _library_text(codec, raw_chunks[0] if raw_chunks else b"", spec, width, height, fps, options)
    chunks = [bytes(p) for p in _strip_sei(codec, packets)]
    decoded = _decode(spec, extradata, chunks)
    if tuple(decoded.shape) != (n_frames, 3, height, width):
        raise RuntimeError(f"{codec} anchor decoded to {tuple(decoded.shape)}, expected {(n_frames, 3, height, width)}")
    n_bytes = len(extradata) + sum(map(len, chunks))
    sei_bytes = sum(map(len, raw_chunks)) - sum(map(len, chunks))
    return AnchorPoint(
        codec=codec, crf=crf, qp=qp, n_bytes=n_bytes, bpp=metrics.bpp(n_bytes, n_frames, height, width),
        frames_u8=decoded,
        settings=_settings(codec, spec, options, library_text, threads, len(extradata), sei_bytes),
        packet_sizes=tuple(map(len, chunks)), bitstream=extradata + b"".join(chunks),
    )


def _mean_psnr_yuv_db(reference_u8: torch.Tensor, point: AnchorPoint, planes=None) -> float:
    return float(metrics.psnr_yuv_db(reference_u8, point.frames_u8, planes=planes).mean())


def _below(value: float, bound: float | None) -> bool:
    return bound is not None and value < bound


def _above(value: float, bound: float | None) -> bool:
    return bound is not None and value > bound


def anchor_ladder(frames_u8: torch.Tensor, fps: Fraction, codec: str, *, crfs: list[int] | None = None,
                  preset: str = "medium", cover_psnr_db: tuple[float, float] | None = None,
                  cover_bpp: tuple[float, float] | None = None, max_points: int = 12,
                  threads: int = 1, planes=None) -> list[AnchorPoint]:
    """Anchors at several CRFs, sorted by rate.

    Defaults are x264/x265 CRF 22, 27, 32, 37 (the notes' table) and SVT-AV1 27..63 (see
    ``CODECS``). With ``cover_psnr_db=(lo, hi)`` and/or ``cover_bpp=(lo, hi)`` the ladder grows in
    CRF steps of 5 (lower CRF while its best point is under ``hi`` in YUV-PSNR or in rate, higher
    while its worst is over ``lo``) until it covers both ranges, reaches the codec's CRF limits, or
    holds ``max_points`` points: a BD-rate integral over the compared curve's whole PSNR range, and
    a BD-PSNR one over its whole rate range, then need no extrapolation.
    """
    spec = _codec_spec(codec)
    ladder = sorted(set(spec.default_crfs if crfs is None else crfs))
    if not ladder:
        raise BadInputError("give at least one CRF for the anchor ladder")
    for name, bounds in (("PSNR", cover_psnr_db), ("rate", cover_bpp)):
        if bounds is not None and not bounds[0] <= bounds[1]:
            raise BadInputError(f"bad {name} range {bounds}: give (low, high) with low <= high")
    cover_psnr_db = cover_psnr_db or (None, None)
    cover_bpp = cover_bpp or (None, None)
    points = {crf: encode_anchor(frames_u8, fps, codec, crf=crf, preset=preset, threads=threads, planes=planes) for crf in ladder}
    psnr_db: dict[int, float] = {}  # per CRF, measured once: the ends are asked about again each round
    while len(points) < max_points:
        low, high = min(points), max(points)
        for crf in (low, high):
            psnr_db.setdefault(crf, _mean_psnr_yuv_db(frames_u8, points[crf], planes))
        need_higher = low > spec.min_crf and (
            _below(psnr_db[low], cover_psnr_db[1]) or _below(points[low].bpp, cover_bpp[1]))
        need_lower = high < spec.max_crf and (
            _above(psnr_db[high], cover_psnr_db[0]) or _above(points[high].bpp, cover_bpp[0]))
        if not (need_higher or need_lower):
            break
        for crf in ([max(spec.min_crf, low - CRF_STEP)] if need_higher else []) + \
                   ([min(spec.max_crf, high + CRF_STEP)] if need_lower else []):
            if len(points) < max_points:
                points[crf] = encode_anchor(frames_u8, fps, codec, crf=crf, preset=preset, threads=threads, planes=planes)
    return sorted(points.values(), key=lambda point: point.n_bytes)


def anchor_quality(reference_u8: torch.Tensor, point: AnchorPoint) -> dict:
    """The point's rate and distortion, by ``metrics.quality_report``: the definitions CNeRV's
    own results use (RGB PSNR, 6:1:1 YUV 4:2:0 PSNR, MS-SSIM, bits per pixel)."""
    report = metrics.quality_report(reference_u8, point.frames_u8)
    height, width = reference_u8.shape[2:]
    return {"codec": point.codec, "crf": point.crf, "qp": point.qp,
            **metrics.rate_point(report, point.n_bytes, height, width),
            "ms_ssim_scales": report.ms_ssim_scales, "note": report.note}
