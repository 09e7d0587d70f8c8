"""The ``cnerv`` command: click commands, paths, progress, device choice, JSON output, exit codes.

Commands stay thin: they parse options into configs, call library functions and print. Library
errors (``CnervError``) become one line on stderr and the error's exit status; usage errors exit 2.
Nothing here holds codec logic.
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

from cnervcodec import __version__
from cnervcodec.config import SIZE_PRESETS, SIZES, build_model_config, parse_grid
from cnervcodec.errors import BadInputError, CnervError

EPILOG_FIT = """\b
Examples:
  cnerv fit tests/data/carphone_qcif.mp4 --frames 30 --epochs 30 -o carphone.safetensors
  cnerv fit clip.mp4 --step 3 --scale 320x136 --holdout 5 --epochs 100 --json
  cnerv fit clip.mp4 --arch nerv --holdout 5        # the NeRV baseline at matched size
  cnerv fit cars.yuv --video-size 320x240 --fps 30 -o cars.safetensors
  cnerv fit clip.mp4 -o m.safetensors --resume m.safetensors.ckpt   # continue after Ctrl-C
"""

EPILOG_METRICS = """\b
Examples:
  cnerv metrics original.y4m decoded.mp4
  cnerv metrics ref.yuv dist.yuv --video-size 352x288 --json
"""


def _size_help() -> str:
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
    ]
    for option in reversed(options):
        command = option(command)
    return command


def read_input(path: str, opts: InputOptions):
    """Read one input video as the options say (``video_io.read_video``)."""
    from cnervcodec.video_io import FrameSelection, RawVideoSpec, parse_fps, parse_video_size, read_video

    raw = None
    if opts.video_size is not None:
        width, height = parse_video_size(opts.video_size)
        raw = RawVideoSpec(width=width, height=height, pix_fmt=opts.pix_fmt)
    fps: Fraction | None = parse_fps(opts.fps) if opts.fps is not None else None
    scale = parse_video_size(opts.scale) if opts.scale is not None else None
    selection = FrameSelection(start=opts.start, frames=opts.frames, step=opts.step)
    return read_video(path, raw=raw, fps=fps, select=selection, scale=scale)


def choose_device(name: str):
    """--device auto|cpu|cuda: auto takes CUDA when present; the CPU path uses every core it may."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores))
    return device


