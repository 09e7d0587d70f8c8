"""What every ``cnerv`` command shares: input options, device choice, output checks, progress, Ctrl-C, JSON.

Kept apart from the command modules so each stays short; nothing here holds codec logic.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from cnervcodec.config import SIZE_PRESETS, SIZES, build_model_config
from cnervcodec.errors import BadInputError


def size_help() -> str:
    """--size help with parameter counts computed from the presets (decoder, at 176x144 and 320x240)."""
    parts = []
    for size in SIZES:
        counts = [build_model_config("cnerv", size, h, w).decoder_param_count() for h, w in ((144, 176), (240, 320))]
        widths = "-".join(str(w) for w in SIZE_PRESETS[size].widths)
        parts.append(f"{size}: widths {widths}, {counts[0] / 1e6:.2f}M params at 176x144, {counts[1] / 1e6:.2f}M at 320x240")
    return "Model size (decoder parameters grow with frame size). " + "; ".join(parts) + "."


@dataclass(frozen=True)
class InputOptions:
    """The options that say how to read an input video."""

    video_size: str | None
    pix_fmt: str
    fps: str | None
    start: int
    frames: int | None
    step: int
    scale: str | None
    cache_dir: str | None = None
    memory_mb: int = 256


def input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the shared input options (raw geometry, rate, frame selection, scaling) to a command."""
    options = [
        click.option("--video-size", metavar="WxH", help="Geometry of headerless raw YUV input (required for .yuv)."),
        click.option("--pix-fmt", default="yuv420p", show_default=True, help="Pixel format of raw YUV input."),
        click.option("--fps", metavar="RATE", help="Frame rate (30, 29.97, 30000/1001); overrides the input's own."),
        click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, help="First frame to use (0-based)."),
        click.option("--frames", type=click.IntRange(min=1), default=None, help="Number of frames to use [default: all]."),
        click.option("--step", type=click.IntRange(min=1), default=1, show_default=True, help="Use every S-th frame."),
        click.option("--scale", metavar="WxH", help="Downsize to WxH with area averaging."),
        click.option("--cache-dir", metavar="DIR", type=click.Path(file_okay=False),
                     help="Where a long clip's decoded frames are cached on disk [default: the temp directory]; "
                          "the cache is removed when the command ends."),
        click.option("--memory-mb", type=click.IntRange(min=0), default=256, show_default=True,
                     help="Decoded frames held in memory before the clip streams from the disk cache (0: always "
                          "stream)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def read_options(opts: InputOptions) -> dict[str, Any]:
    """The options' raw geometry, frame rate, selection and scale as ``read_video`` (and
    ``video_stream.stream_video``) take them."""
    from cnervcodec.video_io import FrameSelection, RawVideoSpec, parse_fps, parse_video_size

    raw = None
    if opts.video_size is not None:
        width, height = parse_video_size(opts.video_size)
        raw = RawVideoSpec(width=width, height=height, pix_fmt=opts.pix_fmt)
    fps: Fraction | None = parse_fps(opts.fps) if opts.fps is not None else None
    scale = parse_video_size(opts.scale) if opts.scale is not None else None
    selection = FrameSelection(start=opts.start, frames=opts.frames, step=opts.step)
    return {"raw": raw, "fps": fps, "select": selection, "scale": scale}


def read_input(path: str, opts: InputOptions):
    """Read one input video as the options say (``video_io.read_video``)."""
    from cnervcodec.video_io import read_video

    return read_video(path, **read_options(opts), cache_dir=opts.cache_dir, memory_bytes=opts.memory_mb * 2**20)


def under_torchrun() -> bool:
    """True when torchrun (or another launcher) started this command as one of several ranks; read from the
    environment, so the CLI loads no torch to know it."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def choose_device(name: str):
    """--device auto|cpu|cuda (``devices.pick_device``); under torchrun, this rank's device, with the
    process group joined (``distributed.start``)."""
    from cnervcodec.devices import pick_device

    if under_torchrun():
        from cnervcodec.distributed import start

        return start(pick_device(name))
    return pick_device(name)


def leave_if_follower() -> None:
    """Under torchrun, after the fit: leave the process group, and end every rank but 0 quietly."""
    if under_torchrun():
        from cnervcodec import distributed

        main = distributed.is_main()
        distributed.finish()
        if not main:
            raise SystemExit(0)


def read_bounded_file(path: str | Path, max_bytes: int, kind: str) -> bytes:
    """A file's bytes, refusing a missing file and sizes no ``kind`` file can have before reading it."""
    file = Path(path)
    if not file.is_file():
        raise BadInputError(f"{path}: no such file")
    if file.stat().st_size > max_bytes:
        raise BadInputError(f"{path}: larger than {max_bytes} bytes, not a {kind} file")
    return file.read_bytes()


MAX_CNRV_BYTES = 4 << 30
MAX_CNRVM_BYTES = 4 << 30


def read_cnrv_bytes(path: str) -> bytes:
    """A .cnrv file's bytes, refusing missing files, sizes no .cnrv can have, and model files."""
    from cnervcodec.format.model_file import MODEL_SIGNATURE

    data = read_bounded_file(path, MAX_CNRV_BYTES, ".cnrv")
    if data.startswith(MODEL_SIGNATURE):
        raise BadInputError(f"{path} is a .cnrvm model, not a video stream: see cnerv model info, "
                            "or give it to encode/decode with --model")
    return data


def read_model_path(path: str | Path):
    """Parse a .cnrvm file: (ModelFile, its size in bytes); corrupt or unsupported files raise the format's errors."""
    from cnervcodec.format.model_file import read_model_file

    data = read_bounded_file(path, MAX_CNRVM_BYTES, ".cnrvm")
    return read_model_file(data), len(data)


class ProgressLine:
    """Renders ``FitProgress`` on stderr: one rewritten line on a terminal, a line every 10 s elsewhere."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.silent = os.environ.get("RANK", "0") != "0"  # torchrun: rank 0 alone prints
        self.tty = sys.stderr.isatty()
        self.last_print = -1e9
        self.shown = False

    def __call__(self, p) -> None:
        import time

        if self.silent:
            return
        filled = int(30 * p.step / max(1, p.total_steps))
        eta = f"{int(p.eta_s // 60)}:{int(p.eta_s % 60):02d}" if p.eta_s != float("inf") else "?"
        text = (
            f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] epoch {p.epoch}/{p.epochs} "
            f"loss {p.loss:.4f} PSNR {p.psnr_db:.2f} dB {p.frames_per_s:.1f} frames/s ETA {eta}"
        )
        now = time.monotonic()
        if self.tty:
            click.echo("\r" + text + "\x1b[K", nl=False, err=True)
            self.shown = True
        elif now - self.last_print >= 10 or p.step == p.total_steps:
            click.echo(text, err=True)
            self.last_print = now

    def close(self) -> None:
        if self.shown:
            click.echo("", err=True)
            self.shown = False


class StopFlag:
    """Turns the first Ctrl-C into a polite stop request (checked between training steps)."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> StopFlag:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def __call__(self) -> bool:
        return self.requested


EMIT_SINK = "cnerv.emit_sink"  # click context meta key: a run over several clips collects their JSON (cli.batch)


def emit(data: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """Print a result as one JSON object on stdout, or as text for people."""
    ctx = click.get_current_context(silent=True)
    sink = ctx.meta.get(EMIT_SINK) if ctx is not None else None
    if as_json and sink is not None:
        sink(data)
    elif as_json:
        click.echo(json.dumps(data, indent=None, allow_nan=False))
    else:
        click.echo(human(data))


RATE_AWARE_MIN_EPOCHS = 60  # --rate-aware auto: on from here (medium's 100 epochs), off below (fast's 30)


def rate_aware_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--rate-aware auto|on|off`` and ``--lambda``: training for the rate (``rate_training``); ``auto``
    (the default) is resolved by ``resolve_rate_aware``."""
    from cnervcodec.ratecontrol import RATE_LAMBDA

    command = click.option(
        "--lambda", "rate_lambda", type=click.FloatRange(min=0.0, max=1e6, min_open=True), default=None,
        help=f"Weight of the rate term in the loss D + lambda * bpp (learned quantization steps), held fixed "
             f"[default under rate control: starts at {RATE_LAMBDA} and follows the target during the fit; "
             f"with --size: no rate term unless given].")(command)
    return click.option(
        "--rate-aware", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
        help="Train for the rate (learned steps, noise then straight-through rounding, a rate term); off: "
             "quantize after the fit with eq. 4 at the searched bit depths (--bits, --embed-bits); auto: on "
             f"for fits of {RATE_AWARE_MIN_EPOCHS} epochs or more (medium, slow), off for shorter ones (fast).")(command)


def resolve_rate_aware(rate_aware: str, epochs: int, rate_lambda: float | None, bits: int | None = None) -> str:
    """``auto`` as on or off: rate-aware training needs a long enough fit (measured: preset fast, 30
    epochs, collapsed on 30 carphone frames, 17.2 dB, and lost 18.9 % BD-rate on bikes); a ``--lambda``
    given asks for it, pinned eq. 4 depths (``--bits``) turn it off."""
    if rate_aware != "auto":
        return rate_aware
    if bits is not None:
        return "off"
    return "on" if rate_lambda is not None or epochs >= RATE_AWARE_MIN_EPOCHS else "off"


def fit_lambda(rate_aware: str, rate_lambda: float | None, rate_mode: bool, bits: int | None,
               epochs: int = RATE_AWARE_MIN_EPOCHS) -> float:
    """The fit's ``rate_lambda``: 0 (off), the user's ``--lambda``, or under rate control the starting
    ``RATE_LAMBDA``; pinned eq. 4 depths (``--bits``) and a rate term do not go together."""
    from cnervcodec.ratecontrol import RATE_LAMBDA

    rate_aware = resolve_rate_aware(rate_aware, epochs, rate_lambda, bits)
    if rate_aware == "off":
        if rate_lambda is not None:
            raise click.UsageError("--lambda weighs the rate term of --rate-aware on: drop one of them")
        return 0.0
    if rate_lambda is None and not rate_mode:
        return 0.0  # --size keeps eq. 4 at --bits unless a lambda is asked for
    if bits is not None:
        raise click.UsageError("--bits pins eq. 4's weight depth, rate-aware training learns its steps: "
                               "add --rate-aware off to pin --bits")
    return rate_lambda if rate_lambda is not None else RATE_LAMBDA
