"""Reading video into (T, 3, H, W) uint8 RGB tensors.

This module owns every read of video: anything FFmpeg demuxes through PyAV (mp4, mkv, avi, y4m,
raw Annex-B H.264/H.265) and headerless raw YUV opened with geometry the user supplies. It keeps
frame rates as exact ``Fraction``s (12.5 stays 25/2, NTSC stays 30000/1001), converts each decoded
frame to 8-bit RGB honouring its colour range and matrix, applies the frame selection and an
area-averaging downscale while decoding (so a long or large clip is never held whole at full size),
and turns every problem with the user's input into a one-line ``BadInputError``. It knows nothing
about models or metrics.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import torch

from cnervcodec.errors import BadInputError, one_line
from cnervcodec.frame_store import DEFAULT_MEMORY_BYTES, SpillingStack
from cnervcodec.video_frames import (
    FrameStack,
    frame_chw,
    frame_planes,
    native_planes_usable,
)

MAX_SIDE_PX = 16384
RAW_DEFAULT_FPS = Fraction(25)
RAW_EXTENSIONS = (".yuv",)

# Demuxers of bare elementary streams: their ``average_rate`` is only the demuxer's ``framerate``
# option (25 by default), while ``guessed_rate`` reads the bitstream's own timing (H.264/HEVC VUI)
# when it has some and falls back to that same default when it does not.
_ELEMENTARY_STREAM_FORMATS = frozenset({"h264", "hevc", "vvc", "mpegvideo", "m4v", "h261", "h263", "cavsvideo"})



@dataclass(frozen=True)
class RawVideoSpec:
    """Geometry of headerless raw video, which the file itself cannot tell us."""

    width: int
    height: int
    pix_fmt: str = "yuv420p"


@dataclass(frozen=True)
class FrameSelection:
    """Which source frames to keep: ``frames`` of them, every ``step``-th from ``start``."""

    start: int = 0
    frames: int | None = None
    step: int = 1


@dataclass(frozen=True, eq=False)
class VideoClip:
    """Decoded frames plus what a caller needs to report or re-encode them.

    ``eq=False``: comparing clips field by field would compare tensors, which has no single truth
    value; compare ``frames`` explicitly instead.
    """

    frames: torch.Tensor  # (T, 3, H, W) uint8 RGB, contiguous; a ``frame_store.FrameFile`` for a long clip
    fps: Fraction  # rate of the selected frames: source_fps / step
    source_fps: Fraction
    source: str
    source_size: tuple[int, int]  # (width, height) before scaling
    notes: tuple[str, ...] = field(default=())
    color: tuple[int, int, int, int] = (0, 2, 2, 2)  # source's AVCOL range, matrix, primaries, transfer
    # The source's own 4:2:0 planes (uint8 Y (T, H, W), U and V (T, ceil(H/2), ceil(W/2)), area-downsized
    # with ``scale``) when it is 8-bit yuv420p BT.601 limited range: what YUV-PSNR is measured against.
    planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[2])

    @property
    def width(self) -> int:
        return int(self.frames.shape[3])


# ---------------------------------------------------------------------------------------------
# Option parsing


def parse_video_size(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (e.g. ``"320x240"``) into ``(width, height)`` in pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise BadInputError(f"bad video size {text!r}: write it as WIDTHxHEIGHT, e.g. 320x240")
    width, height = int(match.group(1)), int(match.group(2))
    _check_side("video size", width, height)
    return width, height


def parse_fps(text: str) -> Fraction:
    """Parse a frame rate (``"30"``, ``"12.5"``, ``"30000/1001"``) into an exact Fraction.

    Decimals are kept exactly as written ("29.97" is 2997/100); NTSC rates should be given as
    "30000/1001". Nothing goes through float, so the value survives into container headers.
    """
    try:
        fps = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise BadInputError(
            f"bad frame rate {text!r}: give a positive number or ratio, e.g. 25, 12.5 or 30000/1001"
        ) from None
    if fps <= 0:
        raise BadInputError(f"bad frame rate {text!r}: the frame rate must be positive")
    return fps


def _check_side(what: str, width: int, height: int) -> None:
    if not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX):
        raise BadInputError(
            f"bad {what} {width}x{height}: each side must be between 1 and {MAX_SIDE_PX} pixels"
        )


# ---------------------------------------------------------------------------------------------
# Reading


def read_video(
    path: str | os.PathLike,
    *,
    raw: RawVideoSpec | None = None,
    fps: Fraction | None = None,
    select: FrameSelection = FrameSelection(),
    scale: tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> VideoClip:
    """Decode the selected frames of a video file into a :class:`VideoClip`.

    ``raw`` gives the geometry of headerless raw video (needed for ``.yuv`` files, and forces the
    raw reader for any file). ``fps`` overrides the file's frame rate (raw streams have none).
    ``scale=(W, H)`` downsizes each frame by area averaging as it is decoded. Decoding stops as
    soon as the selection is complete. Frames (and planes) past ``memory_bytes`` spill to an unlinked
    file in ``cache_dir`` (the system's temp directory by default): ``clip.frames`` is then a
    ``frame_store.FrameFile``, read back a batch at a time.
    """
    notes: list[str] = []
    source, container, fps = open_video(path, raw, fps, select, scale, notes)
    with container:
        stream = _video_stream(container, source)
        source_fps = fps if raw is not None else _source_fps(container, stream, fps, notes)
        spill = (memory_bytes, cache_dir)
        frames, source_size, color, planes = _decode_selection(container, stream, source, select, scale, notes, spill)
    return VideoClip(
        frames=frames,
        fps=source_fps / select.step,
        source_fps=source_fps,
        source=source,
        source_size=source_size,
        notes=tuple(notes),
        color=color,
        planes=planes,
    )


def open_video(path: str | os.PathLike, raw: RawVideoSpec | None, fps: Fraction | None, select: FrameSelection,
               scale: tuple[int, int] | None, notes: list[str]) -> tuple[str, av.container.InputContainer, Fraction | None]:
    """Check the read options and open ``path`` (``read_video`` and ``video_stream.stream_video``): the
    source's name, its container, and the frame rate to use (the user's; raw video's default, noted)."""
    source = os.fspath(path)
    _check_selection(select)
    if scale is not None:
        _check_side("scale", *scale)
    if fps is not None:
        fps = Fraction(fps)
        if fps <= 0:
            raise BadInputError(f"bad frame rate {fps}: the frame rate must be positive")
    file = _existing_file(source)
    if raw is None and file.suffix.lower() in RAW_EXTENSIONS:
        raise BadInputError(
            f"{source} is raw video with no header: pass --video-size WxH (and --pix-fmt, --fps)"
        )
    if raw is None:
        return source, _open_container(file, source, fps), fps
    if fps is None:
        fps = RAW_DEFAULT_FPS
        notes.append(f"raw video has no frame rate; assumed {fps} fps (pass --fps to set it)")
    return source, _open_raw(file, source, raw, fps), fps


def _check_selection(select: FrameSelection) -> None:
    if select.start < 0:
        raise BadInputError(f"bad start frame {select.start}: frame indices start at 0")
    if select.step < 1:
        raise BadInputError(f"bad frame step {select.step}: the step must be 1 or more")
    if select.frames is not None and select.frames < 1:
        raise BadInputError(f"bad frame count {select.frames}: ask for 1 or more frames")


def _existing_file(source: str) -> Path:
    file = Path(source)
    if file.is_dir():
        raise BadInputError(f"{source} is a directory: pass a video file")
    if not file.is_file():
        raise BadInputError(f"{source} does not exist: check the path")
    return file


def _open_container(file: Path, source: str, fps: Fraction | None) -> av.container.InputContainer:
    """Open any file FFmpeg can demux. ``framerate`` only matters to raw elementary streams
    (.264/.265), which carry no timing; other demuxers ignore the option."""
    options = {"framerate": _ffmpeg_rate(fps)} if fps is not None else {}
    try:
        return av.open(str(file), mode="r", options=options)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise BadInputError(
            f"cannot read {source} as video ({one_line(error)}): pass a file FFmpeg can decode"
        ) from None


def _open_raw(file: Path, source: str, spec: RawVideoSpec, fps: Fraction) -> av.container.InputContainer:
    """Open headerless raw video with FFmpeg's rawvideo demuxer, after checking that the file
    holds a whole number of frames (the demuxer would fail on a partial last frame instead)."""
    frame_bytes = raw_frame_bytes(spec)
    n_bytes = file.stat().st_size
    leftover = n_bytes % frame_bytes
    if leftover:
        raise BadInputError(
            f"{source} is {n_bytes} bytes, not a whole number of {spec.width}x{spec.height} "
            f"{spec.pix_fmt} frames ({frame_bytes} bytes each; {leftover} bytes left over): "
            "check --video-size and --pix-fmt"
        )
    if n_bytes == 0:
        raise BadInputError(f"{source} is empty: it holds no video frames")
    options = {
        "video_size": f"{spec.width}x{spec.height}",
        "pixel_format": spec.pix_fmt,
        "framerate": _ffmpeg_rate(fps),
    }
    try:
        return av.open(str(file), mode="r", format="rawvideo", options=options)
    except (av.FFmpegError, OSError) as error:
        raise BadInputError(f"cannot read {source} as raw video ({one_line(error)})") from None


def raw_frame_bytes(spec: RawVideoSpec) -> int:
    """Bytes in one frame of headerless raw video, as FFmpeg's rawvideo demuxer packs it."""
    _check_side("video size", spec.width, spec.height)
    try:
        fmt = av.VideoFormat(spec.pix_fmt, spec.width, spec.height)
    except (ValueError, av.FFmpegError):
        raise BadInputError(
            f"unknown pixel format {spec.pix_fmt!r}: pass --pix-fmt with an FFmpeg name such as yuv420p"
        ) from None
    if fmt.is_bit_stream or fmt.has_palette or fmt.is_bayer or not fmt.components:
        raise BadInputError(
            f"pixel format {spec.pix_fmt!r} is not supported for raw input: use a planar YUV, gray or RGB format"
        )
    if fmt.is_planar or len({c.plane for c in fmt.components}) > 1:
        # Each component lies in its own rows, rounded up in size for subsampled chroma.
        return sum(c.width * c.height * math.ceil(c.bits / 8) for c in fmt.components)
    # Packed: whole pixel groups per row (yuyv422 packs two pixels into 4 bytes even at odd
    # width), each pixel taking its padded size (gray10le and bgr0 store 16 and 32 bits).
    probe = av.VideoFormat(spec.pix_fmt, 64, 64)
    group_px = 64 // min(c.width for c in probe.components)
    row_px = -(-spec.width // group_px) * group_px
    return row_px * fmt.padded_bits_per_pixel // 8 * spec.height


def _ffmpeg_rate(fps: Fraction) -> str:
    """A rate string FFmpeg parses exactly (``"30000/1001"``, not a rounded decimal)."""
    return f"{fps.numerator}/{fps.denominator}"


def _video_stream(container: av.container.InputContainer, source: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise BadInputError(f"{source} has no video stream: pass a file that contains video")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _source_fps(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    override: Fraction | None,
    notes: list[str],
) -> Fraction:
    """The source frame rate: the user's if given, else the stream's, exact.

    ``average_rate`` is what a container states; ``guessed_rate`` fills in where it is missing and
    is the better answer for bare elementary streams (see ``_ELEMENTARY_STREAM_FORMATS``).
    ``base_rate`` is never used: for a raw .264 it can be the codec's tick rate (1200000).
    """
    if container.format.name in _ELEMENTARY_STREAM_FORMATS:
        stated = stream.guessed_rate or stream.average_rate
    else:
        stated = stream.average_rate or stream.guessed_rate
    if override is not None:
        if stated and Fraction(stated) != override:
            notes.append(f"frame rate {override} fps as given overrides the stream's {Fraction(stated)} fps")
        return override
    if not stated:
        notes.append(f"the stream states no frame rate; assumed {RAW_DEFAULT_FPS} fps (pass --fps to set it)")
        return RAW_DEFAULT_FPS
    return Fraction(stated)


def _decoded_frames(container: av.container.InputContainer, stream, source: str) -> Iterator[av.VideoFrame]:
    """Decoded frames in order; FFmpeg errors mid-stream become BadInputError."""
    frames = container.decode(stream)
    index = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.FFmpegError as error:
            raise BadInputError(
                f"{source} is damaged: decoding failed after {index} frames ({one_line(error)})"
            ) from None
        yield frame
        index += 1


def _decode_selection(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    source: str,
    select: FrameSelection,
    scale: tuple[int, int] | None,
    notes: list[str],
    spill: tuple[int, str | os.PathLike | None] = (DEFAULT_MEMORY_BYTES, None),
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int, int, int], tuple[torch.Tensor, ...] | None]:
    """Decode until the selection is complete; returns the frames (T, 3, H, W), the source
    (width, height), the first frame's colour tags and the native 4:2:0 planes (or None).
    ``spill``: (memory budget in bytes, directory) of ``frame_store.SpillingStack``."""
    stack = SpillingStack(FrameStack(_capacity_hint(stream, select)), *spill)
    plane_stacks: list[FrameStack] | None = None
    source_size: tuple[int, int] | None = None
    color = (0, 2, 2, 2)
    for frame, kept in selected_frames(container, stream, source, select, scale):
        if source_size is None:
            source_size = (frame.width, frame.height)
            color = (int(frame.color_range), int(frame.colorspace), int(frame.color_primaries), int(frame.color_trc))
            _note_deep_format(frame.format, notes)
            if native_planes_usable(frame):
                # Y is a third of an RGB frame, U and V a twelfth each: they spill with the frames
                budgets = (spill[0] // 3, spill[0] // 12, spill[0] // 12)
                plane_stacks = [SpillingStack(FrameStack(_capacity_hint(stream, select)), budget, spill[1])
                                for budget in budgets]
        if not kept:
            continue
        stack.append(frame_chw(frame, scale))
        if plane_stacks is not None:
            if native_planes_usable(frame):
                for plane_stack, plane in zip(plane_stacks, frame_planes(frame, scale)):
                    plane_stack.append(plane)
            else:  # the format changed mid-stream: score on the RGB conversion instead
                plane_stacks = None
    assert source_size is not None
    planes = tuple(p.result() for p in plane_stacks) if plane_stacks is not None else None
    return stack.result(), source_size, color, planes


def selected_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream, source: str,
                    select: FrameSelection, scale: tuple[int, int] | None) -> Iterator[tuple[av.VideoFrame, bool]]:
    """Every decoded frame up to the end of ``select``, with whether the selection keeps it (``read_video``
    and ``video_stream.stream_video``): sizes checked against the first frame, ``scale`` against that
    size, and the count checked when decoding stops."""
    source_size: tuple[int, int] | None = None
    n_decoded = n_kept = 0
    for frame in _decoded_frames(container, stream, source):
        index = n_decoded
        n_decoded += 1
        if source_size is None:
            source_size = (frame.width, frame.height)
            _check_scale(scale, source_size)
        elif (frame.width, frame.height) != source_size:
            raise BadInputError(
                f"{source} changes size at frame {index} ({source_size[0]}x{source_size[1]} to "
                f"{frame.width}x{frame.height}): cut it into parts of one size"
            )
        kept = index >= select.start and (index - select.start) % select.step == 0
        yield frame, kept
        if kept:
            n_kept += 1
            if select.frames is not None and n_kept == select.frames:
                break
    _check_enough(source, select, n_decoded, n_kept)


def _check_enough(source: str, select: FrameSelection, n_decoded: int, n_kept: int) -> None:
    if n_decoded == 0:
        raise BadInputError(f"{source} contains no decodable video frames")
    if n_kept == 0:
        raise BadInputError(
            f"{source} has {n_decoded} frames (0..{n_decoded - 1}), so start frame {select.start} "
            "is past its end: pick a start inside the clip"
        )
    if select.frames is not None and n_kept < select.frames:
        raise BadInputError(
            f"{source} has {n_decoded} frames, so start {select.start} step {select.step} gives "
            f"{n_kept} frames, not {select.frames}: ask for at most {n_kept}"
        )


def _check_scale(scale: tuple[int, int] | None, source_size: tuple[int, int]) -> None:
    if scale is None:
        return
    if scale[0] > source_size[0] or scale[1] > source_size[1]:
        raise BadInputError(
            f"cannot scale {source_size[0]}x{source_size[1]} video to {scale[0]}x{scale[1]}: "
            "scale only downsizes; give a size no larger than the source"
        )


def _note_deep_format(fmt: av.VideoFormat, notes: list[str]) -> None:
    if max(c.bits for c in fmt.components) > 8:
        notes.append(f">8-bit input ({fmt.name}) converted to 8-bit")


def _capacity_hint(stream: av.video.stream.VideoStream, select: FrameSelection) -> int:
    """How many frames to allocate for up front: exact when the count is asked for, else what the
    container says it holds (0 when it does not say, e.g. mkv, y4m)."""
    if select.frames is not None:
        return select.frames
    remaining = stream.frames - select.start
    return max(1, -(-remaining // select.step)) if remaining > 0 else 16
