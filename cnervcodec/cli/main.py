"""The ``cnerv`` command: click commands, paths, progress, device choice, JSON output, exit codes.

Commands stay thin: they parse options into configs, call library functions and print. Library
errors (``CnervError``) become one line on stderr and the error's exit status; usage errors exit 2.
Nothing here holds codec logic.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from cnervcodec import __version__
from cnervcodec.atomic import atomic_write_bytes, check_writable
from cnervcodec.baselines.config import ARCH_ALIASES, BASELINE_ARCHS, default_lr
from cnervcodec.cli.analyze import analyze_command
from cnervcodec.cli.bdrate import bd_rate_command
from cnervcodec.cli.codec import decode_command, encode_command, info_command
from cnervcodec.cli.common import (
    InputOptions,
    ProgressLine,
    StopFlag,
    choose_device,
    emit,
    input_options,
    leave_if_follower,
    read_input,
    read_options,
    size_help,
)
from cnervcodec.cli.model import model_group
from cnervcodec.config import SIZES, FitConfig, build_model_config, parse_grid
from cnervcodec.errors import BadInputError, CnervError

FIT_ARCHS = ["cnerv", "nerv", *BASELINE_ARCHS, *ARCH_ALIASES]

EPILOG_FIT = """\b
Examples:
  cnerv fit tests/data/carphone_qcif.mp4 --frames 30 --epochs 30 -o carphone.safetensors
  cnerv fit clip.mp4 --step 3 --scale 320x136 --holdout 5 --epochs 100 --json
  cnerv fit clip.mp4 --arch nerv --holdout 5        # the NeRV baseline at matched size
  cnerv fit clip.mp4 --arch mlf --holdout 5 --json -o mlf.safetensors   # a table 8 baseline; cnerv analyze *.safetensors
  cnerv fit cars.yuv --video-size 320x240 --fps 30 -o cars.safetensors
  cnerv fit clip.mp4 -o m.safetensors --resume m.safetensors.ckpt   # continue after Ctrl-C
  cnerv fit a.mp4 b.mp4 --scale 320x180 -o domain.cnrvm   # a model for new clips: cnerv encode --model
"""

EPILOG_METRICS = """\b
Examples:
  cnerv metrics original.y4m decoded.mp4
  cnerv metrics ref.yuv dist.yuv --video-size 352x288 --json
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnerv")
def cli() -> None:
    """cnervcodec: the CNeRV neural video codec (content-adaptive neural representation).

    A tiny one-layer encoder turns each frame into a short content-adaptive embedding; a NeRV-style
    decoder fitted to the video turns embeddings back into frames, including frames it never saw.
    """


@cli.command("fit", epilog=EPILOG_FIT)
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the fitted model: .cnrvm (for cnerv encode --model) or .safetensors (float, with embeddings).")
@click.option("--bits", type=click.IntRange(1, 16), default=8, show_default=True, help="Decoder weight bits in a .cnrvm model.")
@click.option("--arch", type=click.Choice(FIT_ARCHS), default="cnerv", show_default=True,
              help="CNeRV, or a baseline of the paper at CNeRV's total size and code length: NeRV, the autoencoders "
                   "(convae, convvae, convae-star = ConvAE*), pixel-wise INRs with a content code (siren, ffn, "
                   "nerf-pe = nerf, mlf).")
