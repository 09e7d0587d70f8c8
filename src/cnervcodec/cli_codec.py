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

from cnervcodec import __version__
from cnervcodec.atomic import atomic_write_bytes
from cnervcodec.cli_common import (
    InputOptions,
    ProgressLine,
    StopFlag,
    check_output,
    choose_device,
    emit,
    input_options,
    read_input,
    size_help,
)
from cnervcodec.config import PRESETS, SIZES, CompressionConfig, FitConfig, build_model_config, parse_grid
from cnervcodec.errors import BadInputError

MAX_CNRV_BYTES = 4 << 30

EPILOG_ENCODE = """\b
Examples:
  cnerv encode tests/data/carphone_qcif.mp4 -o carphone.cnrv --frames 30 --preset fast
  cnerv encode clip.mp4 -o clip.cnrv --bits 6 --prune 0.2 --json
  cnerv encode big.mp4 -o big.cnrv --scale 640x360 --size M --preset slow
  cnerv encode cars.yuv --video-size 320x240 --fps 30 -o cars.cnrv
"""

EPILOG_DECODE = """\b
Examples:
  cnerv decode clip.cnrv -o clip.mp4            # H.264, visually lossless (CRF 12), audio muxed back
  cnerv decode clip.cnrv -o clip.y4m            # exact: the decoder's 8-bit RGB frames, bit for bit
  cnerv decode clip.cnrv -o frames/f_%05d.png   # one PNG per frame
"""

EPILOG_INFO = """\b
Examples:
  cnerv info clip.cnrv
  cnerv info clip.cnrv --json
"""


def read_cnrv_bytes(path: str) -> bytes:
    """A .cnrv file's bytes, refusing missing files and sizes no .cnrv can have."""
    file = Path(path)
    if not file.is_file():
        raise BadInputError(f"{path}: no such file")
    if file.stat().st_size > MAX_CNRV_BYTES:
        raise BadInputError(f"{path}: larger than {MAX_CNRV_BYTES} bytes, not a .cnrv file")
    return file.read_bytes()


def _audio_for(input_path: str, opts: InputOptions, clip) -> Any:
    """The input's audio over the selected frames' time span (None for raw video or no audio)."""
    from cnervcodec.audio import read_audio_track

    if opts.video_size is not None:
        return None
    start_s = Fraction(opts.start) / clip.source_fps
    duration_s = Fraction(clip.n_frames * opts.step) / clip.source_fps
    return read_audio_track(input_path, start_seconds=start_s, duration_seconds=duration_s)


@click.command("encode", epilog=EPILOG_ENCODE)
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .cnrv file to write.")
@click.option("--bits", type=click.IntRange(1, 16), default=8, show_default=True, help="Bits per decoder weight (eq. 4 quantization).")
@click.option("--embed-bits", type=click.IntRange(1, 16), default=6, show_default=True, help="Bits per embedding value.")
@click.option("--prune", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True, help="Fraction of decoder weights to prune (then fine-tune).")
@click.option("--size", type=click.Choice(list(SIZES)), default="S", show_default=True, help=size_help())
@click.option("--preset", type=click.Choice(list(PRESETS)), default="medium", show_default=True,
              help="fast: 30 fit epochs + 5 after pruning; medium: 100 + 10; slow: 300 + 30.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Fit epochs [default: from --preset].")
