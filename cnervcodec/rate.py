"""The one definition of rate: bits per pixel of a file's real bytes.

Kept apart from ``metrics`` (which needs torch) so that ``cnerv info`` reports bpp from the bytes
alone, with no torch loaded.
"""

from __future__ import annotations

from cnervcodec.errors import BadInputError


def bpp(n_bytes: int, frames: int, height: int, width: int) -> float:
    """Bits per pixel: ``n_bytes * 8 / (frames * height * width)``, pixels counted per frame, not per channel."""
    n_pixels = frames * height * width
    if n_pixels <= 0 or n_bytes < 0:
        raise BadInputError(
            f"bpp needs bytes >= 0 and pixels > 0, got {n_bytes} bytes for {frames} frames of {width}x{height}"
        )
    return n_bytes * 8 / n_pixels
