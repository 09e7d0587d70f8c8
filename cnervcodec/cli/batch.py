"""Many clips per run: ``cnerv encode A.mp4 B.mkv -o OUT/`` and ``cnerv decode A.cnrv B.cnrv -o OUT/``.

``for_each_input`` turns a one-clip command into one that takes INPUT...: with one input it is the
one-clip command unchanged (``-o`` names the file); with several, ``-o`` is a folder (created if
missing) and each input is written to ``OUT/STEM.SUFFIX``. Two inputs with the same stem are
refused, and every output is checked (over an input, over an existing file without ``-y``) before
any work starts, so a refusal loses nothing. Each clip then runs through the one-clip command: a
clip that fails with a ``CnervError`` is reported on one line and the others go on; the run ends
with a summary (a JSON list under ``--json``, else a line) and exit status 1 if any clip failed.
Ctrl-C ends the whole run: the fit it stops (``FitInterrupted``) and ``KeyboardInterrupt`` pass through.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cnervcodec.atomic import check_writable
from cnervcodec.cli.common import EMIT_SINK, under_torchrun
from cnervcodec.errors import BadInputError, CnervError, one_line


@dataclass(frozen=True)
class BatchSpec:
    """How one command names and checks the outputs of a run over several inputs."""

    done: str  # the summary's verb: "encoded"
    suffix: Callable[[dict[str, Any]], str]  # the output's name after the input's stem, from the options
    check: Callable[[Path, bool, Sequence[str]], None]  # refuses an output (path, overwrite, inputs)
    options: tuple[str, ...] = ()  # options that only name folder outputs: kept from the one-clip command


def _check_video(target: Path, overwrite: bool, inputs: Sequence[str]) -> None:
    from cnervcodec.video_out import check_can_write

    check_can_write(target, overwrite, inputs)


DECODE_FORMATS = {"mp4": ".mp4", "mkv": ".mkv", "y4m": ".y4m", "png": "_%05d.png"}  # --format: the name's tail
ENCODE_RUN = BatchSpec("encoded", lambda options: ".cnrv", check_writable)
DECODE_RUN = BatchSpec("decoded", lambda options: DECODE_FORMATS[options["out_format"]], _check_video, ("out_format",))


def decode_format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``decode --format``: the container of each output when -o is a folder (with one input, -o's name says)."""
    return click.option(
        "--format", "out_format", type=click.Choice(list(DECODE_FORMATS)), default="mp4", show_default=True,
        help="With several inputs: write OUT/STEM.mp4, .mkv, .y4m (exact) or PNGs OUT/STEM_00001.png, ...; "
             "with one input, -o's extension picks the format.")(command)


def for_each_input(spec: BatchSpec) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Wrap a one-clip command ``f(input_path, output: Path, overwrite, as_json, **options)`` into one
    taking ``input_paths`` (click's INPUT...) and ``output`` as typed (a trailing '/' kept)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def run(input_paths: tuple[str, ...], output: str, overwrite: bool, as_json: bool, **options: Any) -> None:
            folder_options = {name: options.pop(name) for name in spec.options}
            if len(input_paths) == 1:
                _check_one_clip(output, folder_options)
                command(input_path=input_paths[0], output=Path(output), overwrite=overwrite, as_json=as_json,
                        **options)
                return
            if under_torchrun():  # ranks 1.. leave after a clip's fit
                raise click.UsageError("under torchrun, give one input per run (the ranks share one fit)")
            folder = output_folder(output)
            outputs = plan_outputs(input_paths, folder, spec.suffix(folder_options))
            check_outputs(outputs, input_paths, overwrite, spec.check)
            _make_folder(folder)
            results = [_run_clip(command, source, target, overwrite, as_json, options)
                       for source, target in zip(input_paths, outputs)]
            _summarise(results, folder, spec.done, as_json)

        return run

    return decorate


def output_folder(output: str) -> Path:
    """-o as a folder for several inputs: an existing folder, a name ending in '/', or a new name
    without an extension (``-o x.cnrv`` is more likely a slip than a folder to make)."""
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"-o {output}: with several inputs -o is a folder, and {output} is a file")
    if not folder.exists() and folder.suffix and not output.endswith(("/", os.sep)):
        raise click.UsageError(f"-o {output}: with several inputs -o is a folder; end it with '/' to make "
                               f"{output}/ (or give the inputs to separate runs)")
    return folder


