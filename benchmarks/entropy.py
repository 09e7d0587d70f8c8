"""Entropy coding of real quantized CNeRV models: coded size vs empirical entropy, coder speed, header overhead.

A benchmark, not a test. One run fits CNeRV once to a real clip and then measures:

  coding    for every weight bit depth (--bits) and prune level (--prune; pruned copies are fine-tuned
            --prune-epochs with the mask held), the file codec.code_fit writes: per tensor, the
            empirical entropy of its own symbols (each tensor has its own histogram, as the codec codes
            it), the coded payload, and the "model" bytes around it (counts varints and stream framing:
            symbol_stream_nbytes minus the payload), and which coder (raw bits or categorical ANS) won
  speed     symbols/s of categorical ANS (encode_categorical / decode_categorical) and of plain bit
            packing (pack_bits / unpack_bits), both ways, on Laplace-distributed 8-bit symbols and on
            the real model's tensors (coded one tensor at a time, as the codec does), best of --repeats
  overhead  info.byte_split of the smallest file of the ladder, and of an extra point at bits 4,
            embed bits 4, prune 0.4 written with the metadata `cnerv encode` adds (and without it)

Examples:
  python benchmarks/entropy.py --device cpu --json-out benchmarks/results/entropy_cpu.json
  python benchmarks/entropy.py clip.mp4 --frames 60 --epochs 100 --bits 8 6 4 2 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cnervcodec.codec import code_fit, decode, encode_metadata
from cnervcodec.config import (
    CompressionConfig,
    FitConfig,
    PruneConfig,
    build_model_config,
)
from cnervcodec.fit import fit
from cnervcodec.format import entropy
from cnervcodec.format.chunks import CHUNK_FRAMING_BYTES
from cnervcodec.format.describe import byte_split
from cnervcodec.format.records import CODER_NAMES
from cnervcodec.format.stream import Container, read_container
from cnervcodec.format.tensor_records import symbol_stream_nbytes
from cnervcodec.metrics import bpp, quality_report
from cnervcodec.model import bitstream_tensors
from cnervcodec.prune import prune_fit, sparsity
from cnervcodec.tensor_coding import code_symbols, decode_symbols
from cnervcodec.video_io import FrameSelection, read_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import describe, pick_device, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Coded size vs entropy


def tensor_rows(container: Container, names: list[str]) -> list[dict]:
    """One row per coded tensor (decoder tensors, then the embeddings): symbols, entropy, coded bytes."""
    records = list(container.decoder) + ([container.embeddings] if container.embeddings is not None else [])
    rows = []
    for name, record in zip(names + ["embeddings"], records):
        stream, bits = record.stream, record.quant.bits
        symbols = decode_symbols(stream, bits)  # the symbols the file holds, whichever coder holds them
        _, counts = entropy.symbol_counts(symbols, bits)
        payload = len(stream.payload)
        nbytes = symbol_stream_nbytes(stream)
        rows.append({
            "name": name, "shape": list(record.shape), "bits": bits, "n_symbols": int(stream.n_symbols),
            "distinct_symbols": int((counts > 0).sum()), "coder": CODER_NAMES[stream.coder],
            "entropy_bits": entropy.entropy_bits(counts), "payload_bytes": payload,
            "model_bytes": nbytes - payload, "stream_bytes": nbytes,
        })
    return rows


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def summarize(rows: list[dict]) -> dict:
    """Totals over all tensors, and over the categorically coded ones (where ANS efficiency shows)."""
    def totals(subset: list[dict]) -> dict:
        h = sum(r["entropy_bits"] for r in subset)
        payload = sum(r["payload_bytes"] for r in subset)
        model = sum(r["model_bytes"] for r in subset)
        return {"tensors": len(subset), "n_symbols": sum(r["n_symbols"] for r in subset), "entropy_bits": h,
                "entropy_bytes": h / 8, "payload_bytes": payload, "model_bytes": model,
                "payload_over_entropy": ratio(8 * payload, h),
                "coded_with_model_over_entropy": ratio(8 * (payload + model), h),
                "payload_minus_entropy_bytes": payload - h / 8}
    categorical = [r for r in rows if r["coder"] == "categorical"]
    return {"all": totals(rows), "categorical": totals(categorical), "raw": totals([r for r in rows if r["coder"] == "raw"])}


def measure_point(frames, fps, source, bits: int, embed_bits: int, prune: float, device,
                  names: list[str], metadata: dict | None = None) -> tuple[dict, Container, bytes]:
    """One ladder point: (row, the container as read back from its bytes, the bytes)."""
    config = CompressionConfig(weight_bits=bits, embed_bits=embed_bits)  # source is already pruned
    data = code_fit(source, fps, config, metadata=metadata)
    parsed = read_container(data)  # the file as a decoder sees it: chunk table included
    rows = tensor_rows(parsed, names)
    n_frames, _, height, width = frames.shape
    stream_bytes = sum(r["stream_bytes"] for r in rows)
    coded_chunks = sum(c.length for c in parsed.chunks if c.kind in ("DECO", "EMBD"))
    point = {
        "bits": bits, "embed_bits": embed_bits, "prune": prune, "sparsity": round(sparsity(source.network.decoder), 4),
        "file_bytes": len(data), "bpp": bpp(len(data), n_frames, height, width),
        "psnr": quality_report(frames, decode(data, device=device)).psnr,
        # DECO + EMBD bytes that are neither symbol stream: tensor count, shapes, bits, axis, (offset, scale) pairs
        "record_bytes_outside_streams": coded_chunks - stream_bytes,
        "summary": summarize(rows), "tensors": rows,
    }
    return point, parsed, data


# ---------------------------------------------------------------------------------------------
# Coder throughput


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def laplace_symbols(n: int, scale: float, seed: int = 0) -> np.ndarray:
    """8-bit symbols from a Laplace centred on 128 (what quantized weights look like), clipped to [0, 255]."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.laplace(128.0, scale, n)), 0, 255).astype(np.int32)


