"""Decoded PyAV frames to RGB tensors: colour conversion, area downscaling, and the growing frame stack.

``video_io`` reads and selects frames; this module turns each one into 8-bit RGB honouring its
colour range and matrix, and collects them into one (T, 3, H, W) uint8 tensor with one copy each.
It also keeps a 4:2:0 source's own Y, U and V planes (``frame_planes``): quality against the
anchors is measured on those (JVET convention), not on a copy that went through RGB and back.
"""

from __future__ import annotations

from types import MappingProxyType

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import ColorRange, Colorspace, Interpolation

# AVColorSpace values (as frames report them) -> the matrices swscale knows. Anything else,
# "unspecified" included, falls back to BT.601, FFmpeg's own default for untagged SD content.
_MATRIX_BY_AVCOL_SPC = MappingProxyType({
    1: Colorspace.ITU709,
    4: Colorspace.FCC,
    5: Colorspace.ITU601,
    6: Colorspace.ITU601,
    7: Colorspace.SMPTE240M,
    9: Colorspace.BT2020,
    10: Colorspace.BT2020,
})

# swscale's default YUV->RGB path is a fast, low-precision one (measured: up to 2 levels off for
# 8-bit and 10-bit input). Accurate rounding with full-resolution chroma brings that under half a
# level, for ~10 ms per 720p frame, which is nothing next to fitting a model to it.
_RGB_FLAGS = (Interpolation.BILINEAR | Interpolation.ACCURATE_RND
              | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP)


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 full-range RGB from a decoded frame, honouring its range and matrix.

    Untagged YUV is taken as limited range (what nearly all video is) and BT.601; ``yuvj*``
    formats and frames tagged JPEG/full are full range. swscale treats gray and RGB as full range
    whatever we pass.
    """
    full_range = frame.color_range == ColorRange.JPEG or frame.format.name.startswith("yuvj")
    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=_MATRIX_BY_AVCOL_SPC.get(int(frame.colorspace), Colorspace.ITU601),
        src_color_range=ColorRange.JPEG if full_range else ColorRange.MPEG,
        dst_color_range=ColorRange.JPEG,
        interpolation=_RGB_FLAGS,
    )
    return rgb.to_ndarray()  # (H, W, 3)


def frame_chw(frame: av.VideoFrame, scale: tuple[int, int] | None) -> torch.Tensor:
    """(3, H, W) uint8 view (or, when scaling, a small new tensor) of one frame."""
    chw = torch.from_numpy(frame_to_rgb(frame)).permute(2, 0, 1)  # (3, H, W), a view
    if scale is None or scale == (chw.shape[2], chw.shape[1]):
        return chw
    return area_downscale(chw, scale)


# AVColorSpace values whose matrix is the BT.601 one the metrics convert RGB with (2: unspecified,
# read as BT.601 by ``frame_to_rgb`` too): only such planes are comparable to a converted RGB output.
_BT601_AVCOL_SPC = frozenset({2, 5, 6})


def native_planes_usable(frame: av.VideoFrame) -> bool:
    """True when ``frame``'s own planes are what the metrics compare: 8-bit 4:2:0, limited range, BT.601."""
    return (frame.format.name == "yuv420p" and frame.color_range != ColorRange.JPEG
            and int(frame.colorspace) in _BT601_AVCOL_SPC)


def frame_planes(frame: av.VideoFrame, scale: tuple[int, int] | None) -> tuple[torch.Tensor, ...]:
    """The Y (H, W), U and V (ceil(H/2), ceil(W/2)) uint8 planes of a yuv420p frame, each downsized by
    area averaging to the scaled geometry when ``scale`` is given."""
    height, width = frame.height, frame.width
    sizes = ((height, width), ((height + 1) // 2, (width + 1) // 2), ((height + 1) // 2, (width + 1) // 2))
    planes = []
    for plane, (rows, cols) in zip(frame.planes, sizes):
        data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :cols]
        planes.append(torch.from_numpy(data.copy()))
    if scale is None or scale == (width, height):
        return tuple(planes)
    out_w, out_h = scale
    targets = ((out_w, out_h), ((out_w + 1) // 2, (out_h + 1) // 2), ((out_w + 1) // 2, (out_h + 1) // 2))
    return tuple(area_downscale(p[None], size)[0] for p, size in zip(planes, targets))


def area_downscale(chw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Downsize (C, H, W) uint8 to (C, size[1], size[0]) by area averaging, rounded to uint8.

    Area averaging is the anti-aliased choice for shrinking: each output pixel is the mean of the
    source pixels it covers (exactly a block mean for integer factors).
    """
    width, height = size
    # A channels-first float copy: pooling a permuted (channels-last) view is ~2x slower.
    planar = chw.unsqueeze(0).to(torch.float32, memory_format=torch.contiguous_format)
    small = F.interpolate(planar, size=(height, width), mode="area")
    return small.squeeze(0).round_().clamp_(0, 255).to(torch.uint8)  # (C, height, width)


class FrameStack:
    """Collects same-shape frames (3, H, W) or planes (H, W) into one (T, ...) tensor, copying each once.

    Storage grows by doubling when the capacity hint is short; a final copy trims it only when
    more than a quarter is unused, so a right hint costs no copy at all.
    """

    def __init__(self, capacity_hint: int) -> None:
        self._capacity_hint = max(1, capacity_hint)
        self._data: torch.Tensor | None = None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, chw: torch.Tensor) -> None:
        if self._data is None:
            self._data = torch.empty((self._capacity_hint, *chw.shape), dtype=torch.uint8)
        elif self._count == self._data.shape[0]:
            grown = torch.empty((2 * self._count, *self._data.shape[1:]), dtype=torch.uint8)
            grown[: self._count] = self._data
            self._data = grown
        self._data[self._count].copy_(chw)
        self._count += 1

    def view(self) -> torch.Tensor:
        """The frames collected so far, a view of the storage (no copy, no trim)."""
        assert self._data is not None
        return self._data[: self._count]

    def tensor(self) -> torch.Tensor:
        assert self._data is not None
        used = self._data[: self._count]
        return used.clone() if 4 * self._count < 3 * self._data.shape[0] else used
