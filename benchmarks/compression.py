"""Rate and quality of real .cnrv files over a ladder of --bits and --prune, from one fit (a benchmark).

Fits CNeRV once, then for every prune level prunes a copy and fine-tunes it with the mask held, and
for every bit depth (and, with --axes, per-tensor vs per-output-channel quantization) writes the
container and measures the frames decoded from it. Rates are the file's bytes, all of them.

Examples:
  python benchmarks/compression.py                                  # carphone, 120 frames, 100 epochs
  python benchmarks/compression.py --frames 30 --epochs 30 --axes   # quick look at quantization axes
  python benchmarks/compression.py clip.mp4 --bits 8 6 --prune 0 0.4 --device cuda --json-out rd.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cnervcodec.codec import code_fit, decode
from cnervcodec.config import (
    PRESETS,
    CompressionConfig,
    FitConfig,
    PruneConfig,
    build_model_config,
)
from cnervcodec.fit import fit
from cnervcodec.metrics import bpp, quality_report
from cnervcodec.model import render
from cnervcodec.prune import prune_fit, sparsity
from cnervcodec.video_io import FrameSelection, read_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import describe, pick_device, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AXES = {"tensor": (-1, -1), "channel": (0, 1)}  # (weight_axis, embed_axis)


def rd_points(frames, fps, fitted, args, device) -> list[dict]:
    """Every (prune, bits, axes) point: bytes, bpp and quality of the decoded file."""
    points = []
    n_frames, _, height, width = frames.shape
    for prune in args.prune:
        start = time.monotonic()
        source = prune_fit(frames, fitted, PruneConfig(fraction=prune, epochs=args.prune_epochs), device)
        prune_s = time.monotonic() - start
        for bits in args.bits:
            for axes in (AXES if args.axes else ["tensor"]):
                weight_axis, embed_axis = AXES[axes]
                config = CompressionConfig(weight_bits=bits, embed_bits=args.embed_bits,
                                           weight_axis=weight_axis, embed_axis=embed_axis)
                data = code_fit(source, fps, config)
                n_bytes = len(data)
                quality = quality_report(frames, decode(data, device=device))
                points.append({
                    "prune": prune, "bits": bits, "embed_bits": args.embed_bits, "axes": axes,
                    "bytes": n_bytes, "bpp": bpp(n_bytes, n_frames, height, width),
                    "psnr": quality.psnr, "psnr_yuv": quality.psnr_yuv, "ms_ssim": quality.ms_ssim,
                    "sparsity": sparsity(source.network.decoder), "prune_seconds": round(prune_s, 1),
                })
                print(json.dumps(points[-1]), file=sys.stderr)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", default=str(ROOT / "tests/data/carphone_qcif.mp4"))
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--scale", default=None, help="WxH")
    parser.add_argument("--size", default="S")
    parser.add_argument("--epochs", type=int, default=PRESETS["medium"].epochs)
    parser.add_argument("--prune-epochs", type=int, default=PRESETS["medium"].prune_epochs)
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    parser.add_argument("--embed-bits", type=int, default=6)
    parser.add_argument("--prune", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    parser.add_argument("--axes", action="store_true", help="also quantize per output channel / per embedding value")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    device = pick_device(args.device)
    scale = tuple(int(v) for v in args.scale.split("x")) if args.scale else None
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames), scale=scale)
    frames = clip.frames
    model = build_model_config("cnerv", args.size, clip.height, clip.width)
    fitted = fit(frames, model, FitConfig(epochs=args.epochs), device)
    float_quality = quality_report(frames, render(fitted.network, fitted.inputs))
    points = rd_points(frames, clip.fps, fitted, args, device)

    title = (f"{Path(args.clip).name}: {clip.n_frames} frames {clip.width}x{clip.height}, size {args.size}, "
             f"{args.epochs} epochs (+{args.prune_epochs} after pruning), {describe(device)}; "
             f"float model before quantization: PSNR {float_quality.psnr:.2f} dB, fit {fitted.fit_seconds:.0f} s")
    header = ["prune", "bits", "embed bits", "quant", "bytes", "bpp", "PSNR dB", "PSNR-YUV dB", "MS-SSIM", "zeros"]
    cells = [[p["prune"], p["bits"], p["embed_bits"], p["axes"], f"{p['bytes']:,}", f"{p['bpp']:.4f}",
              f"{p['psnr']:.2f}", f"{p['psnr_yuv']:.2f}", f"{p['ms_ssim']:.4f}", f"{p['sparsity']:.3f}"] for p in points]
    print_table(title, header, cells)
    if args.json_out:
        args.json_out.write_text(json.dumps({"clip": args.clip, "frames": clip.n_frames, "epochs": args.epochs,
                                             "float_psnr": float_quality.psnr, "device": str(device),
                                             "fit_seconds": fitted.fit_seconds, "points": points}, indent=1))


if __name__ == "__main__":
    main()