def plan_outputs(inputs: Sequence[str], folder: Path, suffix: str) -> list[Path]:
    """``folder/STEM+suffix`` for each input; two inputs that would share an output are refused (names
    compared without case: a.mp4 and A.mkv are one file on macOS and Windows)."""
    outputs, seen = [], {}
    for source in inputs:
        target = folder / (Path(source).stem + suffix)
        key = target.name.casefold()
        if key in seen:
            raise click.UsageError(f"{seen[key]} and {source} would both write {target}: rename one, or give "
                                   "them to separate runs")
        seen[key] = source
        outputs.append(target)
    return outputs


def check_outputs(outputs: Sequence[Path], inputs: Sequence[str], overwrite: bool,
                  check: Callable[[Path, bool, Sequence[str]], None]) -> None:
    """Every refusal at once, before any work (a folder that is still to be made holds nothing to lose)."""
    if not outputs or not outputs[0].parent.is_dir():
        return
    problems = []
    for target in outputs:
        try:
            check(target, overwrite, inputs)
        except BadInputError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise BadInputError(problems[0])
    if problems:
        raise BadInputError(f"{len(problems)} outputs refused, nothing written: " + "; ".join(problems))


def _check_one_clip(output: str, folder_options: dict[str, Any]) -> None:
    """One input keeps the one-clip command: -o names the file, and folder-only options are refused."""
    ctx = click.get_current_context()
    given = [param.opts[0] for param in ctx.command.params if param.name in folder_options
             and ctx.get_parameter_source(param.name) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:
        flags = ", ".join(given)
        raise click.UsageError(f"{flags} names the outputs of several inputs in a folder; with one input, "
                               "-o names the output file")
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        raise click.UsageError(f"-o {output} is a folder: with one input, -o names the output file (a folder "
                               "takes several inputs)")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInputError(f"cannot make folder {folder} ({error.strerror or error})") from None


def _run_clip(command: Callable[..., None], source: str, target: Path, overwrite: bool, as_json: bool,
              options: dict[str, Any]) -> dict[str, Any]:
    """One clip through the one-clip command: its report (captured under --json, printed as today
    otherwise) with "input" and "output", or {"input", "error"} for a ``CnervError``."""
    ctx = click.get_current_context()
    reports: list[dict[str, Any]] = []
    ctx.meta[EMIT_SINK] = reports.append if as_json else None
    try:
        command(input_path=source, output=target, overwrite=overwrite, as_json=as_json, **options)
    except CnervError as error:
        from cnervcodec.fit import FitInterrupted

        if isinstance(error, FitInterrupted):  # Ctrl-C stopped the fit: the run stops too
            raise
        message = one_line(error) or type(error).__name__
        click.echo(f"cnerv: error: {message}", err=True)
        return {"input": source, "error": message}
    finally:
        ctx.meta.pop(EMIT_SINK, None)
    return {"input": source, "output": str(target), **(reports[-1] if reports else {})}


def _summarise(results: list[dict[str, Any]], folder: Path, done: str, as_json: bool) -> None:
    """The JSON list, or the summary line; exit status 1 when a clip failed."""
    failed = [r["input"] for r in results if "error" in r]
    if as_json:
        click.echo(json.dumps(results, allow_nan=False))
    else:
        line = f"{done} {len(results) - len(failed)} of {len(results)} clips into {folder}"
        click.echo(line + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        sys.exit(1)