@click.option("--size", type=click.Choice(list(SIZES)), default="S", show_default=True, help=size_help())
@click.option("--grid", default="auto", show_default=True, help="Embedding block grid ROWSxCOLS; auto: blocks of at most 240 px.")
@click.option("--embed-dim", type=click.IntRange(1, 4096), default=None, help="Embedding values per block (d) [default: size preset].")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--lr", type=click.FloatRange(min=1e-8, max=1.0), default=None,
              help="Peak learning rate (Adam, warm-up then cosine) [default: 2e-3; siren 5e-4, mlf 1e-3].")
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
def fit_command(input_paths: tuple[str, ...], output: Path | None, bits: int, arch: str, size: str, grid: str,
                embed_dim: int | None,
                epochs: int, lr: float | None, batch: int, seed: int, holdout: int, device: str, checkpoint: Path | None,
                checkpoint_every: float, resume: Path | None, overwrite: bool, as_json: bool, quiet: bool,
                **input_kw: Any) -> None:
    """Fit a CNeRV network (or one of the paper's baselines, --arch) to INPUT and report its
    reconstruction quality.

    With --holdout K, every K-th frame is kept out of training and reported as "unseen": CNeRV
    encodes such frames from their content in one forward pass, NeRV can only guess from the index;
    the autoencoders and content-coded INRs encode them through their encoder. cnerv analyze compares
    the embeddings of several fits (-o X.safetensors).
    """
    from cnervcodec.fit_report import fit_clip

    opts = InputOptions(**input_kw)
    if output is not None:
        check_writable(output, overwrite, input_paths)
        if output.suffix == ".cnrvm" and arch != "cnerv":
            raise click.UsageError(f"a .cnrvm model holds a CNeRV network: drop --arch {arch} or write .safetensors")
    lr = default_lr(arch, FitConfig.lr) if lr is None else lr
    if arch not in ("cnerv", "nerv"):
        from cnervcodec.cli.baseline import fit_baseline_command

        if resume is not None or checkpoint is not None:
            raise click.UsageError(f"--arch {arch} keeps no checkpoint: drop --resume / --checkpoint")
        fit_config = FitConfig(epochs=epochs, lr=lr, batch=batch, seed=seed, holdout=holdout)
        report = fit_baseline_command(read_clips(input_paths, opts), arch, size, grid, embed_dim, fit_config,
                                      choose_device(device), output, quiet)
        emit(report, as_json, format_fit_report)
        return
    ckpt_path = checkpoint or (output.with_name(output.name + ".ckpt") if output is not None else None)
    clip = read_clips(input_paths, opts)
    model_config = build_model_config(arch, size, clip.height, clip.width,
                                      grid=parse_grid(grid, clip.height, clip.width), embed_dim=embed_dim,
                                      n_frames=clip.n_frames)
    fit_config = FitConfig(epochs=epochs, lr=lr, batch=batch, seed=seed, holdout=holdout)
    torch_device = choose_device(device)
    progress = None if quiet else ProgressLine(arch)
    try:
        with StopFlag() as stop:
            result, report = fit_clip(clip, model_config, fit_config, torch_device, progress=progress,
                                      checkpoint_path=ckpt_path, checkpoint_every_s=checkpoint_every, resume=resume,
                                      should_stop=stop, size=size)
    finally:
        if progress is not None:
            progress.close()
    leave_if_follower()  # under torchrun, rank 0 alone writes and prints
    if output is not None:
        report["model"] = str(output)
        _save_fit(output, result, bits, report)
    if ckpt_path is not None and checkpoint is None and output is not None:
        ckpt_path.unlink(missing_ok=True)
    emit(report, as_json, format_fit_report)


def _save_fit(output: Path, result, weight_bits: int, report: dict[str, Any]) -> None:
    """Write the fit: a .cnrvm model (decoder quantized to ``weight_bits``; its hash goes in the
    report) or the float network and embeddings as .safetensors."""
    from cnervcodec.codec import metadata
    from cnervcodec.config import CompressionConfig
    from cnervcodec.fit import fitted_embeddings
    from cnervcodec.format.model_file import write_model_file
    from cnervcodec.safetensors_files import save_model
    from cnervcodec.trained_model import model_file_from_network

    if output.suffix == ".cnrvm":
        meta = metadata(trained_on=report["input"], fit=result.config.to_dict(), seen=report["seen"],
                        unseen=report["unseen"])
        model_file = model_file_from_network(result.network, CompressionConfig(weight_bits=weight_bits), meta)
        atomic_write_bytes(output, write_model_file(model_file))
        report["model_sha256"] = model_file.sha256.hex()
    else:
        save_model(output, result.network.cpu(), fitted_embeddings(result),
                   {"fit": report, "fit_config": result.config.to_dict()})


def read_clips(paths: tuple[str, ...], opts: InputOptions):
    """One clip, or several of the same size (after --scale) joined in order: a domain model's training set
    (their frames, and their 4:2:0 planes when every clip has some)."""
    from dataclasses import replace

    clips = [read_input(path, opts) for path in paths]
    sizes = {(c.width, c.height) for c in clips}
    if len(sizes) > 1:
        listed = ", ".join(f"{Path(p).name} {c.width}x{c.height}" for p, c in zip(paths, clips))
        raise BadInputError(f"the inputs differ in size ({listed}): give --scale WxH to bring them to one size")
    if len(clips) == 1:
        return clips[0]
    notes = tuple(n for c in clips for n in c.notes)
    have_planes = all(c.planes is not None for c in clips)
    planes = tuple(_join([c.planes[i] for c in clips]) for i in range(3)) if have_planes else None
    return replace(clips[0], frames=_join([c.frames for c in clips]), source=" + ".join(paths), notes=notes,
                   planes=planes)


def _join(parts: list):
    """Clips' frames (or planes) in order: one tensor, or one frame file when any part is on disk."""
    import torch

    from cnervcodec import frame_store

    if not any(frame_store.is_store(p) for p in parts):
        return torch.cat(parts)
    joined = frame_store.FrameFile(parts[0].shape[1:])
    for part in parts:
        for _, batch in frame_store.batches(part):
            joined.append(batch)
    return joined


