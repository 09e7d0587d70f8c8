"""Writing (T, 3, H, W) uint8 RGB frames out as video, a batch at a time.

The counterpart of ``video_io``: exact ``Fraction`` frame rates and the colour conventions
``read_video`` undoes, so reading an output back gives the frames written (bit for bit for Y4M and
PNG). Frames stream through a batch at a time, so memory does not grow with the video's length. A
writer only writes temporary files next to the target and renames them into place when it closes
cleanly: a failure leaves neither half a file nor a damaged earlier one. Whether an existing file
may be replaced is the caller's decision (``check_can_write``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Iterable

import av
import numpy as np
import torch
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from PIL import Image

from cnervcodec.atomic import check_writable, reserve_temp
from cnervcodec.audio import AudioMux
from cnervcodec.errors import BadInputError
from cnervcodec.format.records import AudioTrack

DEFAULT_CRF = 12  # x264 at CRF 12 is visually lossless: the codec's artefacts, not x264's, show
MAX_CRF = 51
SUPPORTED_OUTPUTS = ".mp4, .mkv, .y4m, or a PNG pattern such as frames/%05d.png"
PNG_FIRST_NUMBER = 1  # FFmpeg's image2 muxer numbers files from 1 (its start_number default)

_MUXERS = MappingProxyType({".mp4": "mp4", ".mkv": "matroska", ".y4m": "yuv4mpegpipe"})
_MUXER_OPTIONS = MappingProxyType({
    ".mp4": {"movflags": "+faststart"},  # index first, so it plays while it downloads
    ".y4m": {"strict": "-1"},  # 16-bit 4:4:4 (C444p16) is an FFmpeg extension of Y4M
})
_PNG_NUMBER = re.compile(r"%(0\d+)?d")
# AVCOL_* codes of BT.601 525-line (SMPTE 170M), the matrix the frames are converted with; tagged
# so that players, and ``read_video``, convert back with the same one.
_AVCOL_SMPTE170M = 6
# Accurate rounding and full-resolution chroma input: the default swscale path is off by up to 2
# levels (see video_io), which would be charged to the codec.
_YUV_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP
_Y4M_ROWS_PER_BLOCK = 256  # bounds the float64 working set of the Y4M conversion (~25 MB at 4K)


# ---------------------------------------------------------------------------------------------
# Paths


def output_kind(path: str | os.PathLike) -> str:
    """"png" for a numbered PNG pattern, else the extension (".mp4", ".mkv", ".y4m")."""
    name = Path(path).name
    if _PNG_NUMBER.search(name) and name.lower().endswith(".png"):
        return "png"
    suffix = Path(name).suffix.lower()
    if suffix in _MUXERS:
        return suffix
    raise BadInputError(f"cannot write {os.fspath(path)}: the output must be {SUPPORTED_OUTPUTS}")


def png_frame_path(pattern: str | os.PathLike, number: int) -> Path:
    """The file for frame ``number`` (counting from 1) of a pattern such as ``out/f_%05d.png``."""
    path = Path(pattern)
    name = _PNG_NUMBER.sub(lambda m: f"{number:{m.group(1) or ''}d}", path.name, count=1)
    return path.with_name(name)


def check_can_write(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an unsupported output, and what ``atomic.check_writable`` refuses; for a PNG pattern
    the file checked is the first frame's."""
    target = png_frame_path(path, PNG_FIRST_NUMBER) if output_kind(path) == "png" else Path(path)
    check_writable(path, overwrite, inputs, target)


# ---------------------------------------------------------------------------------------------
# Frame conversion


