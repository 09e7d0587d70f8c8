"""``cnerv encode``, ``decode`` and ``info``: the codec's commands.

Each parses options, calls ``codec`` / ``container`` / ``video_out`` and prints; outputs are written
through a temporary file and renamed, and never over an input or an existing file without ``-y``.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from cnervcodec.atomic import atomic_write_bytes, check_writable
from cnervcodec.cli.batch import DECODE_RUN, ENCODE_RUN, decode_format_option, for_each_input
from cnervcodec.cli.common import (
    leave_if_follower,
    InputOptions,
    ProgressLine,
    StopFlag,
    choose_device,
    emit,
    fit_lambda,
    input_options,
    rate_aware_options,
    read_cnrv_bytes,
    read_input,
    read_model_path,
    size_help,
)
from cnervcodec.cli.text import format_encode
from cnervcodec.config import (
    INTERPOLATION_MODES,
    LOSSES,
    MAX_INTERPOLATE,
    PRESETS,
    SIZES,
    CompressionConfig,
    FitConfig,
    PruneConfig,
    build_model_config,
    parse_grid,
)
from cnervcodec.ratecontrol import DEFAULT_BPP, RATE_LR, RATE_TOLERANCE

EPILOG_ENCODE = """\b
Examples:
  cnerv encode tests/data/carphone_qcif.mp4 -o carphone.cnrv --frames 30 --preset fast
  cnerv encode clip.mp4 -o clip.cnrv --bpp 0.05          # rate control: network and bits chosen for 0.05 bpp
  cnerv encode clip.mp4 -o clip.cnrv --kbps 200 --bits 8 # 200 kbit/s, weight bits pinned
  cnerv encode clip.mp4 -o clip.cnrv --size S --bits 6 --prune 0.2 --json   # a named size, no rate control
  cnerv encode big.mp4 -o big.cnrv --scale 640x360 --size M --preset slow
  cnerv encode cars.yuv --video-size 320x240 --fps 30 -o cars.cnrv
  cnerv encode long.mp4 -o long.cnrv --fit-every 100 --cache-dir /scratch   # long: frames stream from a disk cache
  torchrun --nproc-per-node 2 -m cnervcodec encode clip.mp4 -o clip.cnrv --device cpu   # DDP, 2 ranks (gloo)
  cnerv encode new.mp4 -o new.cnrv --model domain.cnrvm --model-ref   # no fit: embeddings only
  cnerv encode a.mp4 b.mkv c.y4m -o out/ --preset fast --json   # out/a.cnrv, out/b.cnrv, out/c.cnrv; a JSON list
