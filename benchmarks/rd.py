"""The RD benchmark: CNeRV against x264 and x265 on the clips of ../shared/clips (a benchmark, not a test).

For each clip it runs what ``cnerv bd-rate`` runs (``rdcompare.run``: one rate-controlled fit per target of the
``--bpp-ladder``, each with a network sized for it, or with ``--size`` one fit re-coded at a bits x prune ladder;
anchors whose CRF ladder covers the CNeRV curve; BD metrics on YUV-PSNR 6:1:1 and on MS-SSIM dB) and writes
``benchmarks/results/rd_<clip>.json`` (every point and setting) and ``rd_<clip>.png``, then a Markdown table of
all clips (stdout, and ``--md-out``).

The default clips are the README's: carphone 120 frames, bikes 250 frames at 320x136, basketballpass 100 frames,
bigbuckbunny 132 frames at 256x144, foreman 30 frames. On the CPU bikes and bigbuckbunny are downscaled;
``--full`` (the default on CUDA) uses every frame at full size. The table says which, and how long it took.

Examples:
  python benchmarks/rd.py --epochs 60 --md-out benchmarks/results/rd_cpu.md
  python benchmarks/rd.py --clips foreman carphone --preset fast
  python benchmarks/rd.py --device cuda --full --preset slow --anchor-preset veryslow
  python benchmarks/rd.py --table-only --md-out benchmarks/results/rd_cpu.md   # re-tabulate saved results
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import av
import torch

from cnervcodec import __version__
from cnervcodec.config import PRESETS, FitConfig, build_model_config
from cnervcodec.eval.rdcompare import (
    DEFAULT_BPP_LADDER,
    RdSettings,
    bd_against,
    plot_curves,
    run,
)
from cnervcodec.ratecontrol import RATE_LOSS, RATE_LR
from cnervcodec.video_io import FrameSelection, RawVideoSpec, read_video

ROOT = Path(__file__).resolve().parents[1]
# name: (file, raw geometry for headerless input, CPU cut: (frames, scale WxH or None))
CLIPS = {
    "carphone": ("carphone_qcif.mp4", None, (120, None)),
    "bikes": ("bikes_640x272.mp4", None, (250, (320, 136))),
    "basketballpass": ("basketballpass_416x240_50fps.mkv", None, (100, None)),
    "bigbuckbunny": ("bigbuckbunny_720p.mp4", None, (132, (256, 144))),
    "foreman": ("foreman_qcif_30f.264", None, (30, None)),
    "cars": ("cars_320x240_30fps.yuv", RawVideoSpec(width=320, height=240, pix_fmt="yuv420p"), (30, (160, 120))),
    "park_joy": ("park_joy_480x270_10f.y4m", None, (10, (240, 136))),
}
# The README's table: every frame of each clip, only bikes and bigbuckbunny downscaled on the CPU.
DEFAULT_CLIPS = ["carphone", "bikes", "basketballpass", "bigbuckbunny", "foreman"]


HEADER = ["clip", "frames x W x H", "rate-aware", "anchor", "CNeRV bpp", "CNeRV YUV-PSNR dB", "BD-rate (YUV-PSNR)",
          "BD-PSNR", "BD-rate (MS-SSIM dB)", "overlap PSNR / log-rate"]


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def read_clip(clips_dir: Path, name: str, full: bool):
    file, raw, (frames, scale) = CLIPS[name]
    fps = 30 if raw is not None else None
    if full:
        frames, scale = None, None
    from fractions import Fraction

    return read_video(clips_dir / file, raw=raw, fps=Fraction(fps) if fps else None,
                      select=FrameSelection(frames=frames), scale=scale)


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def result_path(results_dir: Path, name: str, rate_aware: str) -> Path:
    """rd_<clip>.json for the default (rate-aware) run, rd_<clip>_off.json for --rate-aware off."""
    return results_dir / (f"rd_{name}.json" if rate_aware == "on" else f"rd_{name}_off.json")


def saving_rows(name: str, reports: dict[str, dict], method: str) -> list[list[str]]:
    """What rate-aware training saves: BD-rate of the ``on`` curve against the ``off`` one of the same run."""
    if set(reports) != {"on", "off"}:
        return []
    saving = bd_against(reports["off"]["cnerv"]["points"], reports["on"]["cnerv"]["points"], method)
    i = reports["on"]["input"]
    return [[name, f"{i['frames']}x{i['width']}x{i['height']}", "on vs off", "CNeRV off", "", "",
             fmt(saving["bd_rate_psnr"], "+.1f") + " %", fmt(saving["bd_psnr"], "+.2f") + " dB",
             fmt(saving["bd_rate_ms_ssim"], "+.1f") + " %", f"{saving['overlap']:.0%} / {saving['overlap_log_rate']:.0%}"]]


POINT_HEADER = ["clip", "rate-aware", "target bpp", "bytes", "bpp", "YUV-PSNR dB", "decoder params",
                "lambda start -> end", "step scales (weights, embeddings)", "estimated bytes", "estimate error", "encode s"]


def point_rows(name: str, report: dict) -> list[list[str]]:
    """Every CNeRV point: its file against the rate model's estimate, and what the encode cost."""
    rows = []
    for p in report["cnerv"]["candidates"]:
        rows.append([name, "on" if p.get("rate_aware") else "off", f"{p['target_bpp']:g}", f"{p['bytes']:,}",
                     f"{p['bpp']:.4f}", f"{p['psnr_yuv']:.2f}", f"{p['decoder_params']:,}",
                     f"{p.get('lambda', 0):g} -> {p['final_lambda']:.3g}" if p.get("final_lambda") else "off",
                     ", ".join(f"{x:.2f}" for x in p["step_scales"]) if p.get("step_scales") and p.get("rate_aware") else "n/a",
                     f"{p['estimated_bytes']:,.0f}" if "estimated_bytes" in p else "n/a",
                     fmt(p.get("estimate_error"), "+.2%"), fmt(p.get("encode_seconds"), ".0f")])
    return rows


