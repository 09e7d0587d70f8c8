"""``cnerv model``: model files (``.cnrvm``) for reuse: export a decode-only model, show one.

Models come from ``cnerv fit ... -o MODEL.cnrvm``; they encode new clips with ``cnerv encode
--model`` and decode streams that refer to them with ``cnerv decode --model``.
"""

from __future__ import annotations

from pathlib import Path

import click

from cnervcodec.atomic import atomic_write_bytes, check_writable
from cnervcodec.cli.common import emit, read_cnrv_bytes, read_model_path

EPILOG = """\b
Examples:
  cnerv fit a.mp4 b.mp4 --scale 320x180 -o domain.cnrvm     # a model for a camera or a domain
  cnerv encode c.mp4 --scale 320x180 --model domain.cnrvm --model-ref -o c.cnrv
  cnerv decode c.cnrv --model domain.cnrvm -o c.mp4
  cnerv model info domain.cnrvm
  cnerv model export clip.cnrv -o clip_decoder.cnrvm        # decode-only: the stream's decoder
  cnerv model export clip.safetensors -o clip.cnrvm --bits 6   # a float model (cnerv fit -o) made reusable
"""


@click.group("model", epilog=EPILOG)
def model_group() -> None:
    """Model files (.cnrvm): a trained CNeRV network that encodes new clips in one forward pass."""


@model_group.command("info")
@click.argument("input_path", metavar="MODEL.cnrvm")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def model_info_command(input_path: str, as_json: bool) -> None:
    """Show a model's hash (what referring streams name), frame size, network and sizes."""
    from cnervcodec.cli.text import format_model_info
    from cnervcodec.format.describe import model_info

    model_file, n_bytes = read_model_path(input_path)
    emit(model_info(model_file, n_bytes), as_json, format_model_info)


@model_group.command("export")
@click.argument("input_path", metavar="IN.cnrv|IN.safetensors")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .cnrvm to write.")
@click.option("--bits", type=click.IntRange(1, 16), default=8, show_default=True,
              help="Decoder weight bits, for a float .safetensors model (a .cnrv's decoder is already quantized).")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def model_export_command(input_path: str, output: Path, bits: int, overwrite: bool, as_json: bool) -> None:
    """Write a .cnrvm model from IN.cnrv (decode-only) or from a float IN.safetensors (cnerv fit -o).

    From a .cnrv: the stream's decoder as a decode-only model (a .cnrv holds no encoder layer); its
    hash is the stream's decoder hash, so it decodes streams encoded with --model-ref against the
    full model the stream came from. From a .safetensors: the whole network, decoder quantized to
    --bits, encoder in float32: a model that encodes new clips (cnerv encode --model).
    """
    from cnervcodec.codec import metadata
    from cnervcodec.format.model_file import write_model_file

    check_writable(output, overwrite, (input_path,))
    if Path(input_path).suffix == ".safetensors":
        from cnervcodec.config import CompressionConfig
        from cnervcodec.safetensors_files import load_model
        from cnervcodec.trained_model import model_file_from_network

        network, _, info = load_model(Path(input_path))
        meta = metadata(exported_from=Path(input_path).name, fit=info.get("fit_config"))
        model_file = model_file_from_network(network, CompressionConfig(weight_bits=bits), meta)
    else:
        if click.get_current_context().get_parameter_source("bits") != click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--bits applies to a .safetensors input: a .cnrv's decoder is already quantized")
        from cnervcodec.trained_model import model_file_from_stream

        model_file = model_file_from_stream(read_cnrv_bytes(input_path), metadata(exported_from=Path(input_path).name))
    data = write_model_file(model_file)
    atomic_write_bytes(output, data)
    has_encoder = model_file.encoder is not None
    emit({"model": str(output), "sha256": model_file.sha256.hex(), "bytes": len(data), "has_encoder": has_encoder},
         as_json, lambda r: f"{r['model']}: {'' if has_encoder else 'decode-only '}model {r['sha256']}, "
                            f"{r['bytes']:,} bytes")