"""

EPILOG_DECODE = """\b
Examples:
  cnerv decode clip.cnrv -o clip.mp4            # H.264, visually lossless (CRF 12), audio muxed back
  cnerv decode clip.cnrv -o clip.y4m            # exact: the decoder's 8-bit RGB frames, bit for bit
  cnerv decode clip.cnrv -o frames/f_%05d.png   # one PNG per frame
  cnerv decode new.cnrv --model domain.cnrvm -o new.mp4   # a stream encoded with --model-ref
  cnerv decode clip.cnrv -o clip4x.mp4 --interpolate 4 --interp slerp   # 4x the frame rate, same duration
  cnerv decode clip.cnrv -o part.mp4 --start 100 --frames 25   # random access: frames 100..124 only
  cnerv decode out/*.cnrv -o videos/ --format mkv   # videos/a.mkv, videos/b.mkv, ...
  cnerv decode clip.cnrv -o clip.mp4 --device cuda --half   # float16 decoder: faster, not bit-exact
"""

EPILOG_INFO = """\b
Examples:
  cnerv info clip.cnrv
  cnerv info clip.cnrv --json
"""


def _audio_for(input_path: str, opts: InputOptions, clip) -> Any:
    """The input's audio over the selected frames' time span (None for raw video or no audio)."""
    from cnervcodec.audio import read_audio_track

    if opts.video_size is not None:
        return None
    start_s = Fraction(opts.start) / clip.source_fps
    duration_s = Fraction(clip.n_frames * opts.step) / clip.source_fps
    return read_audio_track(input_path, start_seconds=start_s, duration_seconds=duration_s)


@click.command("encode", epilog=EPILOG_ENCODE)
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The .cnrv file to write; with several inputs a folder, OUT/STEM.cnrv each (two inputs with "
                   "one stem are refused, a clip that fails is reported and the others go on).")
@click.option("--bpp", type=float, default=None,
              help=f"Target rate in bits per pixel of the video part of the file (model, embeddings, headers; audio "
                   f"is extra): the network and bit depths are chosen for it [default: {DEFAULT_BPP} without --size "
                   f"or --kbps].")
@click.option("--kbps", type=float, default=None, help="Target rate in kilobits per second over the clip's duration.")
@click.option("--bits", type=click.IntRange(1, 16), default=None,
              help="Bits per decoder weight (eq. 4 quantization) [default: 8 with --size; chosen for the rate "
                   "otherwise, and pinned when given].")
@click.option("--embed-bits", type=click.IntRange(1, 16), default=None,
              help="Bits per embedding value [default: 6 with --size; chosen for the rate otherwise].")
@click.option("--prune", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True, help="Fraction of decoder weights to prune (then fine-tune).")
@click.option("--size", type=click.Choice(list(SIZES)), default=None,
              help="A named model size instead of rate control (decoder parameters grow with frame size). "
                   + size_help())
@click.option("--loss", type=click.Choice(list(LOSSES)), default=None,
              help="Training loss: yuv-mse (6:1:1 MSE on the 4:2:0 planes, what YUV-PSNR scores), mse (RGB) or "
                   "l1-ssim (the paper's; measured best in YUV-PSNR too) [default: l1-ssim].")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="medium", show_default=True,
              help="fast: 30 fit epochs + 5 after pruning; medium: 100 + 10; slow: 300 + 30.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Fit epochs [default: from --preset].")
@click.option("--grid", default="auto", show_default=True, help="Embedding block grid ROWSxCOLS; auto: blocks of at most 240 px.")
@click.option("--embed-dim", type=click.IntRange(1, 4096), default=None, help="Embedding values per block (d) [default: size preset].")
@click.option("--lr", type=click.FloatRange(min=1e-8, max=1.0), default=None,
              help=f"Peak learning rate [default: {RATE_LR} under rate control, 0.002 with --size].")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Frames per step.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--fit-every", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Fit on every K-th frame (0, K, 2K, ...), embed all: faster encodes; unseen frames are reported separately.")
@rate_aware_options
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Encode with a trained .cnrvm model (cnerv fit -o M.cnrvm): no fit, embeddings only, in one forward pass.")
@click.option("--model-ref", is_flag=True, help="With --model: store only the model's SHA-256, not its decoder (decode --model).")
@click.option("--refine-embeddings", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="With --model: N passes of gradient steps on the embeddings alone (decoder frozen), for quality at the same rate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@input_options
@for_each_input(ENCODE_RUN)
def encode_command(input_path: str, output: Path, bpp: float | None, kbps: float | None, bits: int | None,
                   embed_bits: int | None, prune: float, size: str | None, loss: str | None, preset: str,
                   epochs: int | None, grid: str, embed_dim: int | None, lr: float | None, batch: int, seed: int,
                   fit_every: int, rate_aware: str, rate_lambda: float | None, model_path: str | None,
                   model_ref: bool, refine_embeddings: int, device: str,
                   overwrite: bool, as_json: bool, quiet: bool, **input_kw: Any) -> None:
    """Fit a CNeRV network to INPUT, prune, quantize and entropy-code it into OUT.cnrv.

    Reports the size (bytes, bpp: every byte of the file) and the quality of the frames the
    decoder will rebuild from the file, not of the float model.
    """
    from cnervcodec.codec import EncodeSettings, encode, encode_metadata
    from cnervcodec.format.records import ColorInfo

    started = time.monotonic()
    opts = InputOptions(**input_kw)
    check_writable(output, overwrite, (input_path,))
    if model_path is None and (model_ref or refine_embeddings):
        raise click.UsageError("--model-ref and --refine-embeddings need --model MODEL.cnrvm")
    if model_path is not None:
        _check_model_options()
        _encode_with_model(input_path, output, model_path, model_ref, refine_embeddings, embed_bits or 6, device,
                           as_json, opts, started)
        return
    rate_mode = size is None
    _check_rate_options(size, bpp, kbps, grid, embed_dim, embed_bits)
    recipe = PRESETS[preset]
    chosen_lambda = fit_lambda(rate_aware, rate_lambda, rate_mode, bits, epochs or recipe.epochs)
    clip = read_input(input_path, opts)
    fit_config = FitConfig(epochs=epochs or recipe.epochs, lr=lr or (RATE_LR if rate_mode else 2e-3), batch=batch,
                           seed=seed, fit_every=fit_every, loss=loss or "l1-ssim", rate_lambda=chosen_lambda)
    prune_config = PruneConfig(fraction=prune, epochs=recipe.prune_epochs)
    if rate_mode:
        _encode_at_rate(input_path, output, clip, opts, fit_config, prune_config, bpp, kbps, bits, preset, device,
                        as_json, quiet, started, adapt_lambda=rate_lambda is None)
        return
    settings = EncodeSettings(
        model=build_model_config("cnerv", size, clip.height, clip.width,
                                 grid=parse_grid(grid, clip.height, clip.width), embed_dim=embed_dim),
        fit=fit_config,
        compression=CompressionConfig(weight_bits=bits or 8, embed_bits=embed_bits or 6) if not chosen_lambda else
        CompressionConfig(weight_step_scale=1.0, embed_step_scale=1.0),
        prune=prune_config,
    )
    audio = _audio_for(input_path, opts, clip)
    metadata = encode_metadata(Path(input_path).name, size, preset, settings.fit, settings.compression,
                               settings.prune)
    torch_device = choose_device(device)
    progress = None if quiet else ProgressLine("encode")
    try:
        with StopFlag() as stop:
            result = encode(clip.frames, clip.fps, settings, torch_device, audio=audio, metadata=metadata,
                            color=ColorInfo(*clip.color),
                            progress=(lambda stage, p: progress(p)) if progress else None, should_stop=stop)
    finally:
        if progress is not None:
            progress.close()
    report, quality, decoded = _write_and_score(result.data, output, clip, torch_device, started)
    report["size"] = size
    if fit_every > 1:
        report.update(_seen_unseen_quality(quality, settings.fit))
        report["fit_seconds"] = round(result.fit_seconds, 3)
    notes = list(clip.notes) + ([quality.note] if quality.note else [])
    emit(report, as_json, lambda r: format_encode(r, output, notes))


def _write_and_score(data: bytes, output: Path, clip, device, started: float, model_file=None):
    """Write the .cnrv and measure the frames decoded from its bytes: the report every encode prints.
    Returns (report, quality, decoded frames)."""
    from cnervcodec.metrics import quality_report, rate_point
    from cnervcodec.codec import decode
    from cnervcodec.stream_scoring import decode_options

    leave_if_follower()  # under torchrun, rank 0 alone writes and prints
    atomic_write_bytes(output, data)
    decoded = decode(data, model_file=model_file, device=device, **decode_options(clip.frames))
    quality = quality_report(clip.frames, decoded, planes=clip.planes)
    report = {"frames": clip.n_frames, "width": clip.width, "height": clip.height, "fps": str(clip.fps),
              **rate_point(quality, len(data), clip.height, clip.width),
              "encode_seconds": round(time.monotonic() - started, 3)}
    return report, quality, decoded


FIT_OPTIONS = ("bpp", "kbps", "bits", "prune", "size", "loss", "preset", "epochs", "grid", "embed_dim", "lr", "batch",
               "seed", "fit_every", "rate_lambda")


def _check_rate_options(size: str | None, bpp: float | None, kbps: float | None, grid: str, embed_dim: int | None,
                        embed_bits: int | None) -> None:
    """Rate control chooses the network and the embedding bits; options that fix them belong to --size."""
    if bpp is not None and kbps is not None:
        raise click.UsageError("--bpp and --kbps both set the rate: pass one")
    if size is not None and (bpp is not None or kbps is not None):
        raise click.UsageError("--size fixes the network and --bpp/--kbps choose it for the rate: pass one or the other")
    if size is None and (grid != "auto" or embed_dim is not None or embed_bits is not None):
        raise click.UsageError("--grid, --embed-dim and --embed-bits shape a named --size; rate control "
                               "(--bpp/--kbps, the default) chooses them: add --size S|M|L to set them")


def _encode_at_rate(input_path: str, output: Path, clip, opts: InputOptions, fit_config: FitConfig,
                    prune_config: PruneConfig, bpp: float | None, kbps: float | None, bits: int | None, preset: str,
                    device: str, as_json: bool, quiet: bool, started: float, adapt_lambda: bool = True) -> None:
    """``encode --bpp/--kbps`` (and the default): a network solved for the rate, then the coding that lands
    the file on it (``ratecontrol``); the default lambda follows the target, a ``--lambda`` stays fixed."""
    from cnervcodec.codec import encode_at_rate, encode_metadata
    from cnervcodec.format.records import ColorInfo
    from cnervcodec.rate_estimate import coded_bits
    from cnervcodec.ratecontrol import target_from_bpp, target_from_kbps

    if kbps is not None:
        target = target_from_kbps(kbps, clip.n_frames, clip.fps, clip.height, clip.width)
    else:
        target = target_from_bpp(bpp if bpp is not None else DEFAULT_BPP, clip.n_frames, clip.height, clip.width)
    metadata = encode_metadata(Path(input_path).name, "auto", preset, fit_config, CompressionConfig(),
                               prune_config) | {"rate_target_bytes": target.bytes}
    torch_device = choose_device(device)
    progress = None if quiet else ProgressLine("encode")
    try:
        with StopFlag() as stop:
            result = encode_at_rate(clip.frames, clip.fps, target, fit_config, prune_config, torch_device,
                                    planes=clip.planes, weight_bits=bits, strict=bpp is not None or kbps is not None,
                                    color=ColorInfo(*clip.color),
                                    audio=_audio_for(input_path, opts, clip), metadata=metadata,
                                    progress=(lambda stage, p: progress(p)) if progress else None, should_stop=stop,
                                    adapt_lambda=adapt_lambda)
    finally:
        if progress is not None:
            progress.close()
    report, quality, decoded = _write_and_score(result.data, output, clip, torch_device, started)
    if fit_config.fit_every > 1:
        report.update(_seen_unseen_quality(quality, fit_config))
    video_bpp = result.video_bytes * 8 / (clip.n_frames * clip.height * clip.width)
    report.update(size="auto", target_bytes=target.bytes, target_bpp=round(target.bpp, 6),
                  video_bytes=result.video_bytes, video_bpp=round(video_bpp, 6),
                  off_target=round(result.video_bytes / target.bytes - 1, 4),
                  network={"widths": list(result.model.widths), "embed_dim": result.model.embedding.dim,
                           "grid": list(result.model.embedding.grid),
                           "decoder_params": result.model.decoder_param_count()},
                  fit_seconds=round(result.fit_seconds, 3), train_fps=round(result.train_fps, 1),
                  rate_aware=fit_config.rate_lambda > 0, **{"lambda": fit_config.rate_lambda},
                  final_lambda=None if result.rate_lambda is None else round(result.rate_lambda, 6),
                  step_scales=[result.compression.weight_step_scale, result.compression.embed_step_scale],
                  **coded_bits(result.data))
    notes = list(clip.notes) + ([quality.note] if quality.note else [])
    if bpp is None and kbps is None and report["off_target"] > RATE_TOLERANCE:
        notes.append(f"the default target ({DEFAULT_BPP} bpp) is below what the smallest network reaches on this "
                     "clip: it was coded with the smallest network")
    elif abs(report["off_target"]) > RATE_TOLERANCE:
        notes.append(f"the video part is {report['off_target']:+.1%} off the target: no bit depth of the chosen "
                     "network landed within 15 %")
    emit(report, as_json, lambda r: format_encode(r, output, notes))


def _check_model_options() -> None:
    """With --model nothing is fitted: options that only shape a fit are refused, not silently ignored."""
    ctx = click.get_current_context()
    given = [name for name in FIT_OPTIONS
             if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags}: these shape a fit, and --model skips fitting (the model fixes the network "
                               "and its weight bits); drop them or drop --model")


def _encode_with_model(input_path: str, output: Path, model_path: str, model_ref: bool, refine_steps: int,
                       embed_bits: int, device: str, as_json: bool, opts: InputOptions, started: float) -> None:
    """``encode --model``: embeddings of every frame from the model's encoder layer, no fit."""
    from cnervcodec.codec import encode_with_model, metadata
    from cnervcodec.format.records import ColorInfo
    from cnervcodec.trained_model import check_frame_size

    model_file = read_model_path(model_path)[0]
    clip = read_input(input_path, opts)
    check_frame_size(model_file, clip.width, clip.height)
    meta = metadata(source=Path(input_path).name,
                    settings={"model": model_file.sha256.hex(), "model_ref": model_ref,
                              "refine_embeddings": refine_steps, "embed_bits": embed_bits})
    torch_device = choose_device(device)
    result = encode_with_model(clip.frames, clip.fps, model_file, CompressionConfig(embed_bits=embed_bits),
                               torch_device, model_ref=model_ref, refine_steps=refine_steps,
                               color=ColorInfo(*clip.color), audio=_audio_for(input_path, opts, clip), metadata=meta)
    report, quality, _ = _write_and_score(result.data, output, clip, torch_device, started, model_file)
    report.update(model=model_file.sha256.hex(), model_ref=model_ref, refine_embeddings=refine_steps,
                  embed_seconds=round(result.fit_seconds, 3))
    notes = list(clip.notes) + ([quality.note] if quality.note else [])
    if model_ref:
        notes.append(f"decoder not stored: decode with --model {model_path} (SHA-256 {model_file.sha256.hex()[:16]}...)")
    emit(report, as_json, lambda r: format_encode(r, output, notes))


def _seen_unseen_quality(quality, fit_config: FitConfig) -> dict[str, Any]:
    """``--fit-every``: the file's per-frame scores (``quality``) averaged apart by whether the fit trained
    on the frame (no second pass over a long clip; YUV-PSNR on the source's planes, like the whole clip's)."""
    from cnervcodec.fit import training_split

    report: dict[str, Any] = {"fit_every": fit_config.fit_every}
    for name, indices in zip(("seen", "unseen"), training_split(quality.frames, fit_config)):
        picked = indices.tolist()
        mean = (lambda values: sum(values[i] for i in picked) / len(picked)) if picked else (lambda values: None)
        report[name] = {"frames": len(picked), "psnr": mean(quality.per_frame_psnr),
                        "psnr_yuv": mean(quality.per_frame_psnr_yuv), "ms_ssim": mean(quality.per_frame_ms_ssim)}
    return report


@click.command("decode", epilog=EPILOG_DECODE)
@click.argument("input_paths", metavar="IN.cnrv...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(),
              help="OUT.mp4 / .mkv (H.264), OUT.y4m (exact) or a PNG pattern such as f_%05d.png; with several "
                   "inputs a folder, OUT/STEM.mp4 each (--format; two inputs with one stem are refused).")
@decode_format_option
@click.option("--crf", type=click.IntRange(0, 51), default=None, help="H.264 quality for .mp4/.mkv [default: 12, visually lossless].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch", type=click.IntRange(1, 1024), default=8, show_default=True, help="Frames rebuilt per batch.")
@click.option("--half", is_flag=True,
              help="Run the decoder in float16 on CUDA (bfloat16 on the CPU): faster on GPUs and CPUs with "
                   "AVX512-BF16/AMX, slower on other CPUs; frames a few 8-bit levels from the exact default "
                   "(float32, bit for bit), about 0.01 dB PSNR.")
@click.option("--interpolate", type=click.IntRange(1, MAX_INTERPOLATE), default=1, show_default=True, metavar="N",
              help="N times the frame rate, same duration: N-1 frames decoded from blended embeddings between "
                   "each pair of frames, the last frame held. 1: off.")
@click.option("--interp", type=click.Choice(INTERPOLATION_MODES), default="linear", show_default=True,
              help="How --interpolate blends embeddings: straight (linear), or each block's vector turned "
                   "along a great circle with its length blended linearly (slerp).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="The .cnrvm model a stream encoded with --model-ref refers to (checked by its SHA-256).")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, metavar="K",
              help="First frame to decode (0-based): random access, no other frame is needed.")
@click.option("--frames", type=click.IntRange(min=1), default=None, metavar="N",
              help="Number of frames to decode from --start [default: to the end]; the audio is cut to match.")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@for_each_input(DECODE_RUN)
def decode_command(input_path: str, output: Path, crf: int | None, device: str, batch: int, half: bool,
                   interpolate: int, interp: str, model_path: str | None, start: int, frames: int | None, overwrite: bool,
                   as_json: bool) -> None:
    """Rebuild the video in IN.cnrv and write it to OUT (format by extension).

    Restores the original size, frame count and exact frame rate, and muxes the input's audio back
    when the file carries it. Frames are rebuilt in batches and streamed to the muxer.
    --interpolate N writes N times as many frames at N times the rate (so the audio stays in sync):
    every N-th frame is the plain decode, the ones between are decoded from blended embeddings.
    --start K --frames N decodes frames K..K+N-1 only, bit for bit as a full decode gives them.
    --half trades that exactness for speed: a float16 (CUDA) / bfloat16 (CPU) decoder.
    """
    from cnervcodec.audio import cut_track
    from cnervcodec.cli.text import interpolation_text, range_text
    from cnervcodec.codec import check_range, open_stream, render_frames
    from cnervcodec.model import half_dtype
    from cnervcodec.video_out import check_can_write, open_video_writer

    started = time.monotonic()
    check_can_write(output, overwrite, [input_path])
    data = read_cnrv_bytes(input_path)
    model_file = read_model_path(model_path)[0] if model_path is not None else None
    network = open_stream(data, model_file, model_path or "the model", interpolate=interpolate, mode=interp)
    header = network.header
    count = check_range(header.n_frames, start, frames)
    is_range = (start, count) != (0, header.n_frames)
    audio = network.audio
    if is_range:
        audio = cut_track(audio, Fraction(start) / header.fps, Fraction(count) / header.fps)
    fps = header.fps * interpolate
    torch_device = choose_device(device)
    with open_video_writer(output, width=header.model.width, height=header.model.height, fps=fps,
                           audio=audio, crf=crf) as writer:
        for batch_frames in render_frames(network, torch_device, batch, start=start, count=count,
                                          interpolate=interpolate, mode=interp, half=half):
            writer.write(batch_frames)
    seconds = time.monotonic() - started
    n_frames = writer.frames_written
    report = {"frames": n_frames, "decode_seconds": round(seconds, 3), "fps": str(fps),
              "frames_per_second": round(n_frames / seconds, 2) if seconds > 0 else None}
    notes = list(writer.notes)
    if is_range:
        report.update(start=start, stream_frames=header.n_frames)
    if half:
        report["half"] = str(half_dtype(torch_device)).removeprefix("torch.")
        notes.append(f"--half: decoded in {report['half']}, not bit for bit the exact (float32) frames")
    if interpolate > 1:
        report.update(source_frames=count, interpolate=interpolate, interp=interp)
        if start + count == header.n_frames:
            notes.append(f"the last frame is held for {interpolate - 1} more frames (it has nothing to interpolate "
                         f"towards), so the video keeps its {float(count / header.fps):.3f} s")
    emit(report, as_json, lambda r: "\n".join(
        [f"{output}: {r['frames']} frames at {r['fps']} fps{interpolation_text(r)}{range_text(r)}, decoded in "
         f"{r['decode_seconds']:.2f} s ({r['frames_per_second']} frames/s)"] + [f"  note: {n}" for n in notes]))


@click.command("info", epilog=EPILOG_INFO)
@click.argument("input_path", metavar="IN.cnrv")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info_command(input_path: str, as_json: bool) -> None:
    """Show a .cnrv file's version, chunk table, header fields and where its bytes go."""
    from cnervcodec.cli.text import format_info
    from cnervcodec.format.describe import container_info
    from cnervcodec.format.stream import read_container

    data = read_cnrv_bytes(input_path)
    info = container_info(read_container(data), len(data))
    emit(info, as_json, format_info)
