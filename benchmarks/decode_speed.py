"""Decoding speed of .cnrv files next to PyAV decoding x264 and x265 streams of the same frames (a benchmark).

Encodes a clip once per model size (speed does not depend on how well the network was trained, so
few epochs do), then measures frames/s of:

  network     render_frames over every frame of the file's decoding network, batch 1, 8 and 32
              (--batches): the decoder's arithmetic alone, best of --repeats after a one-batch warm-up
  end to end  what `cnerv decode` does, in process: the .cnrv bytes read from disk, open_stream
              (parse, dequantize, build the decoder), render_frames (batch 8, the CLI's default) and an open_video_writer
              writing .y4m (exact 16-bit 4:4:4) and .mp4 (x264 CRF 12), best of --repeats
  x264/x265   the same frames encoded with libx264 and libx265 (preset medium, CRF 23, yuv420p, fresh
              frames with pts = index, in-memory MP4), decoded by PyAV: decode only, and decode plus
              conversion to an RGB ndarray (what our decoder outputs), best of --repeats; with PyAV's
              default threading and, for comparison, with thread_type AUTO (what read_video uses)

  half        each file (this benchmark's, and any --cnrv) decoded in float32, bfloat16 and float16:
              PSNR / YUV-PSNR / MS-SSIM against the source and their change from float32, the largest and
              mean distance from the float32 frames in 8-bit levels, network frames/s (`decode --half`
              is float16 on CUDA, bfloat16 on the CPU)

CPU always; CUDA too with --device cuda (or auto) when a GPU is present.

Examples:
  python benchmarks/decode_speed.py --device cpu --json-out benchmarks/results/decode_speed_cpu.json
  python benchmarks/decode_speed.py --sizes S M --frames 120 --device cuda
  cnerv encode tests/data/carphone_qcif.mp4 -o /tmp/c.cnrv --frames 30 --preset fast
  python benchmarks/decode_speed.py --cnrv /tmp/c.cnrv   # adds that file to the half-precision table
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from cnervcodec.codec import EncodeSettings, encode, open_stream, render_frames
from cnervcodec.config import CompressionConfig, FitConfig, build_model_config
from cnervcodec.metrics import bpp, quality_report
from cnervcodec.model import half_dtype
from cnervcodec.video_io import FrameSelection, read_video
from cnervcodec.video_out import open_video_writer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import describe, print_table, sync  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = {"libx264": "h264", "libx265": "hevc"}


def devices_for(name: str) -> list[torch.device]:
    """CPU always; CUDA as well when asked for (cuda, or auto) and present."""
    devices = [torch.device("cpu")]
    if name in ("cuda", "auto") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif name == "cuda":
        print("--device cuda: no CUDA device is present; CPU only", file=sys.stderr)
    return devices


def best_of(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall time, least process CPU time, last result) over ``repeats`` calls.

    CPU time counts every thread of this process and none of the time it waits for a core, so on a
    shared machine it shows what the work costs where wall time shows what a user waits.
    """
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        cpu, start = time.process_time(), time.perf_counter()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, out


# ---------------------------------------------------------------------------------------------
# CNeRV


def time_network(data: bytes, device: torch.device, batch: int, repeats: int, half: bool = False) -> dict:
    """frames/s of render_frames alone (network already built and on the device; ``half``: --half's decode,
    the conversion to half precision included, as `cnerv decode --half` pays it)."""
    network = open_stream(data)
    n_frames = network.latents.shape[0]

    def run() -> int:
        count = sum(frames.shape[0] for frames in render_frames(network, device, batch=batch, half=half))
        sync(device)
        return count

    next(render_frames(network, device, batch=batch, half=half))  # warm-up, one batch: weights onto the device, kernels
    sync(device)
    seconds, cpu_seconds, count = best_of(run, repeats)
    assert count == n_frames
    return {"fps": n_frames / seconds, "fps_cpu": n_frames / cpu_seconds}


