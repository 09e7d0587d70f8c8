"""``cnerv model``: model files (``.cnrvm``) for reuse: export a decode-only model, show one.

Models come from ``cnerv fit ... -o MODEL.cnrvm``; they encode new clips with ``cnerv encode
--model`` and decode streams that refer to them with ``cnerv decode --model``.
"""

from __future__ import annotations

from pathlib import Path

import click

from cnervcodec import __version__
from cnervcodec.atomic import atomic_write_bytes
from cnervcodec.cli_common import check_output, emit, read_bounded_file

MAX_CNRVM_BYTES = 4 << 30

EPILOG = """\b
Examples:
  cnerv fit a.mp4 b.mp4 --scale 320x180 -o domain.cnrvm     # a model for a camera or a domain
  cnerv encode c.mp4 --scale 320x180 --model domain.cnrvm --model-ref -o c.cnrv
  cnerv decode c.cnrv --model domain.cnrvm -o c.mp4
  cnerv model info domain.cnrvm
  cnerv model export clip.cnrv -o clip_decoder.cnrvm        # decode-only: the stream's decoder
"""


def read_model_path(path: str | Path):
    """Parse a .cnrvm file (corrupt or unsupported files raise the container's errors)."""
    from cnervcodec.modelfile import read_model_file

    data = read_bounded_file(path, MAX_CNRVM_BYTES, ".cnrvm")
    return read_model_file(data), len(data)


@click.group("model", epilog=EPILOG)
def model_group() -> None:
    """Model files (.cnrvm): a trained CNeRV network that encodes new clips in one forward pass."""


@model_group.command("info")
@click.argument("input_path", metavar="MODEL.cnrvm")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def model_info_command(input_path: str, as_json: bool) -> None:
    """Show a model's hash (what referring streams name), frame size, network and sizes."""
    from cnervcodec.info import format_model_info, model_info

    model_file, n_bytes = read_model_path(input_path)
    emit(model_info(model_file, n_bytes), as_json, format_model_info)


@model_group.command("export")
@click.argument("input_path", metavar="IN.cnrv")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .cnrvm to write.")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def model_export_command(input_path: str, output: Path, overwrite: bool, as_json: bool) -> None:
    """Write the decoder of IN.cnrv as a decode-only model (a .cnrv holds no encoder layer).

    Its hash is the stream's decoder hash: it decodes streams encoded with --model-ref against the
    full model the stream came from. To encode new clips, use a model from cnerv fit -o M.cnrvm.
    """
    from cnervcodec.cli_codec import read_cnrv_bytes
    from cnervcodec.container import read_container
    from cnervcodec.modelfile import write_model_file
    from cnervcodec.reuse import model_file_from_container

    check_output(output, overwrite, (input_path,))
    container = read_container(read_cnrv_bytes(input_path))
    model_file = model_file_from_container(container, {"encoder": f"cnervcodec {__version__}",
                                                       "exported_from": Path(input_path).name})
    data = write_model_file(model_file)
    atomic_write_bytes(output, data)
    emit({"model": str(output), "sha256": model_file.sha256.hex(), "bytes": len(data), "has_encoder": False},
         as_json, lambda r: f"{r['model']}: decode-only model {r['sha256']}, {r['bytes']:,} bytes")
