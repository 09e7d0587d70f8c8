"""Random access: the time to decode one frame of a .cnrv alone, against decoding the whole file (a benchmark).

CNeRV rebuilds each frame from its own embedding, so frame K needs no other frame: ``codec.decode(data,
start=K, frames=1)`` runs the decoder on the batch of a full decode that holds frame K (``--batch``
frames; with batch 1, on frame K alone) and never on the rest. x264 and x265 can only start at an
I-frame: with their default GOP (keyint 250) a 120-frame clip has one, at frame 0, so frame K costs
decoding frames 0..K. Measured, best of ``--repeats`` after a warm-up:

  cnerv full       open_stream (parse, dequantize, build the decoder) + every frame, batch 8
  cnerv frame K    open_stream + frame K only (``--batch`` 8 and 1)
  cnerv parse      open_stream alone: the fixed cost any decode pays
  x264/x265        PyAV decoding frames 0..K of an in-memory MP4 (preset medium, CRF 23), and all frames
  CLI              ``cnerv decode IN.cnrv -o f.y4m [--start K --frames 1]`` in a subprocess (interpreter
                   start-up and imports included, what a user waits for)

Speed does not depend on how well the network was trained, so the fit is short (``--epochs``).

Example:
  python benchmarks/random_access.py --json-out benchmarks/results/random_access_cpu.json
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from cnervcodec.codec import EncodeSettings, decode, encode, open_stream, render_frames
from cnervcodec.config import FitConfig, build_model_config
from cnervcodec.devices import pick_device
from cnervcodec.video_io import FrameSelection, read_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_speed import ANCHORS, best_of, encode_anchor  # noqa: E402
from fit_speed import describe, print_table, sync  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def decode_anchor_until(data: bytes, last_index: int) -> int:
    """Decode an MP4's frames 0..last_index (a decoder cannot start elsewhere without an I-frame there)."""
    count = 0
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            count += 1
            if count > last_index:
                break
    return count


def time_cnerv(data: bytes, device: torch.device, start: int | None, batch: int, repeats: int) -> dict:
    """Seconds to decode frame ``start`` alone (None: every frame) from the bytes, parse included."""
    def run() -> int:
        network = open_stream(data)
        count = sum(f.shape[0] for f in render_frames(network, device, batch, start=start or 0,
                                                      count=None if start is None else 1))
        sync(device)
        return count

    run()  # warm-up: kernels, allocator
    seconds, cpu_seconds, count = best_of(run, repeats)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "frames_out": count}


def time_cli(path: Path, out_dir: Path, start: int | None, repeats: int) -> float:
    """Best wall time of ``cnerv decode`` in a fresh interpreter, to .y4m."""
    args = [sys.executable, "-m", "cnervcodec", "decode", str(path), "-o", str(out_dir / "f.y4m"), "-y"]
    if start is not None:
        args += ["--start", str(start), "--frames", "1"]
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", default=str(ROOT / "tests/data/carphone_qcif.mp4"))
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--index", type=int, default=100, help="the frame decoded alone")
    parser.add_argument("--epochs", type=int, default=2, help="fit epochs (speed does not depend on them)")
    parser.add_argument("--size", default="S", choices=["S", "M", "L"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames))
    if not 0 <= args.index < clip.n_frames:
        parser.error(f"--index {args.index} is outside the clip's {clip.n_frames} frames")
    settings = EncodeSettings(model=build_model_config("cnerv", args.size, clip.height, clip.width),
                              fit=FitConfig(epochs=args.epochs))
    data = encode(clip.frames, clip.fps, settings, device).data
    full_frames = decode(data, device=device)
    exact = all(torch.equal(decode(data, start=args.index, frames=1, batch=b, device=device)[0],
                            decode(data, batch=b, device=device)[args.index]) for b in (1, 8))
    k = args.index
    rows = []
    full = time_cnerv(data, device, None, 8, args.repeats)
    rows.append({"method": f"CNeRV {args.size}: all {clip.n_frames} frames (batch 8)", **full})
    for batch in (8, 1):
        rows.append({"method": f"CNeRV {args.size}: frame {k} alone (batch {batch})",
                     **time_cnerv(data, device, k, batch, args.repeats)})
    parse_s, parse_cpu, _ = best_of(lambda: open_stream(data), args.repeats)
    rows.append({"method": "CNeRV: open_stream only (parse, dequantize, build)", "seconds": parse_s,
                 "cpu_seconds": parse_cpu, "frames_out": 0})
    frames_rgb = np.ascontiguousarray(clip.frames.permute(0, 2, 3, 1).numpy())
    for codec, name in ANCHORS.items():
        stream, _ = encode_anchor(frames_rgb, codec, clip.fps, 23)
        for last, label in ((k, f"frame {k} (decodes 0..{k})"), (clip.n_frames - 1, f"all {clip.n_frames} frames")):
            decode_anchor_until(stream, last)
            seconds, cpu_seconds, count = best_of(lambda: decode_anchor_until(stream, last), args.repeats)
            rows.append({"method": f"PyAV {name}: {label}, to RGB", "seconds": seconds, "cpu_seconds": cpu_seconds,
                         "frames_out": 1 if last == k else count})
    with tempfile.TemporaryDirectory(prefix="random_access_") as tmp:
        path = Path(tmp) / "clip.cnrv"
        path.write_bytes(data)
        for start, label in ((None, f"all {clip.n_frames} frames"), (k, f"--start {k} --frames 1")):
            rows.append({"method": f"cnerv decode -o .y4m, {label} (fresh interpreter)",
                         "seconds": time_cli(path, Path(tmp), start, max(1, args.repeats // 2)),
                         "cpu_seconds": None, "frames_out": clip.n_frames if start is None else 1})
    for row in rows:
        row["speed_up_vs_full"] = full["seconds"] / row["seconds"] if row["seconds"] else None
        print(json.dumps(row), file=sys.stderr)

    title = (f"Random access: {Path(args.clip).name}, {clip.n_frames} frames {clip.width}x{clip.height}, "
             f"{len(data):,} B .cnrv (CNeRV {args.size}, {args.epochs} fit epochs), {describe(device)}; best of "
             f"{args.repeats}; frame {k} alone is bit for bit frame {k} of the full decode: {exact}")
    print_table(title, ["method", "ms", "CPU ms", "x faster than CNeRV full decode"],
                [[r["method"], f"{r['seconds'] * 1e3:.1f}",
                  "-" if r["cpu_seconds"] is None else f"{r['cpu_seconds'] * 1e3:.1f}",
                  f"{r['speed_up_vs_full']:.1f}"] for r in rows])
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "clip": args.clip, "frames": clip.n_frames, "width": clip.width, "height": clip.height,
            "index": k, "bytes": len(data), "size": args.size, "epochs": args.epochs, "device": describe(device),
            "torch": torch.__version__, "av": av.__version__, "exact": exact,
            "full_decode_frames": int(full_frames.shape[0]), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