def time_end_to_end(path: Path, out_dir: Path, suffix: str, device: torch.device, batch: int, repeats: int) -> dict:
    """frames/s of `cnerv decode`'s path, with where the time of the best run went."""
    target = out_dir / f"decoded{suffix}"

    def run() -> dict:
        cpu, start = time.process_time(), time.perf_counter()
        network = open_stream(path.read_bytes())
        header = network.header
        parsed = time.perf_counter()
        render_s = write_s = 0.0
        with open_video_writer(target, width=header.model.width, height=header.model.height, fps=header.fps,
                               audio=network.audio) as writer:
            frames_iter = render_frames(network, device, batch=batch)
            while True:
                t0 = time.perf_counter()
                frames = next(frames_iter, None)
                t1 = time.perf_counter()
                render_s += t1 - t0
                if frames is None:
                    break
                writer.write(frames)
                write_s += time.perf_counter() - t1
            t2 = time.perf_counter()
        close_s = time.perf_counter() - t2  # flushing the encoder, muxing, renaming into place
        total = time.perf_counter() - start
        return {"seconds": total, "cpu_seconds": time.process_time() - cpu, "parse_build_s": parsed - start, "render_s": render_s, "write_s": write_s + close_s,
                "frames": writer.frames_written, "out_bytes": target.stat().st_size}

    runs = [run() for _ in range(repeats)]  # the best run is past any first-run cost
    best = min(runs, key=lambda r: r["seconds"])
    cpu_seconds = min(r["cpu_seconds"] for r in runs)
    return {**best, "fps": best["frames"] / best["seconds"], "fps_cpu": best["frames"] / cpu_seconds}


def half_precision_rows(name: str, data: bytes, source_u8: torch.Tensor, planes, device: torch.device,
                        repeats: int) -> list[dict]:
    """One .cnrv decoded in float32 (the exact default), bfloat16 and float16 (``--half`` takes float16 on
    CUDA, bfloat16 on the CPU): quality against the source, how far the frames are from float32's, and
    network frames/s (batch 8, the conversion included)."""
    network = open_stream(data)
    source = source_u8[: network.n_frames]
    planes = None if planes is None else tuple(plane[: network.n_frames] for plane in planes)
    rows, exact = [], None
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        half = False if dtype == torch.float32 else dtype
        try:
            frames = torch.cat(list(render_frames(network, device, half=half)))
        except RuntimeError as error:  # a type this device's kernels do not have
            rows.append({"file": name, "device": str(device), "dtype": str(dtype), "error": str(error)[:120]})
            continue
        exact = frames if exact is None else exact
        quality = quality_report(source, frames, planes=planes)
        diff = (frames.int() - exact.int()).abs()
        seconds, _, _ = best_of(lambda: [sync(device) for _ in render_frames(network, device, half=half)], repeats)
        rows.append({"file": name, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
                     "cli": "--half" if dtype == half_dtype(device) else ("default" if not half else ""),
                     "psnr": quality.psnr, "psnr_yuv": quality.psnr_yuv, "ms_ssim": quality.ms_ssim,
                     "max_abs_diff": int(diff.max()), "mean_abs_diff": round(float(diff.float().mean()), 4),
                     "values_changed": round(float((diff > 0).float().mean()), 4),
                     "fps": network.n_frames / seconds})
    base = rows[0]
    for row in rows:
        if "psnr" in row and "psnr" in base:
            row.update(delta_psnr=round(row["psnr"] - base["psnr"], 4),
                       delta_psnr_yuv=round(row["psnr_yuv"] - base["psnr_yuv"], 4))
    return rows


# ---------------------------------------------------------------------------------------------
# x264 / x265 through PyAV


def encode_anchor(frames_rgb: np.ndarray, codec: str, fps: Fraction, crf: int) -> tuple[bytes, int]:
    """An in-memory MP4 of the frames and the bytes of its elementary stream (packets only)."""
    n_frames, height, width, _ = frames_rgb.shape
    buffer = io.BytesIO()
    options = {"crf": str(crf), "preset": "medium"}
    if codec == "libx265":
        options["x265-params"] = "info=0:log-level=error"  # no encoder-info SEI, no banner on stderr
    es_bytes = 0
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = 1 / fps
        for index in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frames_rgb[index], format="rgb24").reformat(format="yuv420p")
            frame.pts = index  # a fresh frame: no source frame type or time base leaks into the encoder
            for packet in stream.encode(frame):
                es_bytes += packet.size
                out.mux(packet)
        for packet in stream.encode(None):
            es_bytes += packet.size
            out.mux(packet)
    return buffer.getvalue(), es_bytes


