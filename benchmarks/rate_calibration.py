"""The rate controller's calibration table: coded bits per decoder weight and per embedding value (a benchmark).

``ratecontrol.predicted_bytes`` sizes the network for a target from two tables, the bits a weight and
an embedding value take in a real file at each bit depth (eq. 4 quantization, then the categorical
ANS coder; embeddings as EMBD or EMBT, whichever is smaller). This script measures them: it fits the
size family at a few widths ``c`` with the rate-control recipe, codes each fit at every weight x
embedding depth and reads the chunk lengths of the written file (DECO over the decoder's parameters,
EMBD/EMBT over the embedding values, the rest as headers). The mean over the fits is the table that
``cnervcodec/ratecontrol.py`` ships.

Examples:
  python benchmarks/rate_calibration.py --md-out benchmarks/results/rate_calibration_cpu.md
  python benchmarks/rate_calibration.py clip.mp4 --frames 60 --widths 8 24 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cnervcodec.codec import code_fit
from cnervcodec.config import PRESETS, CompressionConfig, FitConfig
from cnervcodec.fit import fit
from cnervcodec.format.stream import read_container
from cnervcodec.ratecontrol import (
    EMBED_BITS_SEARCH,
    RATE_LOSS,
    RATE_LR,
    WEIGHT_BITS_SEARCH,
    family_config,
)
from cnervcodec.video_io import FrameSelection, read_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import describe, pick_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def coded_bits(data: bytes, n_weights: int, n_values: int) -> dict:
    """Bits per weight (DECO), per embedding value (EMBD or EMBT) and the other bytes of one file."""
    lengths = {info.kind: info.length for info in read_container(data).chunks}
    embed_bytes = lengths.get("EMBD", lengths.get("EMBT", 0))
    return {"weight_bits_coded": lengths["DECO"] * 8 / n_weights, "embed_bits_coded": embed_bytes * 8 / n_values,
            "other_bytes": len(data) - lengths["DECO"] - embed_bytes, "temporal": "EMBT" in lengths}


def measure(clip, c: int, epochs: int, device, log) -> list[dict]:
    model = family_config(c, clip.height, clip.width)
    started = time.monotonic()
    fitted = fit(clip.frames, model, FitConfig(epochs=epochs, lr=RATE_LR, loss=RATE_LOSS), device, planes=clip.planes)
    log(f"c = {c}: {model.decoder_param_count()} parameters, fitted in {time.monotonic() - started:.0f} s")
    n_values = clip.n_frames * model.embedding.values_per_frame
    rows = []
    for weight_bits in WEIGHT_BITS_SEARCH:
        for embed_bits in EMBED_BITS_SEARCH:
            data = code_fit(fitted, clip.fps, CompressionConfig(weight_bits=weight_bits, embed_bits=embed_bits))
            rows.append({"c": c, "weight_bits": weight_bits, "embed_bits": embed_bits, "bytes": len(data),
                         **coded_bits(data, model.decoder_param_count(), n_values)})
    return rows


def table(rows: list[dict], key: str, bits_key: str) -> dict[int, float]:
    """Mean coded bits per value at each depth, over every fit and every depth of the other kind."""
    depths = sorted({row[bits_key] for row in rows})
    return {d: round(float(np.mean([row[key] for row in rows if row[bits_key] == d])), 2) for d in depths}


def markdown(title: str, weights: dict, embeds: dict, rows: list[dict]) -> str:
    lines = [f"**{title}**", "", "| bit depth | coded bits per weight | coded bits per embedding value |", "|---|---|---|"]
    for depth in sorted(set(weights) | set(embeds)):
        lines.append(f"| {depth} | {weights.get(depth, 'n/a')} | {embeds.get(depth, 'n/a')} |")
    other = [row["other_bytes"] for row in rows]
    lines += ["", f"Other bytes (framing, HEAD, meta JSON): {min(other)}-{max(other)}; embeddings written as EMBT in "
              f"{sum(row['temporal'] for row in rows)} of {len(rows)} files."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path, default=ROOT / "tests" / "data" / "carphone_qcif.mp4")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 24], help="family widths c to fit")
    parser.add_argument("--epochs", type=int, default=PRESETS["medium"].epochs)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--md-out", type=Path)
    args = parser.parse_args()
    device = pick_device(args.device)
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames))
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    rows = [row for c in args.widths for row in measure(clip, c, args.epochs, device, log)]
    weights = table(rows, "weight_bits_coded", "weight_bits")
    embeds = table(rows, "embed_bits_coded", "embed_bits")
    title = (f"Rate calibration: {args.clip.name}, {clip.n_frames} frames {clip.width}x{clip.height}, family widths "
             f"c = {', '.join(map(str, args.widths))}, {args.epochs} epochs ({RATE_LOSS}, lr {RATE_LR}), per-tensor "
             f"ranges; {describe(device)}; {time.monotonic() - started:.0f} s")
    text = markdown(title, weights, embeds, rows)
    print(text)
    if args.md_out:
        args.md_out.write_text(text)
    if args.json_out:
        args.json_out.write_text(json.dumps({"title": title, "weights": weights, "embeddings": embeds,
                                             "files": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
