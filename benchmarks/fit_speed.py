"""Fitting speed and the CNeRV-vs-NeRV generalization table (a benchmark, not a test).

Two parts, each printing a Markdown table and writing JSON with every number:

  speed    train and decode frames/s (float32, and --half's float16 on CUDA / bfloat16 on the CPU) on
           synthetic frames at 176x144, 640x360 and 1920x1080 (size S; fewer frames and epochs at the larger
           sizes), with each frame's FLOPs counted from the network (cnervcodec.flops: 2 x multiply-adds,
           train = 3 x forward) and the fraction of the device's peak they reach (peak: large matmuls, measured)
  compare  CNeRV vs NeRV at matched size and equal epochs with --holdout 5 on real clips, each at
           full frame rate and at a third of it (--step 3): seen, unseen and gap PSNR

Examples:
  python benchmarks/fit_speed.py speed --device cpu --json-out benchmarks/results/fit_speed_cpu.json
  python benchmarks/fit_speed.py speed --sizes S M L --resolutions 176x144 320x240
  python benchmarks/fit_speed.py compare --device cuda --epochs 100 --json-out compare.json
  python benchmarks/fit_speed.py compare --clips bikes --steps 3 --scale 320x136 --epochs 100

Clips are looked up in ../shared/clips (override with --clips-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from cnervcodec.config import FitConfig, build_model_config
from cnervcodec.fit import fit
from cnervcodec.fit_report import fit_clip
from cnervcodec.flops import frame_flops, matmul_peak_flops
from cnervcodec.model import decoder_on, half_dtype, render_latents
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


def peak_rates(device: torch.device) -> dict:
    """FLOP/s the device attains on large matrix products, measured here (``flops.matmul_peak_flops``):
    float32 (on CUDA with TF32 allowed, as cuDNN's float32 convolutions use it by default) for training
    and the default decode, and the half type ``--half`` decodes in. On the CPU also per CPU-second of
    this process, which other jobs sharing the cores do not lower."""
    half = half_dtype(device)
    if device.type != "cuda":
        return {"fp32": matmul_peak_flops(device), "half": matmul_peak_flops(device, half),
                "fp32_cpu": matmul_peak_flops(device, clock=time.process_time),
                "half_cpu": matmul_peak_flops(device, half, clock=time.process_time), "half_dtype": str(half)}
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        fp32 = matmul_peak_flops(device, n=8192)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return {"fp32": fp32, "half": matmul_peak_flops(device, half, n=8192), "half_dtype": str(half)}


def parse_resolution(text: str, frames: int, epochs: int) -> tuple[int, int, int, int]:
    """``WxH`` or ``WxH:FRAMES:EPOCHS`` (fewer frames and steps for large frames) -> (w, h, frames, epochs)."""
    size, *rest = text.split(":")
    width, height = (int(v) for v in size.split("x"))
    return width, height, int(rest[0]) if rest else frames, int(rest[1]) if len(rest) > 1 else epochs


def time_decode(decoder, latents: torch.Tensor, height: int, width: int, device: torch.device, half: bool,
                rounds: int) -> tuple[float, float]:
    """Decode (frames/s, frames per CPU-second of this process) of ``render_latents`` (what ``cnerv decode``
    runs), each the best of ``rounds`` after a warm-up batch."""
    batch = min(8, latents.shape[0])
    decoder = decoder_on(decoder, device, half)
    next(render_latents(decoder, latents[:batch], height, width, device, batch, half=half))
    sync(device)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(rounds):
        cpu, start = time.process_time(), time.perf_counter()
        for _ in render_latents(decoder, latents, height, width, device, batch, half=half):
            pass
        sync(device)
        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - cpu)
    return latents.shape[0] / best, latents.shape[0] / best_cpu


def measure_speed(size: str, height: int, width: int, device: torch.device, n_frames: int, epochs: int) -> dict:
    frames = synthetic_frames(n_frames, height, width)
    config = build_model_config("cnerv", size, height, width)
    fit(frames[:2], config, FitConfig(epochs=1, batch=2), device)  # warm-up: kernels, allocator
    cpu = time.process_time()
    result = fit(frames, config, FitConfig(epochs=epochs, batch=2), device)
    fit_cpu_seconds = time.process_time() - cpu  # the whole call (setup too): per CPU-second rates are lower bounds
    network = result.network.eval()
    with torch.no_grad():
        latents = torch.cat([network.latent_for(result.inputs[i : i + 8].to(device)).float().cpu()
                             for i in range(0, n_frames, 8)])
    rounds = 3 if height * width < 1_000_000 else 1
    forward_fps, forward_fps_cpu = time_decode(network.decoder, latents, height, width, device, False, rounds)
    half_fps, half_fps_cpu = time_decode(network.decoder, latents, height, width, device, True, rounds)
    counted = frame_flops(config)
    return {
        "size": size,
        "resolution": f"{width}x{height}",
        "params": config.decoder_param_count(),
        "frames": n_frames,
        "epochs": epochs,
        "steps": result.steps,
        "train_fps": round(result.train_fps, 3),
        "forward_fps": round(forward_fps, 3),
        "forward_half_fps": round(half_fps, 3),
        "train_fps_cpu": round(result.train_frames / fit_cpu_seconds, 3),
        "forward_fps_cpu": round(forward_fps_cpu, 3),
        "forward_half_fps_cpu": round(half_fps_cpu, 3),
        "decode_gflop_per_frame": round(counted.decode_flops / 1e9, 4),
        "train_gflop_per_frame": round(counted.train_flops / 1e9, 4),
        "device": str(device),
    }


def add_peak_fractions(row: dict, peaks: dict) -> dict:
    """The fraction of the device's matmul peak each measured rate reaches (counted FLOPs x frames/s / peak);
    ``*_cpu``: per CPU-second rates over the per CPU-second peak (the CPU only)."""
    out = dict(row)
    for suffix in ("", "_cpu") if "fp32_cpu" in peaks else ("",):
        fp32, half = peaks["fp32" + suffix], peaks["half" + suffix]
        out["train_peak_fraction" + suffix] = round(row["train_fps" + suffix] * row["train_gflop_per_frame"] * 1e9
                                                    / fp32, 4)
        out["forward_peak_fraction" + suffix] = round(row["forward_fps" + suffix] * row["decode_gflop_per_frame"]
                                                      * 1e9 / fp32, 4)
        out["forward_half_peak_fraction" + suffix] = round(row["forward_half_fps" + suffix]
                                                           * row["decode_gflop_per_frame"] * 1e9 / half, 4)
    return out


def run_speed(args: argparse.Namespace) -> list[dict]:
    device = pick_device(args.device)
    load_start = os.getloadavg()
    before = peak_rates(device)
    rows = []
    for resolution in args.resolutions:
        width, height, n_frames, epochs = parse_resolution(resolution, args.frames, args.epochs)
        for size in args.sizes:
            rows.append(measure_speed(size, height, width, device, n_frames, epochs))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    after = peak_rates(device)  # the better of two measurements: on a shared machine either may be slowed
    peaks = {key: max(before[key], after[key]) if key != "half_dtype" else before[key] for key in before}
    print(json.dumps({"peaks_before_gflops": {k: round(v / 1e9, 1) for k, v in before.items() if k != "half_dtype"},
                      "peaks_after_gflops": {k: round(v / 1e9, 1) for k, v in after.items() if k != "half_dtype"}}),
          file=sys.stderr)
    rows = [add_peak_fractions(row, peaks) for row in rows]
    load_end = os.getloadavg()
    half = peaks["half_dtype"].removeprefix("torch.")
    per = "_cpu" if "fp32_cpu" in peaks else ""
    basis = ("frames and FLOPs per CPU-second of this process (all its threads), so that other jobs on the "
             "cores do not lower them" if per else "wall clock")
    print_table(
        f"Fit speed on {describe(device)} (batch 2; decode = render_latents to uint8 frames, batch 8; FLOPs = 2 x "
        f"multiply-adds counted from the network, train = 3 x forward; % of peak: {basis}, against a matmul peak of "
        f"{peaks['fp32' + per] / 1e9:,.0f} GFLOP/s float32 and {peaks['half' + per] / 1e9:,.0f} GFLOP/s {half}; 1-min "
        f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end)",
        ["size", "resolution", "decoder params", "frames x epochs", "decode GFLOP/frame", "train frames/s",
         "train % of peak", "decode frames/s", "decode % of peak", f"--half ({half}) decode frames/s",
         "--half % of peak"],
        [[r["size"], r["resolution"], f"{r['params']:,}", f"{r['frames']} x {r['epochs']}",
          f"{r['decode_gflop_per_frame']:.2f}", f"{r['train_fps']:.2f}", f"{100 * r['train_peak_fraction' + per]:.1f}",
          f"{r['forward_fps']:.2f}", f"{100 * r['forward_peak_fraction' + per]:.1f}", f"{r['forward_half_fps']:.2f}",
          f"{100 * r['forward_half_peak_fraction' + per]:.1f}"] for r in rows],
    )
    args.peaks = {key: round(value / 1e9, 2) if key != "half_dtype" else half for key, value in peaks.items()}
    args.peaks["loadavg_start"], args.peaks["loadavg_end"] = load_start, load_end
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
    threads = torch.get_num_threads()
    return f"CPU ({platform.processor() or platform.machine()}, {threads} thread{'s' * (threads > 1)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    speed = sub.add_parser("speed", help="train/forward frames/s per size and resolution")
    speed.add_argument("--sizes", nargs="+", default=["S"])
    speed.add_argument("--resolutions", nargs="+", default=["176x144", "640x360:8:2", "1920x1080:4:2"],
                       help="WxH or WxH:FRAMES:EPOCHS (overrides --frames / --epochs for that size)")
    speed.add_argument("--frames", type=int, default=24, help="synthetic frames per timing run")
    speed.add_argument("--epochs", type=int, default=3)
    speed.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads [default: the usable CPUs]; 1 on a shared machine, where a thread "
                            "waiting for a busy core stalls every multi-threaded kernel")
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
        torch.set_num_threads(getattr(args, "threads", None) or max(1, len(os.sched_getaffinity(0))))
    rows = run_speed(args) if args.part == "speed" else run_compare(args)
    if args.json_out:
        args.json_out.write_text(json.dumps({"part": args.part, "device": describe(pick_device(args.device)),
                                             "torch": torch.__version__, "peaks": getattr(args, "peaks", None),
                                             "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
