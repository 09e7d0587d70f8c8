"""cnervcodec: the CNeRV neural video codec (content-adaptive neural representation, BMVC 2022).

The Python API, in the spirit of CompressAI's ``compress`` / ``decompress``: read a video, encode
frames to the bytes of a ``.cnrv`` file, decode bytes back to frames (all of them, or any range:
each frame is rebuilt from its own embedding), measure quality, describe a file.

>>> import cnervcodec
>>> clip = cnervcodec.read_video("tests/data/carphone_qcif.mp4", frames=4)   # doctest: +SKIP
>>> data = cnervcodec.encode(clip.frames, clip.fps, epochs=10)                # doctest: +SKIP
>>> frames = cnervcodec.decode(data, start=2, frames=2)   # (2, 3, 144, 176) uint8   # doctest: +SKIP
>>> cnervcodec.quality(clip.frames[2:4], frames)["psnr_yuv"]                  # doctest: +SKIP

Frames are (T, 3, H, W) uint8 RGB torch tensors; ``fps`` is a ``fractions.Fraction``. Nothing is
imported until a function is called, so ``import cnervcodec`` stays cheap (and torch-free).
The package's modules are described in ``docs/modules.md``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers only: importing torch here would make every command load it
    import torch

    from cnervcodec.video_io import VideoClip

__all__ = ["__version__", "decode", "encode", "info", "quality", "read_video"]


def read_video(path: str, *, start: int = 0, frames: int | None = None, step: int = 1,
               scale: tuple[int, int] | None = None, fps: Fraction | None = None) -> VideoClip:
    """Read a video (anything FFmpeg demuxes) as a ``VideoClip``: ``.frames`` (T, 3, H, W) uint8,
    ``.fps``, ``.width``, ``.height``; frames ``start``, ``start + step``, ... (``frames`` of them),
    downsized to ``scale`` = (width, height) by area averaging."""
    from cnervcodec.video_io import FrameSelection
    from cnervcodec.video_io import read_video as read

    return read(path, fps=fps, select=FrameSelection(start=start, frames=frames, step=step), scale=scale)


def encode(frames: torch.Tensor, fps: Fraction | int, *, bits: int = 8, embed_bits: int = 6, prune: float = 0.0,
           size: str = "S", preset: str = "medium", epochs: int | None = None, seed: int = 0,
           device: str = "auto") -> bytes:
    """Fit a CNeRV network to ``frames`` (T, 3, H, W) uint8, prune, quantize and code it: the bytes
    of the ``.cnrv`` file ``cnerv encode`` would write with the same settings (without its ``meta``
    chunk). ``preset`` sets the fit and fine-tune epochs as ``cnerv encode --preset`` does."""
    from cnervcodec import codec
    from cnervcodec.config import (
        PRESETS,
        CompressionConfig,
        FitConfig,
        PruneConfig,
        build_model_config,
    )
    from cnervcodec.devices import pick_device
    from cnervcodec.errors import BadInputError

    if preset not in PRESETS:
        raise BadInputError(f"unknown preset {preset!r}: use {', '.join(PRESETS)}")
    recipe = PRESETS[preset]
    height, width = frames.shape[-2:]
    settings = codec.EncodeSettings(
        model=build_model_config("cnerv", size, height, width),
        fit=FitConfig(epochs=epochs or recipe.epochs, seed=seed),
        compression=CompressionConfig(weight_bits=bits, embed_bits=embed_bits),
        prune=PruneConfig(fraction=prune, epochs=recipe.prune_epochs))
    return codec.encode(frames, Fraction(fps), settings, pick_device(device)).data


def decode(data: bytes, *, start: int = 0, frames: int | None = None, model: bytes | None = None,
           device: str = "auto", half: bool = False) -> torch.Tensor:
    """The frames a ``.cnrv`` file's bytes decode to, (N, 3, H, W) uint8: all of them, or ``frames``
    from ``start`` (random access: no other frame is decoded). ``model``: the ``.cnrvm`` bytes a
    stream encoded with ``--model-ref`` needs. ``half``: float16 on CUDA / bfloat16 on the CPU, a few
    8-bit levels from the exact (default, float32) frames."""
    from cnervcodec import codec
    from cnervcodec.devices import pick_device
    from cnervcodec.format.model_file import read_model_file

    model_file = read_model_file(model) if model is not None else None
    return codec.decode(data, model_file=model_file, start=start, frames=frames, device=pick_device(device),
                        half=half)


def quality(reference: torch.Tensor, distorted: torch.Tensor) -> dict[str, Any]:
    """PSNR over RGB, PSNR over YUV 4:2:0 (6Y + U + V) / 8, and MS-SSIM of two (T, 3, H, W) uint8
    clips, means and per frame (``cnerv metrics``'s definitions)."""
    from cnervcodec.metrics import quality_report

    return quality_report(reference, distorted).to_dict(per_frame=True)


def info(data: bytes) -> dict[str, Any]:
    """What ``cnerv info --json`` reports about a ``.cnrv`` file's bytes (no torch needed)."""
    from cnervcodec.format.describe import container_info
    from cnervcodec.format.stream import read_container

    return container_info(read_container(data), len(data))
