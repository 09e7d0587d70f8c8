"""Long clips in bounded memory: encode and decode a generated 20,000-frame 320x180 clip, peak RSS.

Issue 15's check: the clip is 3.5 GB as uint8 RGB frames; `cnerv encode --fit-every 100 --epochs 1`
and `cnerv decode` must each stay under 1.5 GB of peak resident memory. Each command runs in its own
process; its peak RSS is the kernel's ``ru_maxrss`` for that child (``os.wait4``). A short prefix of
the same clip is also encoded in memory and streamed from disk (``--memory-mb 0``) to show that the
two paths write the same file.

    python benchmarks/long_clip.py                          # 20,000 frames, writes results/long_clip_cpu.md
    python benchmarks/long_clip.py --frames 2000 --md-out /tmp/long.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 320, 180
RESULTS = Path(__file__).parent / "results"


def generate_clip(path: Path, n_frames: int, fps: int = 25) -> None:
    """A smooth synthetic clip (moving gradients and a drifting square, slowly changing colours), x264."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(n_frames):
            phase = t / 50.0
            frame = np.empty((HEIGHT, WIDTH, 3), np.float32)
            frame[..., 0] = 128 + 100 * np.sin(xs / 40 + phase)
            frame[..., 1] = 128 + 100 * np.sin(ys / 30 - 0.7 * phase)
            frame[..., 2] = 128 + 100 * np.sin((xs + ys) / 60 + 0.3 * phase + np.sin(t / 900))
            x0 = int((WIDTH - 48) * (0.5 + 0.5 * np.sin(t / 70)))
            y0 = int((HEIGHT - 48) * (0.5 + 0.5 * np.cos(t / 90)))
            frame[y0 : y0 + 48, x0 : x0 + 48] = (230, 40 + (t % 200), 60)
            image = av.VideoFrame.from_ndarray(frame.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_measured(args: list[str]) -> tuple[dict, float, float]:
    """Run a cnerv command in a child process: (its --json report, wall seconds, peak RSS in MiB)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen([sys.executable, "-m", "cnervcodec", *args], stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr = child.stderr.read().decode(errors="replace")
        out.seek(0)
        stdout = out.read().decode()
    seconds = time.monotonic() - started
    if child.returncode != 0:
        raise SystemExit(f"cnerv {' '.join(args)} failed ({child.returncode}): {stderr.strip()[-2000:]}")
    return json.loads(stdout), seconds, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--short-frames", type=int, default=60, help="prefix encoded in memory and streamed")
    parser.add_argument("--encode-args", default="--fit-every 100 --epochs 1 --bpp 0.005",
                        help="options of the long encode [default: %(default)s]")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the clip and outputs here")
    parser.add_argument("--md-out", type=Path, default=RESULTS / "long_clip_cpu.md")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cnerv-long-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = work / f"synthetic_{args.frames}f_{WIDTH}x{HEIGHT}.mp4"
    if not clip.exists():
        started = time.monotonic()
        generate_clip(clip, args.frames)
        print(f"generated {clip} ({clip.stat().st_size:,} B) in {time.monotonic() - started:.0f} s", flush=True)
    rows = []
    encode, enc_s, enc_rss = run_measured(["encode", str(clip), "-o", str(work / "long.cnrv"), "-y", "--json", "-q",
                                           *args.encode_args.split()])
    rows.append(("encode", enc_s, enc_rss, f"{encode['bytes']:,} B, {encode['bpp']:.4f} bpp, YUV-PSNR "
                 f"{encode['psnr_yuv']:.2f} dB (seen {encode['seen']['psnr_yuv']:.2f}, unseen "
                 f"{encode['unseen']['psnr_yuv']:.2f})"))
    print(rows[-1], flush=True)
    decode, dec_s, dec_rss = run_measured(["decode", str(work / "long.cnrv"), "-o", str(work / "long.mp4"), "-y",
                                           "--json"])
    rows.append(("decode", dec_s, dec_rss, f"{decode['frames']:,} frames, {decode['frames_per_second']} frames/s"))
    print(rows[-1], flush=True)
    short = []
    for memory_mb in ("256", "0"):
        report, seconds, rss = run_measured(["encode", str(clip), "-o", str(work / f"short_{memory_mb}.cnrv"), "-y",
                                             "--json", "-q", "--frames", str(args.short_frames), "--preset", "fast",
                                             "--memory-mb", memory_mb])
        short.append((memory_mb, report, seconds, rss))
    same_file = (work / "short_256.cnrv").read_bytes() == (work / "short_0.cnrv").read_bytes()
    lines = [
        f"# Long clip in bounded memory ({args.frames:,} frames, {WIDTH}x{HEIGHT})",
        "",
        f"`python benchmarks/long_clip.py --frames {args.frames}`: a generated clip "
        f"({args.frames * WIDTH * HEIGHT * 3 / 1e9:.2f} GB as uint8 RGB frames; {clip.stat().st_size:,} B as H.264), "
        f"encoded with `cnerv encode CLIP -o long.cnrv {args.encode_args}` and decoded with "
        "`cnerv decode long.cnrv -o long.mp4`, each in its own process; peak RSS is the child's `ru_maxrss`.",
        f"Machine: {os.cpu_count()} CPU cores; load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "| command | wall s | peak RSS MiB | result |",
        "| --- | ---: | ---: | --- |",
        *[f"| {name} | {seconds:.0f} | {rss:.0f} | {text} |" for name, seconds, rss, text in rows],
        "",
        f"Same clip, first {args.short_frames} frames, `--preset fast`, in memory (`--memory-mb 256`) and streamed "
        "from the disk cache (`--memory-mb 0`):",
        "",
        "| --memory-mb | bytes | YUV-PSNR dB | wall s | peak RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *[f"| {m} | {r['bytes']:,} | {r['psnr_yuv']:.4f} | {s:.1f} | {rss:.0f} |" for m, r, s, rss in short],
        "",
        f"The two files are {'byte for byte identical' if same_file else 'NOT identical'}.",
    ]
    args.md_out.parent.mkdir(parents=True, exist_ok=True)
    args.md_out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
