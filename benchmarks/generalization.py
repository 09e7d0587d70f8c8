"""What only CNeRV can do, measured: unseen frames, model reuse, fitting on a subset, interpolation.

A benchmark, not a test. Every part prints a Markdown table; --json-out keeps every number.

  a  CNeRV vs NeRV on held-out frames (every 5th): seen / unseen PSNR; CNeRV encodes an unseen frame
     with one forward pass, NeRV must be fine-tuned on it: time for NeRV to reach CNeRV's unseen
     PSNR (or its PSNR when --nerv-budget-s runs out), against CNeRV's time per frame
  b  a model fitted on the first half of the clip encodes the second half (encode_with_model, with
     and without --model-ref, with --refine-embeddings) against a fit of the second half's own
  c  --fit-every 2 / 4 / 8 against fitting every frame: encode time, PSNR (all, seen, unseen), bytes
  d  the paper's table 15 on held-out frames: the true embedding, the embedding interpolated from
     the two neighbours (linear, slerp) and pixel blending of the neighbours' decoded frames

Examples:
  python benchmarks/generalization.py --json-out benchmarks/results/generalization_cpu.json
  python benchmarks/generalization.py --parts a d --epochs 100 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from cnervcodec.codec import EncodeSettings, encode, interpolate_embeddings
from cnervcodec.config import CompressionConfig, FitConfig, build_model_config
from cnervcodec.container import write_container
from cnervcodec.embedding import network_inputs
from cnervcodec.experiment import quality_of
from cnervcodec.fit import fine_tune, fit
from cnervcodec.metrics import bpp, quality_report
from cnervcodec.reuse import encode_with_model, model_file_from_fit
from cnervcodec.video_io import FrameSelection, read_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import describe, pick_device, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = 5


def psnr_db(reference_u8: torch.Tensor, decoded_u8: torch.Tensor) -> float:
    return quality_report(reference_u8, decoded_u8).psnr


@torch.no_grad()
def decode_latents(network, latents: torch.Tensor) -> torch.Tensor:
    """Frames the float decoder makes from latents, rounded to 8 bits as a decoder writes them."""
    network.eval()
    frames = network(latents.to(next(network.parameters()).device))
    return frames.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def part_a(frames, args, device) -> tuple[list[dict], dict]:
    """CNeRV vs NeRV, held-out frames; NeRV fine-tuned on all frames until it matches CNeRV's unseen PSNR."""
    n_frames, _, height, width = frames.shape
    recipe = FitConfig(epochs=args.epochs, holdout=HOLDOUT)
    fits, rows = {}, []
    for arch in ("cnerv", "nerv"):
        config = build_model_config(arch, args.size, height, width, n_frames=n_frames)
        fits[arch] = fit(frames, config, recipe, device)
        seen, unseen = (quality_of(fits[arch], frames, idx) for idx in (fits[arch].seen, fits[arch].unseen))
        rows.append({"arch": arch, "fit_seconds": fits[arch].fit_seconds, "seen_psnr": seen.psnr,
                     "unseen_psnr": unseen.psnr})
    cnerv = fits["cnerv"]
    unseen = cnerv.unseen
    started = time.perf_counter()
    with torch.no_grad():
        raw = network_inputs("cnerv", cnerv.network.config.embedding, cnerv.network.config.padded_size,
                             frames[unseen].to(device))
        decoded = decode_latents(cnerv.network, cnerv.network.encoder(raw))
    cnerv_s_per_frame = (time.perf_counter() - started) / len(unseen)
    target = psnr_db(frames[unseen], decoded)
    rows[0]["encode_unseen_s_per_frame"] = cnerv_s_per_frame
    nerv = fits["nerv"]
    tune = replace(nerv.config, epochs=1, holdout=0, warmup_frac=0.0, lr=nerv.config.lr * 0.5)
    spent, trace = 0.0, []
    while spent < args.nerv_budget_s:
        t0 = time.perf_counter()
        fine_tune(frames, nerv.network, tune, device, lambda: None)
        spent += time.perf_counter() - t0
        trace.append((spent, quality_of(nerv, frames, unseen).psnr))
        if trace[-1][1] >= target:
            break
    reached = trace[-1][1] >= target
    rows[1].update({"fine_tune_seconds": spent, "fine_tune_psnr": trace[-1][1], "reached": reached,
                    "encode_unseen_s_per_frame": spent / len(unseen)})
    return rows, {"cnerv_fit": cnerv, "target_psnr": target, "nerv_trace": trace}