def rgb_to_yuv444p16_full(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint16 full-range BT.601 Y'CbCr, computed in float64.

    Samples are 256 x the 8-bit-scale value (chroma centred on 32768), not 65535/255 x: swscale
    reads 16-bit full-range luma as value/256, and with this scale ``read_video`` gets every one
    of the 2**24 RGB colours back exactly (checked exhaustively), where swscale's own RGB->YUV
    conversion, or a 65535 scale, misses by one level in about half the pixels.
    """
    height, width, _ = rgb.shape
    out = np.empty((height, width, 3), np.uint16)
    for top in range(0, height, _Y4M_ROWS_PER_BLOCK):
        block = rgb[top:top + _Y4M_ROWS_PER_BLOCK].astype(np.float64)
        r, g, b = block[..., 0], block[..., 1], block[..., 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        planes = (y * 256, (b - y) / 1.772 * 256 + 32768, (r - y) / 1.402 * 256 + 32768)
        for k, plane in enumerate(planes):
            out[top:top + _Y4M_ROWS_PER_BLOCK, :, k] = np.clip(np.rint(plane), 0, 65535)
    return out


def _as_batch(frames: torch.Tensor | np.ndarray, width: int, height: int) -> np.ndarray:
    """(B, 3, H, W) uint8 numpy from a tensor or array; anything else is a programmer's error."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[1:] != (3, height, width):
        raise ValueError(f"frames must be (B, 3, {height}, {width}), got {tuple(frames.shape)}")
    return frames


# ---------------------------------------------------------------------------------------------
# Writers


class VideoWriter:
    """A context manager that moves its output into place on a clean exit and deletes it on an
    exception. Subclasses write frames to temporary files (``_write_rgb``) and move them into
    place (``_commit``) or delete them (``_discard``)."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction) -> None:
        if width < 1 or height < 1 or fps <= 0:
            raise ValueError(f"bad output geometry {width}x{height} at {fps} fps")
        self.path, self.width, self.height, self.fps = path, width, height, Fraction(fps)
        self.frames_written = 0
        self._notes: list[str] = []
        self._done = False
        self._token = secrets.token_hex(4)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self._notes)

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append a (B, 3, H, W) uint8 RGB batch."""
        if self._done:
            raise ValueError("write() after the writer was closed")
        for chw in _as_batch(frames, self.width, self.height):
            self._write_rgb(np.ascontiguousarray(chw.transpose(1, 2, 0)), self.frames_written)
            self.frames_written += 1

    def close(self) -> None:
        """Finish the output and move it onto the target; on any failure, remove every trace."""
        if self._done:
            return
        try:
            if self.frames_written == 0:
                raise ValueError("no frames were written")
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Drop everything written so far; an existing target is left as it was."""
        self._done = True
        self._discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write_rgb(self, rgb: np.ndarray, index: int) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


class _AvWriter(VideoWriter):
    """H.264 in MP4/MKV, or raw 16-bit 4:4:4 in Y4M, through PyAV, with audio where it fits."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, kind: str,
                 audio: AudioTrack | None, crf: int) -> None:
        super().__init__(path, width, height, fps)
        self._kind = kind
        self._temp, fd = reserve_temp(path, self._token)
        os.close(fd)  # FFmpeg opens the file by name
        self._audio: AudioMux | None = None
        try:
            self._container = av.open(str(self._temp), mode="w", format=_MUXERS[kind],
                                      container_options=dict(_MUXER_OPTIONS.get(kind, {})))
            self._stream = self._add_y4m_stream() if kind == ".y4m" else self._add_h264_stream(crf)
            self._stream.width, self._stream.height = width, height
            self._stream.time_base = self._stream.codec_context.time_base = 1 / self.fps  # pts = index
            self._add_audio(audio)
        except BaseException:
            self._discard()
            raise

    def _add_y4m_stream(self):
        stream = self._container.add_stream("rawvideo", rate=self.fps)
        stream.pix_fmt = "yuv444p16le"
        stream.codec_context.color_range = ColorRange.JPEG  # the muxer writes XCOLORRANGE=FULL
        return stream

    def _add_h264_stream(self, crf: int):
        stream = self._container.add_stream("libx264", rate=self.fps, options={"crf": str(crf), "preset": "medium"})
        stream.pix_fmt = self._h264_pix_fmt()
        ctx = stream.codec_context
        ctx.color_range = ColorRange.MPEG
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _AVCOL_SMPTE170M
        return stream

    def _h264_pix_fmt(self) -> str:
        """4:2:0 needs even sides (x264 refuses odd ones: H.264 crops 4:2:0 only in steps of 2
        pixels); an odd size keeps its exact size as 4:4:4 rather than be padded or cropped."""
        if self.width % 2 == 0 and self.height % 2 == 0:
            return "yuv420p"
        self._notes.append(
            f"odd size {self.width}x{self.height} cannot be 4:2:0 H.264: wrote 4:4:4 (High 4:4:4 "
            "profile, which some players cannot play); use even sides for the widest support"
        )
        return "yuv444p"

    def _add_audio(self, audio: AudioTrack | None) -> None:
        if audio is None or not audio.packets:
            return
        if self._kind == ".y4m":
            self._notes.append("y4m holds no audio: audio dropped")
            return
        self._audio = AudioMux(self._container, audio, container_format=_MUXERS[self._kind])
        if self._audio.note:
            self._notes.append(self._audio.note)

    def _write_rgb(self, rgb: np.ndarray, index: int) -> None:
        self._container.mux(self._stream.encode(self._frame(rgb, index)))
        if self._audio is not None:
            self._audio.write_until((index + 1) / self.fps)

    def _frame(self, rgb: np.ndarray, index: int) -> av.VideoFrame:
        """A fresh frame (so no source frame type or time base leaks into the encoder), numbered
        in frame periods: 16-bit full range for Y4M, BT.601 limited range for H.264."""
        if self._kind == ".y4m":
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv444p16_full(rgb), format="yuv444p16le")
            frame.color_range = ColorRange.JPEG
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=self._stream.pix_fmt, dst_colorspace=Colorspace.ITU601, dst_color_range=ColorRange.MPEG,
                interpolation=_YUV_FLAGS)
            frame.color_range, frame.colorspace = ColorRange.MPEG, _AVCOL_SMPTE170M
        frame.pts = index
        return frame

    def _commit(self) -> None:
        self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.finish()
        self._container.close()
        with contextlib.suppress(av.FFmpegError):  # a note is not worth losing the output over
            self._note_inexact_rate()
        os.replace(self._temp, self.path)

    def _note_inexact_rate(self) -> None:
        """Say so when the container cannot state the rate exactly: MKV keeps frame durations in
        whole nanoseconds, which FFmpeg reads back as a ratio of terms up to 30000 (60000/1001
        comes back as 19001/317)."""
        with av.open(str(self._temp), mode="r", format=_MUXERS[self._kind]) as written:
            stated = written.streams.video[0].average_rate or written.streams.video[0].guessed_rate
        if stated and Fraction(stated) != self.fps:
            self._notes.append(f"{self._kind[1:]} cannot state {self.fps} fps exactly: readers will see "
                               f"{Fraction(stated)} fps" + ("; use .mp4 to keep it exact" if self._kind != ".mp4" else ""))

    def _discard(self) -> None:
        if getattr(self, "_container", None) is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class _PngWriter(VideoWriter):
    """One RGB PNG per frame, numbered from 1; each goes to a temporary name until close."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, audio: AudioTrack | None) -> None:
        super().__init__(path, width, height, fps)
        self._written: list[tuple[Path, Path]] = []  # (temporary, final), in frame order
        if audio is not None and audio.packets:
            self._notes.append("PNG images hold no audio: audio dropped")

    def _write_rgb(self, rgb: np.ndarray, index: int) -> None:
        final = png_frame_path(self.path, index + PNG_FIRST_NUMBER)
        temp, fd = reserve_temp(final, self._token)
        self._written.append((temp, final))
        with os.fdopen(fd, "wb") as file:
            Image.fromarray(rgb).save(file, format="PNG")

    def _commit(self) -> None:
        """Rename frame by frame: each file is replaced atomically, the set as a whole is not."""
        while self._written:
            os.replace(*self._written[0])
            self._written.pop(0)

    def _discard(self) -> None:
        for temp, _ in self._written:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._written.clear()


def open_video_writer(
    path: str | os.PathLike,
    *,
    width: int,
    height: int,
    fps: Fraction,
    audio: AudioTrack | None = None,
    crf: int | None = None,
) -> VideoWriter:
    """A writer for ``path``, chosen by its extension; use it as a context manager.

    - ``.mp4`` / ``.mkv``: H.264 (libx264, preset medium, CRF ``crf`` or 12), yuv420p (yuv444p at
      odd sizes, with a note), BT.601 limited range and tagged so; ``audio`` is muxed, copied
      unchanged where the container can hold it, else re-encoded to AAC with a note.
    - ``.y4m``: exact: 16-bit full-range 4:4:4 that ``read_video`` turns back into the same RGB.
    - a ``.png`` name with ``%d`` / ``%0Nd``: one RGB PNG per frame, numbered from 1 as FFmpeg does.
    Y4M and PNG hold no audio: it is dropped with a note. ``writer.notes`` lists the notes.
    """
    kind = output_kind(path)
    if crf is not None and not (isinstance(crf, int) and 0 <= crf <= MAX_CRF):
        raise BadInputError(f"bad CRF {crf}: give a whole number from 0 (lossless) to {MAX_CRF}")
    if kind == "png":
        return _PngWriter(Path(path), width, height, fps, audio)
    return _AvWriter(Path(path), width, height, fps, kind, audio, DEFAULT_CRF if crf is None else crf)