def throughput_synthetic(n: int, scale: float, repeats: int) -> dict:
    symbols = laplace_symbols(n, scale)
    t_hist, (first, counts) = best_time(lambda: entropy.symbol_counts(symbols, 8), repeats)
    t_enc, words = best_time(lambda: entropy.encode_categorical(symbols, 8, first, counts), repeats)
    t_dec, back = best_time(lambda: entropy.decode_categorical(words, n, first, counts), repeats)
    t_pack, packed = best_time(lambda: entropy.pack_bits(symbols, 8), repeats)
    t_unpack, unpacked = best_time(lambda: entropy.unpack_bits(packed, 8, n), repeats)
    if not (np.array_equal(back, symbols) and np.array_equal(unpacked, symbols)):
        raise AssertionError("round trip failed on synthetic symbols")
    h = entropy.entropy_bits(counts)
    return {"source": f"Laplace(128, {scale:g}), 8-bit", "n_symbols": n, "tensors": 1,
            "entropy_bits_per_symbol": h / n, "ans_bits_per_symbol": 32 * words.size / n,
            "histogram_sps": n / t_hist, "ans_encode_sps": n / t_enc, "ans_decode_sps": n / t_dec,
            "pack_sps": n / t_pack, "unpack_sps": n / t_unpack}


def throughput_model(container: Container, label: str, repeats: int) -> dict:
    """Every tensor of a real file, one coder call per tensor with its own histogram (as the codec does)."""
    records = list(container.decoder) + ([container.embeddings] if container.embeddings is not None else [])
    tensors = [(decode_symbols(r.stream, r.quant.bits), r.quant.bits) for r in records]
    n = sum(s.size for s, _ in tensors)
    models = [entropy.symbol_counts(s, b) for s, b in tensors]

    def run(fn):
        return best_time(lambda: [fn(i) for i in range(len(tensors))], repeats)

    t_hist, _ = run(lambda i: entropy.symbol_counts(*tensors[i]))
    t_enc, words = run(lambda i: entropy.encode_categorical(tensors[i][0], tensors[i][1], *models[i]))
    t_dec, back = run(lambda i: entropy.decode_categorical(words[i], tensors[i][0].size, *models[i]))
    t_pack, packed = run(lambda i: entropy.pack_bits(*tensors[i]))
    t_unpack, unpacked = run(lambda i: entropy.unpack_bits(packed[i], tensors[i][1], tensors[i][0].size))
    t_code, streams = run(lambda i: code_symbols(*tensors[i]))
    t_decode, decoded = run(lambda i: decode_symbols(streams[i], tensors[i][1]))
    for (s, _), a, b, c in zip(tensors, back, unpacked, decoded):
        if not (np.array_equal(a, s) and np.array_equal(b, s) and np.array_equal(c, s)):
            raise AssertionError("round trip failed on the model's symbols")
    h = sum(entropy.entropy_bits(counts) for _, counts in models)
    return {"source": label, "n_symbols": n, "tensors": len(tensors),
            "entropy_bits_per_symbol": h / n, "ans_bits_per_symbol": 32 * sum(w.size for w in words) / n,
            "histogram_sps": n / t_hist, "ans_encode_sps": n / t_enc, "ans_decode_sps": n / t_dec,
            "pack_sps": n / t_pack, "unpack_sps": n / t_unpack,
            "code_symbols_sps": n / t_code, "decode_symbols_sps": n / t_decode}