def table_rows(name: str, report: dict) -> list[list[str]]:
    cnerv = report["cnerv"]["points"]
    i = report["input"]
    rate_aware = "on" if cnerv[0].get("rate_aware") else "off"
    rows = []
    for anchor in ("x264", "x265", "av1"):
        if anchor not in report:
            continue
        a = report[anchor]
        rows.append([
            name, f"{i['frames']}x{i['width']}x{i['height']}", rate_aware, anchor,
            f"{cnerv[0]['bpp']:.3f}-{cnerv[-1]['bpp']:.3f}",
            f"{cnerv[0]['psnr_yuv']:.2f}-{cnerv[-1]['psnr_yuv']:.2f}",
            fmt(a["bd_rate_psnr"], "+.1f") + " %", fmt(a["bd_psnr"], "+.2f") + " dB",
            fmt(a["bd_rate_ms_ssim"], "+.1f") + " %", f"{a['overlap']:.0%} / {a['overlap_log_rate']:.0%}",
        ])
    return rows


def print_table(title: str, header: list[str], cells: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in cells]
    text = "\n".join(lines) + "\n"
    print(text)
    return text


def retabulate(args: argparse.Namespace) -> None:
    """Rebuild the table (and plots) from saved results, BD recomputed by the current ``bd_against``."""
    rows, per_point, header_note = [], [], ""
    for name in args.clips:
        reports = {}
        for rate_aware in ("on", "off"):
            path = result_path(args.results_dir, name, rate_aware)
            if not path.is_file():
                continue
            report = reports[rate_aware] = json.loads(path.read_text())
            anchors = [a for a in ("x264", "x265", "av1") if a in report]
            for anchor in anchors:
                report[anchor] |= bd_against(report[anchor]["points"], report["cnerv"]["points"], report["method"])
            path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
            rows += table_rows(name, report)
            if "target_bpp" in report["cnerv"]["candidates"][0]:
                per_point += point_rows(name, report)
            header_note = report.get("table_title", header_note)
        if reports:
            rows += saving_rows(name, reports, next(iter(reports.values()))["method"])
    text = print_table(header_note or "RD results", HEADER, rows) + points_table(per_point)
    if args.md_out:
        args.md_out.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", default=DEFAULT_CLIPS, choices=list(CLIPS),
                        help="[default: %(default)s]")
    parser.add_argument("--clips-dir", type=Path, default=ROOT.parent / "shared" / "clips")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--full", action="store_true", help="every frame at full size [default on CUDA]")
    parser.add_argument("--size", default=None, choices=["S", "M", "L"],
                        help="one fit of a named size, bits x prune ladder (the old table) instead of rate control")
    parser.add_argument("--bpp-ladder", type=float, nargs="+", default=list(DEFAULT_BPP_LADDER),
                        help="rate-controlled encodes, one fit per rate [default: %(default)s]")
    parser.add_argument("--preset", default="medium", choices=list(PRESETS))
    parser.add_argument("--epochs", type=int, help="fit epochs [default: from --preset]")
    parser.add_argument("--anchors", nargs="+", default=["x264", "x265"])
    parser.add_argument("--anchor-preset", default="medium")
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--rate-aware", nargs="+", default=["on"], choices=["on", "off"],
                        help="rate-aware training on, off, or both side by side (on off) [default: on]")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--md-out", type=Path)
    parser.add_argument("--table-only", action="store_true",
                        help="no encoding: recompute the BD metrics from the saved rd_<clip>.json points and tabulate")
    args = parser.parse_args()
    if args.table_only:
        retabulate(args)
        return

    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    full = args.full or device.type == "cuda"
    recipe = PRESETS[args.preset]
    epochs = args.epochs or recipe.epochs
    recipe_name = args.preset if args.epochs is None else "custom"
    ladder = None if args.size else tuple(args.bpp_ladder)
    settings = {mode: RdSettings(anchors=tuple(args.anchors), points=args.points, anchor_preset=args.anchor_preset,
                                 prune_epochs=recipe.prune_epochs, bpp_ladder=ladder,
                                 rate_aware=mode == "on" and ladder is not None)
                for mode in dict.fromkeys(args.rate_aware)}
    rd = next(iter(settings.values()))
    fit_config = (FitConfig(epochs=epochs) if ladder is None else
                  FitConfig(epochs=epochs, lr=RATE_LR, loss=RATE_LOSS))
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    rows, per_point, started = [], [], time.monotonic()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    cnerv_text = (f"rate control at {'/'.join(f'{b:g}' for b in ladder)} bpp, one fit each ({recipe_name}: "
                  f"{epochs} epochs, {RATE_LOSS}; rate-aware {'/'.join(settings)})" if ladder else
                  f"{args.size} ({recipe_name}: {epochs} epochs, +{recipe.prune_epochs} after pruning; bits "
                  f"{'/'.join(map(str, rd.bits_ladder))}, prune {'/'.join(f'{p:g}' for p in rd.prune_ladder)}, embed "
                  f"{rd.embed_bits} bits, best {rd.points} points)")
    title = (f"CNeRV {cnerv_text} vs x264/x265 ({args.anchor_preset}, tune psnr, "
             f"1 thread, CRF ladder covering CNeRV's range), BD {rd.method} on YUV-PSNR 6:1:1; "
             f"{'full clips' if full else 'clips cut and downscaled for the CPU (frames x W x H)'}; "
             f"{describe(device)}, torch {torch.__version__}, PyAV {av.__version__}, cnervcodec {__version__}; "
             f"{time.strftime('%Y-%m-%d')}")
    for name in args.clips:
        clip = read_clip(args.clips_dir, name, full)
        model = build_model_config("cnerv", args.size or "S", clip.height, clip.width)
        reports = {}
        for mode, rd in settings.items():
            log(f"== {name}: {clip.n_frames} frames {clip.width}x{clip.height}, rate-aware {mode}")
            report = reports[mode] = run(clip.frames, clip.fps, model, fit_config, rd, device, planes=clip.planes,
                                         source_name=CLIPS[name][0], size=args.size or "auto", preset=args.preset,
                                         log=log)
            report["machine"] = describe(device)
            report["table_title"] = title
            path = result_path(args.results_dir, name, mode)
            path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
            try:
                from cnervcodec.eval.rdplot import plot_rd

                plot_rd(plot_curves(report, rd.anchors), path.with_suffix(".png"),
                        title=f"{name}: {clip.n_frames} frames {clip.width}x{clip.height}, CNeRV "
                              f"{args.size or 'auto'} {recipe_name}, {epochs} epochs, rate-aware {mode} on "
                              f"{describe(device)}")
            except Exception as error:  # the plot is a convenience; the JSON and the table are the result
                log(f"no plot for {name}: {error}")
            rows += table_rows(name, report)
            if ladder:
                per_point += point_rows(name, report)
            log(f"   done in {report['seconds']:.0f} s")
        rows += saving_rows(name, reports, rd.method)
    text = print_table(f"{title}, {time.monotonic() - started:.0f} s in all", HEADER, rows)
    text += points_table(per_point)
    if args.md_out:
        args.md_out.write_text(text)


def points_table(per_point: list[list[str]]) -> str:
    """The per-point table (rate-controlled runs), printed; empty when there is none."""
    if not per_point:
        return ""
    return "\n" + print_table("Every CNeRV point (estimate: the rate term's model on the file's symbols, "
                              "plus the file's other bytes)", POINT_HEADER, per_point)


if __name__ == "__main__":
    main()