def decode_anchor(data: bytes, to_rgb: bool, thread_type: str | None) -> tuple[int, str]:
    """Decode every frame (optionally to an RGB ndarray); (frames, threading used)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        if thread_type is not None:
            stream.thread_type = thread_type
        ctx = stream.codec_context
        threading = f"thread_type {ctx.thread_type.name}, thread_count {ctx.thread_count}"
        n = 0
        for frame in container.decode(stream):
            if to_rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n, threading


def time_anchor(data: bytes, to_rgb: bool, thread_type: str | None, n_frames: int, repeats: int) -> dict:
    decode_anchor(data, to_rgb, thread_type)  # warm-up
    seconds, cpu_seconds, (count, threading) = best_of(lambda: decode_anchor(data, to_rgb, thread_type), repeats)
    if count != n_frames:
        raise AssertionError(f"decoded {count} frames, expected {n_frames}")
    return {"fps": n_frames / seconds, "fps_cpu": n_frames / cpu_seconds, "threading": threading}


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", default=str(ROOT / "tests/data/carphone_qcif.mp4"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=10, help="fit epochs (speed does not depend on them)")
    parser.add_argument("--sizes", nargs="+", default=["S"], choices=["S", "M", "L"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--e2e-batch", type=int, default=8, help="render batch of the end-to-end runs (CLI default 8)")
    parser.add_argument("--crf", type=int, default=23, help="x264/x265 CRF of the comparison streams")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch CPU threads for the CNeRV rows [default: as `cnerv decode` (the usable CPUs), then 1]")
    parser.add_argument("--fit-threads", type=int, default=None, help="torch CPU threads for the fit [default: usable CPUs]")
    parser.add_argument("--cnrv", type=Path, nargs="*", default=[],
                        help="more .cnrv files of CLIP (its first frames) for the half-precision quality table, "
                             "e.g. from `cnerv encode CLIP -o c.cnrv --frames 30 --preset fast`")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    default_threads = max(1, len(os.sched_getaffinity(0)))  # what `cnerv decode` sets on the CPU
    torch.set_num_threads(default_threads)
    args.threads = list(dict.fromkeys(args.threads or [default_threads, 1]))
    load_start = os.getloadavg()
    devices = devices_for(args.device)
    fit_device = devices[-1]
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames))
    n_frames, height, width = clip.n_frames, clip.height, clip.width
    log = lambda row: print(json.dumps(row), file=sys.stderr, flush=True)  # noqa: E731
    rows: list[dict] = []
    half_rows: list[dict] = []
    files = [(path.name, path.read_bytes()) for path in args.cnrv]

    with tempfile.TemporaryDirectory(prefix="decode_speed_") as tmp:
        out_dir = Path(tmp)
        for size in args.sizes:
            settings = EncodeSettings(
                model=build_model_config("cnerv", size, height, width),
                fit=FitConfig(epochs=args.epochs),
                compression=CompressionConfig(weight_bits=8, embed_bits=6),
            )
            torch.set_num_threads(args.fit_threads or default_threads)
            result = encode(clip.frames, clip.fps, settings, fit_device)
            torch.set_num_threads(default_threads)
            data = result.data
            cnrv = out_dir / f"{size}.cnrv"
            cnrv.write_bytes(data)
            params = settings.model.decoder_param_count()
            file_note = f"{len(data):,} B .cnrv ({bpp(len(data), n_frames, height, width):.3f} bpp), {params:,} decoder params"
            for device in devices:
                for threads in (args.threads if device.type == "cpu" else [default_threads]):
                    torch.set_num_threads(threads)
                    dev = "CUDA" if device.type == "cuda" else f"CPU, {threads} torch thread{'s' * (threads > 1)}"
                    for batch, half in [(b, False) for b in args.batches] + [(args.e2e_batch, True)]:
                        timing = time_network(data, device, batch, args.repeats, half)
                        what = f", --half ({str(half_dtype(device)).removeprefix('torch.')})" if half else ""
                        rows.append({"method": f"CNeRV {size} network only, batch {batch}{what} ({dev})", **timing,
                                     "notes": f"render_frames to uint8 RGB; {file_note}", "device": str(device),
                                     "torch_threads": threads})
                        log(rows[-1])
                    for suffix, what in ((".y4m", "16-bit 4:4:4 Y4M"), (".mp4", "x264 CRF 12 MP4")):
                        e2e = time_end_to_end(cnrv, out_dir, suffix, device, args.e2e_batch, args.repeats)
                        rows.append({
                            "method": f"CNeRV {size} end to end -> {suffix} ({dev})", **e2e,
                            "notes": (f"read + parse + build {e2e['parse_build_s'] * 1e3:.0f} ms, render "
                                      f"{e2e['render_s'] * 1e3:.0f} ms, write {what} {e2e['write_s'] * 1e3:.0f} ms "
                                      f"(batch {args.e2e_batch})"),
                            "device": str(device), "torch_threads": threads})
                        log(rows[-1])
                torch.set_num_threads(default_threads)
            files.append((f"{size} ({args.epochs} epochs, this benchmark's)", data))

        for device in devices:
            for name, data in files:
                half_rows.extend(half_precision_rows(name, data, clip.frames, clip.planes, device, args.repeats))
                log(half_rows[-1])

        frames_rgb = np.ascontiguousarray(clip.frames.permute(0, 2, 3, 1).numpy())
        for codec, name in ANCHORS.items():
            stream_data, es_bytes = encode_anchor(frames_rgb, codec, clip.fps, args.crf)
            size_note = f"CRF {args.crf} medium: {es_bytes:,} B stream ({bpp(es_bytes, n_frames, height, width):.3f} bpp)"
            for thread_type, label in ((None, "default threads"), ("AUTO", "thread_type AUTO")):
                for to_rgb in (False, True):
                    timing = time_anchor(stream_data, to_rgb, thread_type, n_frames, args.repeats)
                    rows.append({
                        "method": f"PyAV {name} ({codec}) decode{' + RGB ndarray' if to_rgb else ''}, {label}",
                        "fps": timing["fps"], "fps_cpu": timing["fps_cpu"], "notes": f"{timing['threading']}; {size_note}",
                        "device": "cpu", "stream_bytes": es_bytes})
                    log(rows[-1])

    load_end = os.getloadavg()
    header = (f"Decode speed: {Path(args.clip).name}, {n_frames} frames {width}x{height}, fit {args.epochs} epochs "
              f"on {fit_device.type}, bits 8 / embed 6 / no pruning; {describe(torch.device('cpu'))}, "
              f"torch.get_num_threads() = {torch.get_num_threads()} as `cnerv decode` sets it (rows say when 1 was used)"
              + (f", {describe(torch.device('cuda'))}" if any(d.type == "cuda" for d in devices) else "")
              + f"; frames/s: wall clock, best of {args.repeats}; frames per CPU-second: frames / least CPU time of "
              f"the process (all its threads) over those runs; 1-min load average {load_start[0]:.1f} at start, "
              f"{load_end[0]:.1f} at end")
    print_table(header, ["method", "frames/s", "frames per CPU-second", "notes"],
                [[r["method"], f"{r['fps']:.1f}", f"{r['fps_cpu']:.1f}", r["notes"]] for r in rows])
    print_table(
        "Half-precision decode: each file decoded in float32 (default, exact), bfloat16 and float16; quality "
        "against the source frames, distance from the float32 frames in 8-bit levels, network frames/s (batch 8)",
        ["file", "device", "dtype", "CLI", "PSNR dB", "ΔPSNR", "YUV-PSNR dB", "ΔYUV-PSNR", "MS-SSIM",
         "max |diff|", "mean |diff|", "values changed", "frames/s"],
        [[r["file"], r["device"], r["dtype"], r.get("cli", ""), *(
            [f"{r['psnr']:.4f}", f"{r['delta_psnr']:+.4f}", f"{r['psnr_yuv']:.4f}", f"{r['delta_psnr_yuv']:+.4f}",
             f"{r['ms_ssim']:.5f}", r["max_abs_diff"], f"{r['mean_abs_diff']:.4f}",
             f"{100 * r['values_changed']:.2f} %", f"{r['fps']:.1f}"] if "psnr" in r else [r["error"]] + [""] * 8)]
         for r in half_rows])
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "clip": args.clip, "frames": n_frames, "width": width, "height": height, "fps": str(clip.fps),
            "epochs": args.epochs, "sizes": args.sizes, "repeats": args.repeats,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "av": av.__version__,
            "devices": [describe(d) for d in devices],
            "loadavg_start": load_start, "loadavg_end": load_end, "rows": rows, "half_precision": half_rows},
            indent=1))


if __name__ == "__main__":
    main()