# ---------------------------------------------------------------------------------------------
# Header overhead


def split_row(label: str, container: Container, n_bytes: int) -> dict:
    split = byte_split(container, n_bytes)
    other = {c.kind: c.length + CHUNK_FRAMING_BYTES for c in container.chunks if c.kind not in ("DECO", "EMBD", "audi")}
    detail = {"preamble": split["overhead"] - sum(other.values()), **other}  # preamble: signature and version
    return {"file": label, "bytes": n_bytes, "split": split,
            "split_percent": {k: 100 * v / n_bytes for k, v in split.items()}, "overhead_detail": detail}


# ---------------------------------------------------------------------------------------------
# Output


def fmt_rate(sps: float | None) -> str:
    return "-" if sps is None else f"{sps / 1e6:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_tables(meta: dict, points: list[dict], speeds: list[dict], splits: list[dict]) -> None:
    print_table(
        f"Coded size vs empirical entropy: {meta['title']}; {meta['load']}",
        ["bits", "embed bits", "prune", "zeros", "bytes", "bpp", "PSNR dB", "tensors raw/cat", "symbols",
         "entropy B", "payload B", "model B", "payload/H", "payload/H (cat only)", "(payload+model)/H",
         "record B outside streams"],
        [[p["bits"], p["embed_bits"], p["prune"], f"{p['sparsity']:.3f}", f"{p['file_bytes']:,}", f"{p['bpp']:.4f}",
          f"{p['psnr']:.2f}", f"{p['summary']['raw']['tensors']}/{p['summary']['categorical']['tensors']}",
          f"{p['summary']['all']['n_symbols']:,}", f"{p['summary']['all']['entropy_bytes']:,.0f}",
          f"{p['summary']['all']['payload_bytes']:,}", f"{p['summary']['all']['model_bytes']:,}",
          fmt_ratio(p["summary"]["all"]["payload_over_entropy"]),
          fmt_ratio(p["summary"]["categorical"]["payload_over_entropy"]),
          fmt_ratio(p["summary"]["all"]["coded_with_model_over_entropy"]), f"{p['record_bytes_outside_streams']:,}"]
         for p in points],
    )
    for p in (points[0], points[-1]):
        print_table(
            f"Per tensor at bits {p['bits']}, embed bits {p['embed_bits']}, prune {p['prune']}",
            ["tensor", "shape", "symbols", "distinct", "coder", "H bits/sym", "coded bits/sym", "entropy B",
             "payload B", "model B", "payload/H"],
            [[r["name"], "x".join(map(str, r["shape"])), f"{r['n_symbols']:,}", r["distinct_symbols"], r["coder"],
              f"{r['entropy_bits'] / r['n_symbols']:.3f}", f"{8 * r['payload_bytes'] / r['n_symbols']:.3f}",
              f"{r['entropy_bits'] / 8:,.1f}", f"{r['payload_bytes']:,}", r["model_bytes"],
              "-" if not r["entropy_bits"] else f"{8 * r['payload_bytes'] / r['entropy_bits']:.4f}"]
             for r in p["tensors"]],
        )
    print_table(
        f"Coder throughput, M symbols/s, best of {meta['repeats']} (numpy + constriction, one CPU thread; {meta['load']})",
        ["symbols", "count", "tensors", "H bits/sym", "ANS bits/sym", "histogram", "ANS encode", "ANS decode",
         "pack_bits", "unpack_bits", "code_symbols", "decode_symbols"],
        [[s["source"], f"{s['n_symbols']:,}", s["tensors"], f"{s['entropy_bits_per_symbol']:.4f}",
          f"{s['ans_bits_per_symbol']:.4f}", fmt_rate(s["histogram_sps"]), fmt_rate(s["ans_encode_sps"]),
          fmt_rate(s["ans_decode_sps"]), fmt_rate(s["pack_sps"]), fmt_rate(s["unpack_sps"]),
          fmt_rate(s.get("code_symbols_sps")), fmt_rate(s.get("decode_symbols_sps"))] for s in speeds],
    )
    print_table(
        "Where the bytes go at the lowest rates (info.byte_split; overhead = preamble + HEAD + meta + FEND)",
        ["file", "bytes", "model", "embeddings", "audio", "overhead", "overhead detail"],
        [[s["file"], f"{s['bytes']:,}"]
         + [f"{s['split'][k]:,} ({s['split_percent'][k]:.1f} %)" for k in ("model", "embeddings", "audio", "overhead")]
         + [", ".join(f"{k} {v}" for k, v in s["overhead_detail"].items())] for s in splits],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", default=str(ROOT / "tests/data/carphone_qcif.mp4"))
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", default="S")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    parser.add_argument("--embed-bits", type=int, default=6)
    parser.add_argument("--prune", type=float, nargs="+", default=[0.0, 0.4])
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--laplace", type=int, nargs="*", default=[1_000_000, 10_000_000],
                        help="synthetic symbol counts for the throughput table")
    parser.add_argument("--laplace-scale", type=float, default=4.0, help="Laplace scale b, in quantization steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the fit [default: usable CPUs]")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or max(1, len(os.sched_getaffinity(0))))
    load_start = os.getloadavg()
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames))
    frames = clip.frames
    model = build_model_config("cnerv", args.size, clip.height, clip.width)
    fitted = fit(frames, model, FitConfig(epochs=args.epochs), device)
    names = [name for name, _ in bitstream_tensors(fitted.network.decoder)]
    log = lambda row: print(json.dumps(row), file=sys.stderr, flush=True)  # noqa: E731

    points, pruned = [], {}
    for prune in args.prune:
        pruned[prune] = prune_fit(frames, fitted, PruneConfig(fraction=prune, epochs=args.prune_epochs), device)
        for bits in args.bits:
            point, parsed, _ = measure_point(frames, clip.fps, pruned[prune], bits, args.embed_bits, prune, device, names)
            point["_container"] = parsed
            points.append(point)
            log({k: v for k, v in point.items() if k not in ("tensors", "_container")})

    # The lowest-rate point: bits 4, embed bits 4, prune 0.4, as `cnerv encode` would write it (with its
    # metadata chunk) and without metadata.
    low_prune = PruneConfig(fraction=0.4, epochs=args.prune_epochs)
    source = pruned[0.4] if 0.4 in pruned else prune_fit(frames, fitted, low_prune, device)
    low, low_parsed, _ = measure_point(frames, clip.fps, source, 4, 4, 0.4, device, names)
    log({k: v for k, v in low.items() if k != "tensors"})
    cli_meta = encode_metadata(Path(args.clip).name, args.size, "fast", FitConfig(epochs=args.epochs),
                               CompressionConfig(weight_bits=4, embed_bits=4), low_prune)
    with_meta = measure_point(frames, clip.fps, source, 4, 4, 0.4, device, names, cli_meta)[2]
    smallest = min(points, key=lambda p: p["file_bytes"])
    splits = [
        split_row(f"smallest of the ladder (bits {smallest['bits']}, embed {smallest['embed_bits']}, "
                  f"prune {smallest['prune']}), no meta", smallest["_container"], smallest["file_bytes"]),
        split_row("bits 4, embed 4, prune 0.4, no meta", low_parsed, low["file_bytes"]),
        split_row("bits 4, embed 4, prune 0.4, with `cnerv encode`'s meta", read_container(with_meta), len(with_meta)),
    ]
    for s in splits:
        log(s)

    speeds = [throughput_synthetic(n, args.laplace_scale, args.repeats) for n in args.laplace]
    for p in [points[0]] + ([smallest] if smallest is not points[0] else []):
        speeds.append(throughput_model(p["_container"], f"model: bits {p['bits']}, embed {p['embed_bits']}, "
                                       f"prune {p['prune']}", args.repeats))
    for s in speeds:
        log(s)

    for p in points:
        p.pop("_container")
    load_end = os.getloadavg()
    meta = {
        "title": (f"{Path(args.clip).name}, {clip.n_frames} frames {clip.width}x{clip.height}, size {args.size}, "
                  f"{args.epochs} epochs (+{args.prune_epochs} after pruning), {describe(device)}; "
                  f"H = sum over tensors of each tensor's own empirical entropy"),
        "load": f"1-min load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end",
        "repeats": args.repeats, "device_cpu": describe(torch.device("cpu")),
    }
    print_tables(meta, points + [low], speeds, splits)
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "clip": args.clip, "frames": clip.n_frames, "size": args.size, "epochs": args.epochs,
            "prune_epochs": args.prune_epochs, "device": describe(device), "torch_threads": torch.get_num_threads(),
            "loadavg_start": load_start, "loadavg_end": load_end,
            "fit_seconds": fitted.fit_seconds, "points": points, "lowest_rate_point": low,
            "throughput": speeds, "byte_split": splits}, indent=1))


if __name__ == "__main__":
    main()