def part_b(frames, args, device) -> list[dict]:
    """A model fitted on the first half encodes the second half; against the second half's own fit."""
    half = frames.shape[0] // 2
    first, second = frames[:half], frames[half:]
    config = build_model_config("cnerv", args.size, frames.shape[2], frames.shape[3])
    fitted = fit(first, config, FitConfig(epochs=args.epochs), device)
    model = model_file_from_fit(fitted, CompressionConfig(), {})
    rows = []
    for label, kwargs in (("model, decoder copied", {}), ("model, --model-ref", {"model_ref": True}),
                          ("model, --model-ref, --refine-embeddings 10", {"model_ref": True, "refine_steps": 10})):
        started = time.perf_counter()
        result = encode_with_model(second, args.fps, model, CompressionConfig(), device, **kwargs)
        rows.append(_encode_row(label, second, result, time.perf_counter() - started))
    started = time.perf_counter()
    own = encode(second, args.fps, EncodeSettings(config, FitConfig(epochs=args.epochs), CompressionConfig()), device)
    rows.append(_encode_row("fit of its own", second, own, time.perf_counter() - started))
    rows.append(_encode_row("the model on the first half (seen)", first,
                            encode_with_model(first, args.fps, model, CompressionConfig(), device, model_ref=True), 0.0))
    for row in rows:
        row["speedup_vs_own_fit"] = rows[3]["seconds"] / row["seconds"] if row["seconds"] > 0 else None
    rows[-1]["speedup_vs_own_fit"] = None
    return rows


def _encode_row(label: str, frames, result, seconds: float) -> dict:
    n_bytes = len(write_container(result.container))
    quality = quality_report(frames, result.decoded)
    return {"setting": label, "frames": frames.shape[0], "seconds": seconds,
            "frames_per_s": frames.shape[0] / seconds if seconds > 0 else None, "bytes": n_bytes,
            "bpp": bpp(n_bytes, frames.shape[0], frames.shape[2], frames.shape[3]), "psnr": quality.psnr,
            "psnr_yuv": quality.psnr_yuv}


def part_c(frames, args, device) -> list[dict]:
    """Fit on every K-th frame, embed all: time against quality."""
    config = build_model_config("cnerv", args.size, frames.shape[2], frames.shape[3])
    rows = []
    for every in (1, 2, 4, 8):
        started = time.perf_counter()
        result = encode(frames, args.fps, EncodeSettings(config, FitConfig(epochs=args.epochs, fit_every=every),
                                                         CompressionConfig()), device)
        row = _encode_row(f"--fit-every {every}", frames, result, time.perf_counter() - started)
        seen = torch.arange(0, frames.shape[0], every)
        unseen = torch.tensor([i for i in range(frames.shape[0]) if i % every])
        row["seen_psnr"] = psnr_db(frames[seen], result.decoded[seen])
        row["unseen_psnr"] = psnr_db(frames[unseen], result.decoded[unseen]) if len(unseen) else None
        rows.append(row)
    return rows