@click.option("--grid", default="auto", show_default=True, help="Embedding block grid ROWSxCOLS; auto: blocks of at most 240 px.")
@click.option("--embed-dim", type=click.IntRange(1, 4096), default=None, help="Embedding values per block (d) [default: size preset].")
@click.option("--lr", type=click.FloatRange(min=1e-8, max=1.0), default=2e-3, show_default=True, help="Peak learning rate.")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Frames per step.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@input_options
def encode_command(input_path: str, output: Path, bits: int, embed_bits: int, prune: float, size: str, preset: str,
                   epochs: int | None, grid: str, embed_dim: int | None, lr: float, batch: int, seed: int,
                   device: str, overwrite: bool, as_json: bool, quiet: bool, **input_kw: Any) -> None:
    """Fit a CNeRV network to INPUT, prune, quantize and entropy-code it into OUT.cnrv.

    Reports the size (bytes, bpp: every byte of the file) and the quality of the frames the
    decoder will rebuild from the file, not of the float model.
    """
    from cnervcodec.codec import EncodeSettings, encode, encode_metadata
    from cnervcodec.container import ColorInfo, write_container
    from cnervcodec.metrics import bpp, quality_report

    started = time.monotonic()
    opts = InputOptions(**input_kw)
    check_output(output, overwrite, (input_path,))
    clip = read_input(input_path, opts)
    recipe = PRESETS[preset]
    settings = EncodeSettings(
        model=build_model_config("cnerv", size, clip.height, clip.width,
                                 grid=parse_grid(grid, clip.height, clip.width), embed_dim=embed_dim),
        fit=FitConfig(epochs=epochs or recipe.epochs, lr=lr, batch=batch, seed=seed).validate(),
        compression=CompressionConfig(weight_bits=bits, embed_bits=embed_bits, prune=prune,
                                      prune_epochs=recipe.prune_epochs).validate(),
    )
    audio = _audio_for(input_path, opts, clip)
    metadata = encode_metadata(Path(input_path).name, size, preset, settings.fit, settings.compression,
                               f"cnervcodec {__version__}")
    progress = None if quiet else ProgressLine("encode")
    try:
        with StopFlag() as stop:
            result = encode(clip.frames, clip.fps, settings, choose_device(device), audio=audio, metadata=metadata,
                            color=ColorInfo(*clip.color),
                            progress=(lambda stage, p: progress(p)) if progress else None, should_stop=stop)
    finally:
        if progress is not None:
            progress.close()
    data = write_container(result.container)
    atomic_write_bytes(output, data)
    quality = quality_report(clip.frames, result.decoded)
    report = {
        "frames": clip.n_frames, "width": clip.width, "height": clip.height, "fps": str(clip.fps),
        "bytes": len(data), "bpp": bpp(len(data), clip.n_frames, clip.height, clip.width),
        "psnr": quality.psnr, "psnr_yuv": quality.psnr_yuv, "ms_ssim": quality.ms_ssim,
        "encode_seconds": round(time.monotonic() - started, 3),
    }
    notes = list(clip.notes) + ([quality.note] if quality.note else [])
    emit(report, as_json, lambda r: _format_encode(r, output, notes))


def _format_encode(r: dict[str, Any], output: Path, notes: list[str]) -> str:
    lines = [
        f"{output}: {r['frames']} frames {r['width']}x{r['height']} at {r['fps']} fps",
        f"  size     {r['bytes']:,} bytes, {r['bpp']:.4f} bpp",
        f"  quality  PSNR {r['psnr']:.2f} dB  PSNR-YUV {r['psnr_yuv']:.2f} dB  MS-SSIM {r['ms_ssim']:.4f} (decoded from the file)",
        f"  time     {r['encode_seconds']:.1f} s",
    ]
    lines.extend(f"  note: {n}" for n in notes)
    return "\n".join(lines)


@click.command("decode", epilog=EPILOG_DECODE)
@click.argument("input_path", metavar="IN.cnrv")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="OUT.mp4 / .mkv (H.264), OUT.y4m (exact) or a PNG pattern such as f_%05d.png.")
@click.option("--crf", type=click.IntRange(0, 51), default=None, help="H.264 quality for .mp4/.mkv [default: 12, visually lossless].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch", type=click.IntRange(1, 1024), default=8, show_default=True, help="Frames rebuilt per batch.")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def decode_command(input_path: str, output: Path, crf: int | None, device: str, batch: int, overwrite: bool,
                   as_json: bool) -> None:
    """Rebuild the video in IN.cnrv and write it to OUT (format by extension).

    Restores the original size, frame count and exact frame rate, and muxes the input's audio back
    when the file carries it. Frames are rebuilt in batches and streamed to the muxer.
    """
    from cnervcodec.codec import decoding_network, render_frames
    from cnervcodec.container import read_container
    from cnervcodec.video_out import check_can_write, open_video_writer

    started = time.monotonic()
    check_can_write(output, overwrite, [input_path])
    container = read_container(read_cnrv_bytes(input_path))
    header = container.header
    network = decoding_network(container)
    with open_video_writer(output, width=header.model.width, height=header.model.height, fps=header.fps,
                           audio=container.audio, crf=crf) as writer:
        for frames in render_frames(network, choose_device(device), batch=batch):
            writer.write(frames)
    seconds = time.monotonic() - started
    report = {"frames": header.n_frames, "decode_seconds": round(seconds, 3), "fps": str(header.fps),
              "frames_per_second": round(header.n_frames / seconds, 2) if seconds > 0 else None}
    notes = list(writer.notes)
    emit(report, as_json, lambda r: "\n".join(
        [f"{output}: {r['frames']} frames at {r['fps']} fps, decoded in {r['decode_seconds']:.2f} s "
         f"({r['frames_per_second']} frames/s)"] + [f"  note: {n}" for n in notes]))


@click.command("info", epilog=EPILOG_INFO)
@click.argument("input_path", metavar="IN.cnrv")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info_command(input_path: str, as_json: bool) -> None:
    """Show a .cnrv file's version, chunk table, header fields and where its bytes go."""
    from cnervcodec.container import read_container
    from cnervcodec.info import container_info, format_info

    data = read_cnrv_bytes(input_path)
    info = container_info(read_container(data), len(data))
    emit(info, as_json, format_info)
