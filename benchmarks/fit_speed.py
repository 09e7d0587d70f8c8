"""Fitting speed and the CNeRV-vs-NeRV generalization table (a benchmark, not a test).

Two parts, each printing a Markdown table and writing JSON with every number:

  speed    train and forward frames/s for sizes S/M/L at 176x144 and 320x240 on synthetic frames
  compare  CNeRV vs NeRV at matched size and equal epochs with --holdout 5 on real clips, each at
           full frame rate and at a third of it (--step 3): seen, unseen and gap PSNR

Examples:
  python benchmarks/fit_speed.py speed --device cpu
  python benchmarks/fit_speed.py compare --device cuda --epochs 100 --json-out compare.json
  python benchmarks/fit_speed.py compare --clips bikes --steps 3 --scale 320x136 --epochs 100

Clips are looked up in ../shared/clips (override with --clips-dir).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from cnervcodec.config import FitConfig, build_model_config
from cnervcodec.fit import fit
from cnervcodec.fit_report import fit_clip
from cnervcodec.model import render
from cnervcodec.video_io import FrameSelection, read_video

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {
    "carphone": ("carphone_qcif.mp4", None),
    "basketballpass": ("basketballpass_416x240_50fps.mkv", None),
    "bikes": ("bikes_640x272.mp4", (320, 136)),
}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def synthetic_frames(n_frames: int, height: int, width: int) -> torch.Tensor:
    """Smoothly moving random texture: realistic enough for timing (content does not change speed)."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, height // 4 + 2, width // 4 + 2, generator=gen)
    frames = []
    for t in range(n_frames):
        shifted = torch.roll(base, shifts=(t % 3, t % 5), dims=(2, 3))
        up = torch.nn.functional.interpolate(shifted, size=(height, width), mode="bilinear", align_corners=False)
        frames.append((up[0] * 255).round().to(torch.uint8))
    return torch.stack(frames)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_speed(size: str, height: int, width: int, device: torch.device, n_frames: int, epochs: int) -> dict:
    frames = synthetic_frames(n_frames, height, width)
    config = build_model_config("cnerv", size, height, width)
    warm = fit(frames[:4], config, FitConfig(epochs=1, batch=2), device)  # warm-up: kernels, allocator
    result = fit(frames, config, FitConfig(epochs=epochs, batch=2), device)
    inputs = result.inputs
    render(warm.network, warm.inputs, batch=8)
    sync(device)
    start = time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        render(result.network, inputs, batch=8)
    sync(device)
    forward_fps = rounds * n_frames / (time.perf_counter() - start)
    return {
        "size": size,
        "resolution": f"{width}x{height}",
        "params": config.decoder_param_count(),
        "train_fps": round(result.train_fps, 2),
        "forward_fps": round(forward_fps, 2),
        "device": str(device),
    }


def run_speed(args: argparse.Namespace) -> list[dict]:
    device = pick_device(args.device)
    rows = []
    for resolution in args.resolutions:
        width, height = (int(v) for v in resolution.split("x"))
        for size in args.sizes:
            row = measure_speed(size, height, width, device, args.frames, args.epochs)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print_table(
        f"Fit speed on {describe(device)} (batch 2; forward = decode to uint8 frames, batch 8)",
        ["size", "resolution", "decoder params", "train frames/s", "forward frames/s"],
        [[r["size"], r["resolution"], f"{r['params']:,}", f"{r['train_fps']:.1f}", f"{r['forward_fps']:.1f}"] for r in rows],
    )
    return rows


def run_compare(args: argparse.Namespace) -> list[dict]:
    device = pick_device(args.device)
    rows = []
    for name in args.clips:
        filename, default_scale = CLIPS[name]
        scale = tuple(int(v) for v in args.scale.split("x")) if args.scale else default_scale
        for step in args.steps:
            clip = read_video(args.clips_dir / filename, select=FrameSelection(step=step), scale=scale)
            for arch in ("cnerv", "nerv"):
                config = build_model_config(arch, args.size, clip.height, clip.width, n_frames=clip.n_frames)
                fit_config = FitConfig(epochs=args.epochs, holdout=5, seed=args.seed)
                _, report = fit_clip(clip, config, fit_config, device, size=args.size)
                row = {"clip": name, "step": step, "frames": clip.n_frames, "resolution": f"{clip.width}x{clip.height}",
                       "arch": arch, "params": report["params"], "epochs": args.epochs,
                       "seen_psnr": report["seen"]["psnr"], "unseen_psnr": report["unseen"]["psnr"],
                       "gap_psnr": report["gap_psnr"], "seen_ms_ssim": report["seen"]["ms_ssim"],
                       "unseen_ms_ssim": report["unseen"]["ms_ssim"], "fit_seconds": report["fit_seconds"]}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print_table(
        f"CNeRV vs NeRV, --holdout 5, size {args.size}, {args.epochs} epochs, seed {args.seed}, {describe(device)}",
        ["clip", "step", "frames", "WxH", "arch", "params", "seen PSNR", "unseen PSNR", "gap", "unseen MS-SSIM", "fit s"],
        [[r["clip"], r["step"], r["frames"], r["resolution"], r["arch"], f"{r['params']:,}", f"{r['seen_psnr']:.2f}",
          f"{r['unseen_psnr']:.2f}", f"{r['gap_psnr']:.2f}", f"{r['unseen_ms_ssim']:.4f}", f"{r['fit_seconds']:.0f}"]
         for r in rows],
    )
    return rows


def print_table(title: str, header: list[str], cells: list[list]) -> None:
    """Print a Markdown table under a heading: the one place both benchmark parts format results."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in cells:
        print("| " + " | ".join(str(c) for c in row) + " |")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    speed = sub.add_parser("speed", help="train/forward frames/s per size and resolution")
    speed.add_argument("--sizes", nargs="+", default=["S", "M", "L"])
    speed.add_argument("--resolutions", nargs="+", default=["176x144", "320x240"])
    speed.add_argument("--frames", type=int, default=24, help="synthetic frames per timing run")
    speed.add_argument("--epochs", type=int, default=3)
    compare = sub.add_parser("compare", help="CNeRV vs NeRV seen/unseen table on real clips")
    compare.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    compare.add_argument("--steps", nargs="+", type=int, default=[1, 3])
    compare.add_argument("--scale", default=None, help="WxH for every clip [default: bikes at 320x136, others native]")
    compare.add_argument("--size", default="S")
    compare.add_argument("--epochs", type=int, default=100)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--clips-dir", type=Path, default=ROOT.parent / "shared" / "clips")
    for p in (speed, compare):
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        p.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if pick_device(args.device).type == "cpu":
        torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
    rows = run_speed(args) if args.part == "speed" else run_compare(args)
    if args.json_out:
        args.json_out.write_text(json.dumps({"part": args.part, "device": describe(pick_device(args.device)), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
