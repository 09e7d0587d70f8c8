"""``cnerv bd-rate``: CNeRV against x264/x265 (and AV1) on the user's own clip, or BD metrics of two curve files.

Parses options, calls ``rdcompare`` / ``bdrate`` and prints a table, JSON, a results file and a plot.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cnervcodec.atomic import atomic_write_bytes, check_writable
from cnervcodec.cli.common import (
    InputOptions,
    ProgressLine,
    StopFlag,
    choose_device,
    emit,
    input_options,
    rate_aware_options,
    resolve_rate_aware,
    read_input,
    size_help,
)
from cnervcodec.config import PRESETS, SIZES, FitConfig, build_model_config, parse_grid
from cnervcodec.errors import BadInputError
from cnervcodec.ratecontrol import RATE_LOSS, RATE_LR

EPILOG = """\b
Examples:
  cnerv bd-rate tests/data/carphone_qcif.mp4 --frames 30 --json --plot rd.png
  cnerv bd-rate clip.mp4 --frames 60 --anchors x264,x265,av1 --out results.json
  cnerv bd-rate clip.mp4 --scale 320x180 --preset slow --anchor-preset veryslow
  cnerv bd-rate --curves anchor.csv test.json --method akima --json

\b
Negative BD-rate: CNeRV needs fewer bits for the same quality. BD metrics use YUV 4:2:0 PSNR
(6Y+U+V)/8 by default; rates are whole .cnrv files and anchor elementary streams (no MP4 boxes).
"""


def _check_outputs(paths: list[Path | None], overwrite: bool, inputs: tuple[str, ...]) -> None:
    for path in paths:
        if path is not None:
            check_writable(path, overwrite, inputs)


def _keeper(folder: Path | None, overwrite: bool, input_path: str):
    """``--keep DIR``: a callback that writes each coded stream into DIR (atomically, no silent overwrite)."""
    if folder is None:
        return None
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise BadInputError(f"--keep {folder} is not empty: choose an empty folder or pass -y to overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(input_path).resolve()

    def keep(name: str, data: bytes) -> None:
        if (folder / name).resolve() == source:
            raise BadInputError(f"{folder / name}: refusing to write over the input")
        atomic_write_bytes(folder / name, data)

    return keep


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _format_curves(r: dict[str, Any]) -> str:
    lines = [f"BD ({r['method']}) of TEST against ANCHOR:",
             f"  BD-rate  {_fmt(r['bd_rate'], '+.2f', ' %')}   (negative: the test needs fewer bits)",
             f"  BD-PSNR  {_fmt(r['bd_psnr'], '+.3f', ' dB')}",
             f"  overlap  {r['overlap']:.0%} of the distortion range, {r['overlap_log_rate']:.0%} of the log-rate range"]
    lines += [f"  warning: {r['warning']}"] if "warning" in r else []
    lines += [f"  no value: {r['reason']}"] if "reason" in r else []
    return "\n".join(lines)


def _point_row(name: str, p: dict[str, Any]) -> str:
    what = f"CRF {p['crf']}" if "crf" in p else (f"--bpp {p['target_bpp']:g} ({p['weight_bits']}/{p['embed_bits']} bits, lambda {p['lambda']:g})" if "target_bpp" in p else f"bits {p['bits']} prune {p['prune']:g}")
    return (f"  {name:<6} {what:<18} {p['bytes']:>10,} B {p['bpp']:>8.4f} bpp  PSNR {p['psnr']:6.2f}  "
            f"YUV {p['psnr_yuv']:6.2f}  MS-SSIM {p['ms_ssim']:.4f}")


def _format_run(r: dict[str, Any], anchor_names: list[str]) -> str:
    i = r["input"]
    lines = [f"{i['source']}: {i['frames']} frames {i['width']}x{i['height']}; BD method {r['method']}, "
             f"BD on YUV-PSNR (6Y+U+V)/8; {r['seconds']:.0f} s", "points:"]
    lines += [_point_row("cnerv", p) for p in r["cnerv"]["points"]]
    for name in anchor_names:
        lines += [_point_row(name, p) for p in r[name]["points"]]
    lines.append("CNeRV against:")
    for name in anchor_names:
        a = r[name]
        lines.append(f"  {name:<6} BD-rate {_fmt(a['bd_rate_psnr'], '+.1f', ' %'):>10}  BD-PSNR "
                     f"{_fmt(a['bd_psnr'], '+.2f', ' dB'):>9}  BD-rate MS-SSIM {_fmt(a['bd_rate_ms_ssim'], '+.1f', ' %'):>10}"
                     f"  overlap {a['overlap']:.0%} (rate axis {a['overlap_log_rate']:.0%})  "
                     f"[{a['settings']['encoder']} {a['settings']['preset']}]")
        lines += [f"    note: {n}" for n in a["notes"]]
    return "\n".join(lines)


def _run_curves(curves: tuple[Path, Path], method: str, as_json: bool) -> None:
    from cnervcodec.eval.curves import curves_report, load_curve

    anchor, test = (load_curve(path) for path in curves)
    emit(curves_report(anchor, test, method), as_json, _format_curves)


@click.command("bd-rate", epilog=EPILOG)
@click.argument("input_path", metavar="[INPUT]", required=False)
@click.option("--curves", nargs=2, type=click.Path(dir_okay=False, path_type=Path), metavar="ANCHOR TEST",
              help="BD metrics of two curve files (JSON {\"points\": [{\"bpp\", \"psnr\"}]} or CSV bpp,psnr) instead of encoding.")
@click.option("--method", type=click.Choice(["pchip", "akima", "cubic"]), default="pchip", show_default=True,
              help="Interpolation: pchip (JVET CTC), akima, or cubic (the original Bjontegaard).")
@click.option("--anchors", "anchor_list", default="x264,x265", show_default=True, help="Anchors: any of x264,x265,av1.")
@click.option("--anchor-preset", type=click.Choice(["ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                                                    "slow", "slower", "veryslow", "placebo"]),
              default="medium", show_default=True, help="x264/x265 preset (mapped to SVT-AV1's numbers for av1).")
@click.option("--anchor-crfs", default=None, help="Starting CRF ladder, e.g. 22,27,32,37 [default: per codec]; extended to cover CNeRV's range.")
@click.option("--bpp-ladder", default="0.02,0.04,0.08,0.16", show_default=True,
              help="Target rates: one rate-controlled fit each (cnerv encode --bpp B), a network sized for each.")
@click.option("--points", type=click.IntRange(2, 16), default=4, show_default=True,
              help="With --size: CNeRV rate points to keep from the bits x prune ladder.")
@click.option("--bits-ladder", default=None,
              help="One fit of a named --size coded at these weight bit depths instead of the --bpp ladder "
                   "[default with --size: 8,6,5,4].")
@click.option("--prune-ladder", default=None, help="With --size: prune fractions tried [default: 0,0.2,0.4].")
@click.option("--embed-bits", type=click.IntRange(1, 16), default=6, show_default=True, help="With --size.")
@click.option("--size", type=click.Choice(list(SIZES)), default=None,
              help="One fit of a named size, re-coded at --bits-ladder x --prune-ladder (the old comparison). "
                   + size_help())
@click.option("--preset", type=click.Choice(list(PRESETS)), default="medium", show_default=True,
              help="CNeRV fit length: fast 30 epochs (+5 after pruning), medium 100 (+10), slow 300 (+30).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Fit epochs [default: from --preset].")
@click.option("--grid", default="auto", show_default=True, help="Embedding block grid ROWSxCOLS.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@rate_aware_options
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the RD curves as a PNG (needs matplotlib).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the full results (points, settings, candidates) as JSON.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Save every coded stream here: the .cnrv files and the anchors' .264/.265/.obu elementary streams.")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite existing --plot / --out / --keep files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@input_options
def bd_rate_command(input_path: str | None, curves: tuple[Path, Path] | None, method: str, anchor_list: str,
                    anchor_preset: str, anchor_crfs: str | None, bpp_ladder: str, points: int,
                    bits_ladder: str | None, prune_ladder: str | None, embed_bits: int, size: str | None, preset: str, epochs: int | None, grid: str, seed: int,
                    rate_aware: str, rate_lambda: float | None, device: str,
                    plot: Path | None, out: Path | None, keep: Path | None, overwrite: bool, as_json: bool, quiet: bool,
                    **input_kw: Any) -> None:
    """Rate-distortion of CNeRV against x264 / x265 on INPUT: points, BD-rate, BD-PSNR, plot.

    CNeRV is encoded once per --bpp-ladder rate, each with a network sized for it (cnerv encode --bpp),
    or with --size fitted once and coded at several bits/prune settings; the anchors are encoded in
    process at a CRF ladder that covers CNeRV's quality and rate ranges. Every point is scored on the
    same frames with the same PSNR definitions, YUV-PSNR on the source's own 4:2:0 planes.
    """
    if (input_path is None) == (curves is None):
        raise click.UsageError("give either INPUT (encode and compare) or --curves ANCHOR TEST")
    if curves is not None:
        _run_curves(curves, method, as_json)
        return
    from cnervcodec.eval.rdcompare import RdSettings, ladder_values

    fixed_size = size is not None or bits_ladder is not None or prune_ladder is not None
    ladder_mode = None if fixed_size else ladder_values(bpp_ladder, float, "--bpp-ladder")
    size = size or "S"
    rd = RdSettings(
        anchors=ladder_values(anchor_list, str.strip, "--anchors"), points=points, anchor_preset=anchor_preset,
        anchor_crfs=ladder_values(anchor_crfs, int, "--anchor-crfs") if anchor_crfs else None, method=method,
        bits_ladder=ladder_values(bits_ladder or "8,6,5,4", int, "--bits-ladder"),
        prune_ladder=ladder_values(prune_ladder or "0,0.2,0.4", float, "--prune-ladder"), embed_bits=embed_bits,
        prune_epochs=PRESETS[preset].prune_epochs, bpp_ladder=ladder_mode,
        rate_aware=resolve_rate_aware(rate_aware, epochs or PRESETS[preset].epochs, rate_lambda) == "on"
        and ladder_mode is not None, rate_lambda=rate_lambda)
    if rate_lambda is not None and not rd.rate_aware:
        raise click.UsageError("--lambda weighs the rate term of rate-aware training: it needs --rate-aware on "
                               "and the --bpp-ladder (not --size)")
    fit_options = CnervFitOptions(size=size, preset=preset, epochs=epochs, grid=grid, seed=seed, device=device)
    outputs = RunOutputs(plot=plot, out=out, keep=keep, overwrite=overwrite, as_json=as_json, quiet=quiet)
    _run_input(input_path, rd, fit_options, outputs, InputOptions(**input_kw))


@dataclass(frozen=True)
class CnervFitOptions:
    """How ``cnerv bd-rate`` fits the CNeRV side (once, for the whole ladder)."""

    size: str
    preset: str
    epochs: int | None  # None: the preset's
    grid: str
    seed: int
    device: str


@dataclass(frozen=True)
class RunOutputs:
    """What ``cnerv bd-rate`` writes and prints besides its summary."""

    plot: Path | None
    out: Path | None
    keep: Path | None
    overwrite: bool
    as_json: bool
    quiet: bool


def _run_input(input_path: str, rd, fit_options: CnervFitOptions, outputs: RunOutputs, opts: InputOptions) -> None:
    from cnervcodec.eval.rdcompare import plot_curves, run

    o, plot, out = fit_options, outputs.plot, outputs.out
    _check_outputs([plot, out], outputs.overwrite, (input_path,))
    keeper = _keeper(outputs.keep, outputs.overwrite, input_path)
    if plot is not None:
        from cnervcodec.eval.rdplot import require_matplotlib

        require_matplotlib()
    clip = read_input(input_path, opts)
    if clip.width % 2 or clip.height % 2:
        raise BadInputError(f"{input_path}: {clip.width}x{clip.height} has an odd side; the 4:2:0 anchors need "
                            f"even sides: use --scale to an even size")
    model = build_model_config("cnerv", o.size, clip.height, clip.width, grid=parse_grid(o.grid, clip.height, clip.width))
    epochs = o.epochs or PRESETS[o.preset].epochs
    fit_config = (FitConfig(epochs=epochs, seed=o.seed) if rd.bpp_ladder is None else
                  FitConfig(epochs=epochs, seed=o.seed, lr=RATE_LR, loss=RATE_LOSS))
    log = (lambda text: None) if outputs.quiet else (lambda text: click.echo(text, err=True))
    progress = None if outputs.quiet else ProgressLine("fit")
    started = time.monotonic()
    try:
        with StopFlag() as stop:
            report = run(clip.frames, clip.fps, model, fit_config, rd, choose_device(o.device),
                         source_name=Path(input_path).name, size=o.size, preset=o.preset, log=log, keep=keeper,
                         planes=clip.planes, progress=progress, should_stop=stop)
    finally:
        if progress is not None:
            progress.close()
    report["seconds"] = round(time.monotonic() - started, 3)
    if out is not None:
        _write_json(out, report)
    if plot is not None:
        from cnervcodec.eval.rdplot import plot_rd

        plot_rd(plot_curves(report, rd.anchors), plot,
                title=f"{Path(input_path).name}: {clip.n_frames} frames {clip.width}x{clip.height}")
    summary = {k: v for k, v in report.items() if k != "cnerv"} | {
        "cnerv": {k: v for k, v in report["cnerv"].items() if k != "candidates"}}
    emit(summary, outputs.as_json, lambda r: _format_run(r, list(rd.anchors)))