def check_output(path: Path, overwrite: bool, inputs: tuple[str, ...]) -> None:
    """Refuse to write over an input, into a missing folder, or over a file without -y."""
    resolved = path.resolve()
    for source in inputs:
        if Path(source).resolve() == resolved:
            raise BadInputError(f"{path}: refusing to write the output over the input")
    if not resolved.parent.is_dir():
        raise BadInputError(f"{path}: folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise BadInputError(f"{path} exists: pass -y to overwrite it")


class ProgressLine:
    """Renders ``FitProgress`` on stderr: one rewritten line on a terminal, a line every 10 s elsewhere."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last_print = -1e9
        self.shown = False

    def __call__(self, p) -> None:
        import time

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnerv")
def cli() -> None:
    """cnervcodec: the CNeRV neural video codec (content-adaptive neural representation).

    A tiny one-layer encoder turns each frame into a short content-adaptive embedding; a NeRV-style
    decoder fitted to the video turns embeddings back into frames, including frames it never saw.
    """


@cli.command("fit", epilog=EPILOG_FIT)
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the fitted model (.safetensors).")
@click.option("--arch", type=click.Choice(["cnerv", "nerv"]), default="cnerv", show_default=True, help="CNeRV, or the NeRV baseline at matched size.")
@click.option("--size", type=click.Choice(list(SIZES)), default="S", show_default=True, help=_size_help())
@click.option("--grid", default="auto", show_default=True, help="Embedding block grid ROWSxCOLS; auto: blocks of at most 240 px.")
@click.option("--embed-dim", type=click.IntRange(1, 4096), default=None, help="Embedding values per block (d) [default: size preset].")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--lr", type=click.FloatRange(min=1e-8, max=1.0), default=2e-3, show_default=True, help="Peak learning rate (Adam, warm-up then cosine).")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Frames per step.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--holdout", type=click.IntRange(min=0), default=0, show_default=True, help="Keep 1 frame in every K out of training and report it as unseen (paper: 5). 0: off.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint file [default: OUTPUT.ckpt when -o is given].")
@click.option("--checkpoint-every", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds between checkpoints.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), help="Continue from a checkpoint (same input and input options).")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@input_options
def fit_command(input_path: str, output: Path | None, arch: str, size: str, grid: str, embed_dim: int | None,
                epochs: int, lr: float, batch: int, seed: int, holdout: int, device: str, checkpoint: Path | None,
                checkpoint_every: float, resume: Path | None, overwrite: bool, as_json: bool, quiet: bool,
                **input_kw: Any) -> None:
    """Fit a CNeRV (or NeRV) network to INPUT and report its reconstruction quality.

    With --holdout K, every K-th frame is kept out of training and reported as "unseen": CNeRV
    encodes such frames from their content in one forward pass, NeRV can only guess from the index.
    """
    from cnervcodec.experiment import run_fit

    opts = InputOptions(**input_kw)
    if output is not None:
        check_output(output, overwrite, (input_path,))
    ckpt_path = checkpoint or (output.with_name(output.name + ".ckpt") if output is not None else None)
    clip = read_input(input_path, opts)
    model_config = build_model_config(arch, size, clip.height, clip.width,
                                      grid=parse_grid(grid, clip.height, clip.width), embed_dim=embed_dim,
                                      n_frames=clip.n_frames)
    from cnervcodec.config import FitConfig

    fit_config = FitConfig(epochs=epochs, lr=lr, batch=batch, seed=seed, holdout=holdout).validate()
    torch_device = choose_device(device)
    progress = None if quiet else ProgressLine(arch)
    try:
        with StopFlag() as stop:
            report = run_fit(clip, model_config, fit_config, torch_device, progress=progress,
                             checkpoint_path=ckpt_path, checkpoint_every_s=checkpoint_every, resume=resume,
                             should_stop=stop, output=output, size=size)
    finally:
        if progress is not None:
            progress.close()
    if ckpt_path is not None and checkpoint is None and output is not None:
        ckpt_path.unlink(missing_ok=True)
    emit(report, as_json, format_fit_report)


@cli.command("metrics", epilog=EPILOG_METRICS)
@click.argument("reference")
@click.argument("distorted")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with per-frame lists) on stdout.")
@input_options
def metrics_command(reference: str, distorted: str, as_json: bool, **input_kw: Any) -> None:
    """Compare DISTORTED with REFERENCE frame by frame: PSNR (RGB and YUV 4:2:0) and MS-SSIM.

    The input options apply to both files (raw YUV needs --video-size for each .yuv input).
    """
    from cnervcodec.metrics import quality_report

    opts = InputOptions(**input_kw)
    ref = read_input(reference, opts)
    dist = read_input(distorted, opts)
    report = quality_report(ref.frames, dist.frames)
    data = {"reference": reference, "distorted": distorted, **report.to_dict(per_frame=True),
            "notes": [n for n in (report.note,) if n]}
    emit(data, as_json, format_metrics_report)


def emit(data: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """Print a result as one JSON object on stdout, or as text for people."""
    if as_json:
        click.echo(json.dumps(data, indent=None, allow_nan=False))
    else:
        click.echo(human(data))


def _quality_line(name: str, q: dict[str, Any] | None) -> str:
    if q is None:
        return f"  {name:<7} -"
    return (f"  {name:<7} {q['frames']:>5} frames  PSNR {q['psnr']:6.2f} dB  PSNR-YUV {q['psnr_yuv']:6.2f} dB  "
            f"MS-SSIM {q['ms_ssim']:.4f}")


def format_fit_report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['arch']} size {r['size']}: {r['params']:,} decoder params, {r['embedding_values_per_frame']} embedding values/frame, "
        f"{r['epochs']} epochs in {r['fit_seconds']:.1f} s ({r['train_fps']:.1f} frames/s on {r['device']})",
        _quality_line("seen", r["seen"]),
        _quality_line("unseen", r["unseen"]),
    ]
    if r["gap_psnr"] is not None:
        lines.append(f"  gap     {r['gap_psnr']:.2f} dB (seen - unseen PSNR)")
    if r.get("model"):
        lines.append(f"  model written to {r['model']}")
    lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(lines)


def format_metrics_report(r: dict[str, Any]) -> str:
    lines = [_quality_line("frames", r)]
    lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group, turning every expected failure into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="cnerv", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("cnerv: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CnervError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        click.echo(f"cnerv: error: {message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("cnerv: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        click.echo(f"cnerv: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, with a hint for the full story
        if os.environ.get("CNERV_DEBUG"):
            raise
        click.echo(f"cnerv: internal error: {type(exc).__name__}: {exc} (set CNERV_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
