"""Structure-aware fuzzing of the readers: CRC-fixed mutations of real files, read and fully decoded (a benchmark).

Each case mutates one chunk's payload of a valid file (bit flips, random bytes, a numeric field set to
an edge value, cut, grown; tests/fuzzing.py), writes the chunk's length and CRC back, then reads and
decodes the whole file: every frame of a .cnrv (``codec.open_stream`` + ``render_frames``), the decoder
and encoder of a .cnrvm and one frame through them. A case must end in one of the package's own errors
or in frames; anything else is counted as escaped and printed. Files:

  golden    tests/data/golden_stream_v1_0.cnrv (12,306 B: 4 frames 48x32, a tiny network)
  carphone  a real `cnerv encode` of the shipped carphone clip, small enough to decode in ~15 ms:
            8 frames scaled to 88x72, size S, 2 fit epochs, --prune 0.2 (about 280 KB)
  model     a real `cnerv fit -o M.cnrvm` of the same frames (decoder 8-bit, encoder float32, about 1 MB)

Reports per file: cases, cases/s, refused (by error), decoded, escaped, the slowest case, and the worst
growth of resident memory during a case over the level before it (Linux VmHWM, reset before each
case through /proc/self/clear_refs), next to the same figure for decoding the unmutated file. Cases are split over --workers processes.

Example:
  python benchmarks/fuzz.py --cases 100000 --json-out benchmarks/results/fuzz_cpu.json
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import print_table  # noqa: E402
from fuzzing import decode_model, decode_stream, mutate, peak_growth_mib, run_case  # noqa: E402

DECODERS = {"golden": decode_stream, "carphone": decode_stream, "model": decode_model}


def make_files(folder: Path) -> dict[str, Path]:
    """The three files: the golden stream, and a real stream and model of the carphone clip."""
    import torch

    from cnervcodec.codec import EncodeSettings, encode, metadata
    from cnervcodec.config import CompressionConfig, FitConfig, PruneConfig, build_model_config
    from cnervcodec.fit import fit
    from cnervcodec.format.model_file import write_model_file
    from cnervcodec.trained_model import model_file_from_network
    from cnervcodec.video_io import FrameSelection, read_video

    torch.set_num_threads(1)
    clip = read_video(ROOT / "tests/data/carphone_qcif.mp4", select=FrameSelection(frames=8), scale=(88, 72))
    model = build_model_config("cnerv", "S", clip.height, clip.width)
    cpu = torch.device("cpu")
    settings = EncodeSettings(model=model, fit=FitConfig(epochs=2), prune=PruneConfig(fraction=0.2, epochs=1))
    stream = folder / "carphone_8f_88x72.cnrv"
    stream.write_bytes(encode(clip.frames, clip.fps, settings, cpu).data)
    fitted = fit(clip.frames, model, FitConfig(epochs=2), cpu)
    model_path = folder / "carphone_8f_88x72.cnrvm"
    model_path.write_bytes(write_model_file(model_file_from_network(
        fitted.network, CompressionConfig(), metadata(trained_on="carphone 8 frames 88x72"))))
    return {"golden": ROOT / "tests/data/golden_stream_v1_0.cnrv", "carphone": stream, "model": model_path}


def fuzz_worker(job: tuple[str, str, int, int, int]) -> dict:
    """Cases ``start`` .. ``start + count - 1`` of one file (case i uses the generator seeded with seed, i)."""
    import torch

    torch.set_num_threads(1)
    name, path, seed, start, count = job
    data, decode = Path(path).read_bytes(), DECODERS[name]
    baseline = peak_growth_mib(lambda: decode(data))  # warm-up, and the unmutated file's own peak growth
    outcomes: collections.Counter = collections.Counter()
    escaped, slowest, worst = [], (0.0, None), (0.0, None)
    began = time.perf_counter()
    for index in range(start, start + count):
        case = mutate(data, random.Random(f"{seed}-{index}"))
        result: list[str] = []
        t0 = time.perf_counter()
        try:
            growth = peak_growth_mib(lambda: result.append(run_case(case, decode)))
            outcome = result[0]
        except Exception as error:  # noqa: BLE001 (catching what should not escape is the point)
            outcome, growth = "escaped", 0.0
            if len(escaped) < 5:
                escaped.append(f"case {index} ({case.chunk} {case.mutation}): {type(error).__name__}: {error}"[:300])
        seconds = time.perf_counter() - t0
        outcomes[(case.chunk, outcome)] += 1
        if seconds > slowest[0]:
            slowest = (seconds, f"case {index} ({case.chunk} {case.mutation}, {outcome})")
        if growth > worst[0]:
            worst = (growth, f"case {index} ({case.chunk} {case.mutation}, {outcome})")
    return {"outcomes": [[list(k), v] for k, v in outcomes.items()], "escaped": escaped,
            "seconds": time.perf_counter() - began, "slowest": slowest, "worst_growth": worst,
            "unmutated_growth_mb": baseline}


def summarize(name: str, cases: int, parts: list[dict], wall_s: float) -> dict:
    outcomes: collections.Counter = collections.Counter()
    for part in parts:
        for (chunk, outcome), n in part["outcomes"]:
            outcomes[(chunk, outcome)] += n
    by_outcome: collections.Counter = collections.Counter()
    for (_, outcome), n in outcomes.items():
        by_outcome[outcome] += n
    slowest = max((p["slowest"] for p in parts), key=lambda s: s[0])
    worst = max((p["worst_growth"] for p in parts), key=lambda s: s[0])
    return {"file": name, "cases": cases, "cases_per_s": cases / wall_s, "wall_s": wall_s,
            "refused": sum(n for o, n in by_outcome.items() if o.startswith("refused")),
            "decoded": by_outcome["decoded"], "escaped": by_outcome["escaped"],
            "by_outcome": dict(by_outcome), "by_chunk": {f"{c} {o}": n for (c, o), n in sorted(outcomes.items())},
            "slowest_ms": slowest[0] * 1e3, "slowest_case": slowest[1],
            "worst_growth_mb": worst[0], "worst_growth_case": worst[1],
            "unmutated_growth_mb": max(p["unmutated_growth_mb"] for p in parts),
            "escaped_examples": [e for p in parts for e in p["escaped"]][:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="mutations per file")
    parser.add_argument("--files", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=max(1, len(os.sched_getaffinity(0))))
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="fuzz_") as tmp:
        files = make_files(Path(tmp))
        sizes = {name: files[name].stat().st_size for name in args.files}
        for name in args.files:
            per = -(-args.cases // args.workers)
            jobs = [(name, str(files[name]), args.seed, start, min(per, args.cases - start))
                    for start in range(0, args.cases, per)]
            began = time.perf_counter()
            with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
                parts = pool.map(fuzz_worker, jobs)
            rows.append(summarize(name, args.cases, parts, time.perf_counter() - began) | {"bytes": sizes[name]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    print_table(f"Fuzzing: CRC-fixed one-chunk mutations, read and fully decoded; {args.workers} worker(s), "
                f"seed {args.seed}", ["file", "bytes", "cases", "cases/s", "refused", "decoded", "escaped",
                                      "slowest case ms", "worst peak-memory growth MiB (unmutated file)"],
                [[r["file"], f"{r['bytes']:,}", f"{r['cases']:,}", f"{r['cases_per_s']:.0f}", f"{r['refused']:,}",
                  f"{r['decoded']:,}", r["escaped"], f"{r['slowest_ms']:.0f}", f"{r['worst_growth_mb']:.1f} ({r['unmutated_growth_mb']:.1f})"]
                 for r in rows])
    for r in rows:
        for example in r["escaped_examples"]:
            print(f"escaped ({r['file']}): {example}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"cases_per_file": args.cases, "seed": args.seed,
                                             "workers": args.workers, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