@cli.command("metrics", epilog=EPILOG_METRICS)
@click.argument("reference")
@click.argument("distorted")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with per-frame lists) on stdout.")
@input_options
def metrics_command(reference: str, distorted: str, as_json: bool, **input_kw: Any) -> None:
    """Compare DISTORTED with REFERENCE frame by frame: PSNR (RGB and YUV 4:2:0) and MS-SSIM.

    The input options apply to both files (raw YUV needs --video-size for each .yuv input).
    """
    import torch

    from cnervcodec.metrics import DEFAULT_BATCH_FRAMES, QualityAccumulator

    opts = InputOptions(**input_kw)
    # Frames are decoded on a background thread and scored on one thread per core, each with one
    # intra-op thread: small cache-sized operations, which torch's own threads slow down (measured:
    # 5x slower per frame with 2 intra-op threads on a busy 2-core machine).
    workers = torch.get_num_threads()
    torch.set_num_threads(1)
    accumulator = QualityAccumulator(workers)
    try:
        for ref_batch, dist_batch in _metrics_batches(reference, distorted, opts, DEFAULT_BATCH_FRAMES):
            accumulator.add(ref_batch, dist_batch)
        report = accumulator.report()
    finally:
        accumulator.close()
        torch.set_num_threads(workers)
    data = {"reference": reference, "distorted": distorted, **report.to_dict(per_frame=True),
            "notes": [n for n in (report.note,) if n]}
    emit(data, as_json, format_metrics_report)


def _stream_input(path: str, opts: InputOptions):
    """``read_input``'s frames of one input, one at a time (``video_stream.stream_video``)."""
    from cnervcodec.video_stream import stream_video

    return stream_video(path, **read_options(opts))


def _metrics_batches(reference: str, distorted: str, opts: InputOptions, batch: int):
    """(reference, distorted) batches ``(n, 3, H, W)`` of both inputs in step, decoded on a background
    thread two batches ahead; different frame counts raise the error ``quality_report`` gives."""
    import queue
    import threading
    from itertools import islice

    import torch

    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def decode() -> None:
        try:
            streams = (_stream_input(reference, opts), _stream_input(distorted, opts))
            counts = [0, 0]
            while not stop.is_set():
                pairs = [[f for f, _ in islice(s, batch)] for s in streams]
                counts = [c + len(p) for c, p in zip(counts, pairs)]
                if len(pairs[0]) != len(pairs[1]):
                    counts = [c + sum(1 for _ in s) for c, s in zip(counts, streams)]
                    raise BadInputError(f"reference has {counts[0]} frames, distorted has {counts[1]}")
                if not pairs[0]:
                    break
                batches.put(tuple(torch.stack(p) for p in pairs))
            batches.put(None)
        except BaseException as error:  # handed to the scoring thread, which raises it
            batches.put(error)

    thread = threading.Thread(target=decode, name="cnerv-metrics-decode", daemon=True)
    thread.start()
    try:
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                batches.get(timeout=0.1)
            except queue.Empty:
                pass


def _quality_line(name: str, q: dict[str, Any] | None) -> str:
    if q is None:
        return f"  {name:<7} -"
    return (f"  {name:<7} {q['frames']:>5} frames  PSNR {q['psnr']:6.2f} dB  PSNR-YUV {q['psnr_yuv']:6.2f} dB  "
            f"MS-SSIM {q['ms_ssim']:.4f}")


def format_fit_report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['arch']} size {r['size']}: {r['params']:,} decoder + {r['encoder_params']:,} encoder params, "
        f"{r['embedding_values_per_frame']} embedding values/frame, "
        f"{r['epochs']} epochs in {r['fit_seconds']:.1f} s ({r['train_fps']:.1f} frames/s on {r['device']})",
        _quality_line("seen", r["seen"]),
        _quality_line("unseen", r["unseen"]),
    ]
    if r["gap_psnr"] is not None:
        lines.append(f"  gap     {r['gap_psnr']:.2f} dB (seen - unseen PSNR)")
    if r.get("encode_ms_per_frame") is not None:
        lines.append(f"  encoder {r['encode_ms_per_frame']:.3f} ms a frame (forward pass, frames on the device)")
    if r.get("model"):
        sha = f" (SHA-256 {r['model_sha256']})" if r.get("model_sha256") else ""
        lines.append(f"  model written to {r['model']}{sha}")
    lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(lines)


def format_metrics_report(r: dict[str, Any]) -> str:
    lines = [_quality_line("frames", r)]
    lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(lines)


for _command in (encode_command, decode_command, info_command, bd_rate_command, model_group, analyze_command):
    cli.add_command(_command)


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