def part_d(frames, fitted) -> list[dict]:
    """Table 15: decode each held-out frame from its own embedding, from its neighbours' embeddings
    interpolated at a = 0.5, and by blending the neighbours' decoded pixels."""
    network, unseen = fitted.network, [int(i) for i in fitted.unseen if 0 < i < frames.shape[0] - 1]
    with torch.no_grad():
        embeddings = network.encoder(fitted.inputs).float().cpu()
    decoded_all = decode_latents(network, embeddings)
    results = {"true embedding": [], "linear interpolation": [], "slerp interpolation": [], "pixel blending": []}
    for i in unseen:
        target = frames[i:i + 1]
        pair = embeddings[[i - 1, i + 1]]
        results["true embedding"].append(psnr_db(target, decoded_all[i:i + 1]))
        for mode in ("linear", "slerp"):
            middle = interpolate_embeddings(pair, 2, mode)[1:2]
            results[f"{mode} interpolation"].append(psnr_db(target, decode_latents(network, middle)))
        blend = ((decoded_all[i - 1].float() + decoded_all[i + 1].float()) / 2).round().to(torch.uint8)[None]
        results["pixel blending"].append(psnr_db(target, blend))
    return [{"method": k, "frames": len(v), "psnr": sum(v) / len(v)} for k, v in results.items()]


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(ROOT / "tests/data/carphone_qcif.mp4"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="S")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--nerv-budget-s", type=float, default=120.0)
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames))
    frames, args.fps = clip.frames, clip.fps
    load = os.getloadavg()[0]
    head = (f"{Path(args.clip).name}, {clip.n_frames} frames {clip.width}x{clip.height}, size {args.size}, "
            f"{args.epochs} epochs, {describe(device)}, 1-min load {load:.1f} at start")
    out: dict = {"clip": args.clip, "frames": clip.n_frames, "epochs": args.epochs, "device": describe(device)}
    fitted = None
    if "a" in args.parts or "d" in args.parts:
        rows, extra = part_a(frames, args, device)
        fitted = extra["cnerv_fit"]
        out["a"] = {"rows": rows, "target_psnr": extra["target_psnr"], "nerv_trace": extra["nerv_trace"]}
        print_table(f"(a) unseen frames (every {HOLDOUT}th held out): {head}",
                    ["arch", "fit s", "seen PSNR", "unseen PSNR", "encode an unseen frame"],
                    [[r["arch"], f"{r['fit_seconds']:.0f}", f"{r['seen_psnr']:.2f}", f"{r['unseen_psnr']:.2f}",
                      (f"{r['encode_unseen_s_per_frame'] * 1e3:.1f} ms (one forward pass)" if r["arch"] == "cnerv" else
                       f"{r['encode_unseen_s_per_frame']:.2f} s/frame of fine-tuning: "
                       f"{'reached' if r['reached'] else 'NOT reached'} {extra['target_psnr']:.2f} dB "
                       f"(at {r['fine_tune_psnr']:.2f} dB after {r['fine_tune_seconds']:.0f} s)")] for r in rows])
    if "b" in args.parts:
        out["b"] = part_b(frames, args, device)
        print_table(f"(b) model fitted on the first half, used on the second half: {head}",
                    ["setting", "s", "frames/s", "bytes", "bpp", "PSNR", "PSNR-YUV", "speed-up vs own fit"],
                    [[r["setting"], f"{r['seconds']:.2f}", fmt(r["frames_per_s"], ".1f"), f"{r['bytes']:,}",
                      f"{r['bpp']:.4f}", f"{r['psnr']:.2f}", f"{r['psnr_yuv']:.2f}",
                      fmt(r["speedup_vs_own_fit"], ".0f")] for r in out["b"]])
    if "c" in args.parts:
        out["c"] = part_c(frames, args, device)
        print_table(f"(c) --fit-every K (same epochs): {head}",
                    ["setting", "encode s", "bytes", "bpp", "PSNR", "seen PSNR", "unseen PSNR"],
                    [[r["setting"], f"{r['seconds']:.1f}", f"{r['bytes']:,}", f"{r['bpp']:.4f}", f"{r['psnr']:.2f}",
                      f"{r['seen_psnr']:.2f}", fmt(r["unseen_psnr"], ".2f")] for r in out["c"]])
    if "d" in args.parts:
        out["d"] = part_d(frames, fitted)
        print_table(f"(d) held-out frames decoded four ways (float decoder, a = 0.5 between seen neighbours): {head}",
                    ["method", "frames", "PSNR dB"], [[r["method"], r["frames"], f"{r['psnr']:.2f}"] for r in out["d"]])
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
