"""The CNeRV paper's comparisons at this machine's scale, beside the paper's own figures.

One clip in the paper's low-frame-rate setting (Big Buck Bunny, every --step-th frame, --holdout 5:
1 frame in 5 unseen), every method fitted with the same recipe (epochs, seed, batch; learning rates
as ``cnerv fit`` defaults them) at CNeRV's total parameter count for --size:

  table 6   CNeRV vs NeRV: seen / unseen PSNR and MS-SSIM, their gap
  table 7   the time to encode unseen frames: CNeRV's forward pass vs NeRV fine-tuned to the same
            unseen PSNR (benchmarks/generalization.py part a)
  table 8   CNeRV against the autoencoders (ConvAE, ConvVAE, ConvAE*) and the content-conditioned
            pixel-wise INRs (SIREN, FFN, NeRF-PE, MLF): code length, total size, fit time, seen /
            unseen PSNR, encoder size, encoding time per frame (forward pass, frames on the device)
  table 15  unseen frames from their own embedding vs blends of their neighbours' embeddings vs
            pixel blends (generalization.py part d, gap 2)
  table 21  embedding uniformity (seen / unseen / all), neighbour and normalized distance, and the
            linear CKA between methods (cnervcodec.eval.embedding_analysis)

It writes --md-out (Markdown: every table with the paper's figures in adjacent columns, the run's
conditions, and a reading of whether the paper's ranking holds, computed from the numbers) and
--json-out (every number). The paper's figures are its Bunny rows (480x960, 2k training images,
64-68 M parameters, many more epochs on a GPU); here the networks are ~100 times smaller and the
frames ~12 times fewer pixels, so absolute PSNRs differ; the comparison is of rankings and gaps.

Examples:
  python benchmarks/paper.py                                        # about an hour on a 2-core CPU
  python benchmarks/paper.py --epochs 2 --frames 20 --md-out /tmp/p.md --json-out /tmp/p.json   # smoke run
  python benchmarks/paper.py --device cuda --scale 960x480 --size L --epochs 300 --md-out paper_cuda.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generalization as gen  # noqa: E402
from fit_speed import describe, print_table  # noqa: E402

from cnervcodec.baselines.config import BASELINE_ARCHS, default_lr  # noqa: E402
from cnervcodec.baselines.networks import matched_config  # noqa: E402
from cnervcodec.baselines.report import baseline_report  # noqa: E402
from cnervcodec.baselines.train import baseline_codes, fit_baseline  # noqa: E402
from cnervcodec.config import FitConfig  # noqa: E402
from cnervcodec.embedding import index_encoding  # noqa: E402
from cnervcodec.eval.embedding_analysis import LabeledEmbeddings, analyze, plot_cka  # noqa: E402
from cnervcodec.fit import fitted_embeddings, holdout_split  # noqa: E402
from cnervcodec.errors import BadInputError  # noqa: E402
from cnervcodec.fit_report import fit_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("cnerv", "nerv", *BASELINE_ARCHS)
LABELS = {"cnerv": "CNeRV", "nerv": "NeRV", "convae": "ConvAE", "convvae": "ConvVAE", "convae-star": "ConvAE*",
          "siren": "SIREN", "ffn": "FFN", "nerf-pe": "NeRF-PE", "mlf": "MLF"}
PIXEL_WISE = ("siren", "ffn", "nerf-pe", "mlf")

# The paper's Bunny figures. Table 8: embed length, total size, seen, unseen PSNR, encoder size, encode ms.
PAPER_T8 = {"siren": ("480", "66M", 15.82, 15.79, "62M", 16.9), "ffn": ("480", "66M", 20.69, 20.33, "62M", 16.9),
            "nerf-pe": ("480", "66M", 21.04, 20.56, "62M", 16.9), "mlf": ("480", "66M", 21.13, 20.61, "62M", 16.9),
            "convae": ("480", "68M", 24.29, 23.2, "47M", 13.4), "convvae": ("480", "68M", 23.92, 21.71, "46M", 13.7),
            "convae-star": ("12k", "68M", 26.83, 26.15, "1.9M", 2.9), "cnerv": ("480", "64M", 33.83, 26.85, "0.4M", 0.37)}
# Table 6 (A.7), Bunny, 2k images: model size -> (seen, unseen, gap PSNR, seen, unseen MS-SSIM) for NeRV and CNeRV.
PAPER_T6 = {"Small (32M)": {"nerv": (31.0, 16.72, 14.28, 0.8977, 0.5289), "cnerv": (31.33, 26.41, 4.92, 0.911, 0.8198)},
            "Medium (64M)": {"nerv": (33.53, 16.46, 17.07, 0.919, 0.4933), "cnerv": (33.83, 26.85, 6.98, 0.9539, 0.8242)}}
PAPER_T7 = {"nerv": (26.59, 0.14), "cnerv": (26.85, 16.1)}  # Bunny: unseen PSNR, unseen frames encoded per second
PAPER_T15 = {"pixel": 27.64, "own": 26.98, "linear": 24.94}  # Bunny row as printed (its MCL row has 26.85 as "own")
PAPER_T21 = {"ffn": (1.18, 1.17, 1.18, 0.09, 0.07), "nerf-pe": (1.46, 1.46, 1.46, 0.10, 0.07),
             "mlf": (1.39, 1.38, 1.38, 0.14, 0.10), "convae": (2.00, 1.97, 1.99, 0.14, 0.07),
             "convvae": (2.71, 2.71, 2.71, 0.21, 0.08), "nerv": (3.97, 3.96, 3.97, 3.60, 0.91),
             "cnerv": (0.23, 0.23, 0.23, 0.03, 0.15)}


def log(row: dict) -> None:
    print(json.dumps(row), file=sys.stderr, flush=True)


def f2(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(title: str, header: list[str], cells: list[list[Any]]) -> str:
    """One Markdown table under a heading (fit_speed.print_table, captured)."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        print_table(title, header, cells)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ fits


def fit_cnerv_nerv(bench: gen.Bench, arch: str) -> tuple[dict[str, Any], torch.Tensor]:
    """The --holdout fit of CNeRV or NeRV (generalization.holdout_fit, shared with tables 7 and 15), its
    report and its per-frame embeddings (NeRV: the index encoding of its frame times)."""
    result = gen.holdout_fit(bench, arch)
    report = fit_report(result, bench.clip, bench.device, bench.args.size)
    if arch == "cnerv":
        embeddings = fitted_embeddings(result)
    else:
        config = result.network.config
        embeddings = index_encoding(result.inputs.cpu(), config.nerv_pe_freqs, config.nerv_pe_base)
    return report, embeddings


def fit_other(bench: gen.Bench, arch: str) -> tuple[dict[str, Any], torch.Tensor]:
    """A baseline fitted with the same recipe as CNeRV (its own default learning rate), report and codes."""
    args, clip = bench.args, bench.clip
    config, _ = matched_config(arch, args.size, clip.height, clip.width)
    recipe = bench.fit_config(holdout=gen.HOLDOUT, lr=default_lr(arch, FitConfig.lr))
    fitted = fit_baseline(clip.frames, config, recipe, bench.device)
    report = baseline_report(fitted, clip, bench.device, args.size)
    return report, baseline_codes(fitted, bench.device)


def run_fits(bench: gen.Bench, archs: list[str]) -> tuple[dict[str, dict[str, Any]], list[LabeledEmbeddings]]:
    reports, embeddings = {}, []
    seen, unseen = holdout_split(bench.clip.n_frames, gen.HOLDOUT)
    for arch in archs:
        start = time.monotonic()
        report, codes = (fit_cnerv_nerv if arch in ("cnerv", "nerv") else fit_other)(bench, arch)
        report["wall_seconds"] = round(time.monotonic() - start, 1)
        reports[arch] = report
        embeddings.append(LabeledEmbeddings(LABELS[arch], arch, codes.flatten(1).double(), seen, unseen))
        log({"arch": arch, "seen_psnr": report["seen"]["psnr"], "unseen_psnr": report["unseen"]["psnr"],
             "fit_seconds": report["fit_seconds"], "encode_ms_per_frame": report["encode_ms_per_frame"]})
    return reports, embeddings


# ---------------------------------------------------------------------------------------- tables


def table_6(by_size: dict[str, dict[str, dict[str, Any]]]) -> str:
    """CNeRV and NeRV at each --size fitted (``by_size``: size -> arch -> report)."""
    cells = []
    for size, reports in by_size.items():
        for arch in ("nerv", "cnerv"):
            if arch not in reports:
                continue
            r = reports[arch]
            seen, unseen = r["seen"], r["unseen"]
            ours = [f"{seen['psnr']:.2f}", f"{unseen['psnr']:.2f}", f"{r['gap_psnr']:.2f}", f"{seen['ms_ssim']:.4f}",
                    f"{unseen['ms_ssim']:.4f}"]
            paper = [" / ".join(f"{PAPER_T6[name][arch][i]:g}" for name in PAPER_T6) for i in range(5)]
            cells.append([LABELS[arch], size, f"{r['total_params']:,}", f"{r['fit_seconds']:.0f}"]
                         + [f"{o} ({p})" for o, p in zip(ours, paper)])
    header = ["method", "size", "total params", "fit s", "seen PSNR", "unseen PSNR", "gap dB", "seen MS-SSIM",
              "unseen MS-SSIM"]
    return table("Table 6: CNeRV vs NeRV, seen and unseen frames; here (paper Bunny: Small / Medium)", header, cells)


def table_7(part_a: dict[str, Any]) -> str:
    tune = part_a["nerv_fine_tune"]
    bound = ">" if part_a["nerv_over_cnerv_time_is_lower_bound"] else ""
    nerv_fps = part_a["nerv_unseen_frames_per_s"]
    cells = [["NeRV", "fine-tuned on all frames until its unseen PSNR reaches CNeRV's", f"{tune['unseen_psnr_db_at_stop']:.2f}",
              f"{PAPER_T7['nerv'][0]:.2f}", "-" if nerv_fps is None else f"{nerv_fps:.3g}", f"{PAPER_T7['nerv'][1]:g}"],
             ["CNeRV", "encoder forward pass (block projection + one layer)", f"{part_a['cnerv']['unseen_psnr_db']:.2f}",
              f"{PAPER_T7['cnerv'][0]:.2f}", f"{part_a['cnerv_unseen_frames_per_s']:.1f}", f"{PAPER_T7['cnerv'][1]:g}"],
             ["CNeRV", "the same + decoding the frame", "", "", f"{part_a['cnerv_unseen_embed_decode_frames_per_s']:.1f}", ""]]
    header = ["method", "how an unseen frame is encoded", "unseen PSNR", "paper", "unseen frames/s", "paper"]
    title = (f"Table 7: encoding unseen frames; NeRV needs {bound}{part_a['nerv_over_cnerv_time']:,.0f}x CNeRV's time "
             f"(paper: {PAPER_T7['cnerv'][1] / PAPER_T7['nerv'][1]:.0f}x; NeRV fine-tune lr {tune['lr']:g}, "
             f"budget {tune['budget_s']:g} s)")
    return table(title, header, cells)


def table_8(reports: dict[str, dict[str, Any]]) -> str:
    cells = []
    for arch in ("siren", "ffn", "nerf-pe", "mlf", "convae", "convvae", "convae-star", "cnerv", "nerv"):
        if arch not in reports:
            continue
        r, p = reports[arch], PAPER_T8.get(arch, ("-",) * 6)
        image_wise = "" if arch in PIXEL_WISE else "yes"
        encode = "-" if r["encode_ms_per_frame"] is None else f"{r['encode_ms_per_frame']:.3f}"
        cells.append([LABELS[arch], image_wise, f"{r['embedding_values_per_frame']:,} ({p[0]})",
                      f"{r['total_params']:,} ({p[1]})", f"{r['fit_seconds']:.0f}", f"{r['seen']['psnr']:.2f}",
                      f2(p[2]) if p[2] != "-" else "-", f"{r['unseen']['psnr']:.2f}", f2(p[3]) if p[3] != "-" else "-",
                      f"{r['encoder_params']:,} ({p[4]})", f"{encode} ({p[5]})"])
    header = ["method", "image-wise", "embedding values (paper)", "total params (paper)", "fit s", "seen PSNR",
              "paper", "unseen PSNR", "paper", "encoder params (paper)", "encode ms/frame (paper)"]
    return table("Table 8: autoencoders and pixel-wise INRs at CNeRV's total size and code length", header, cells)


def table_15(part_d: dict[str, Any]) -> str:
    rows = {r["method"]: r for r in part_d.get("rows", []) if r["gap"] == 2}
    picks = [("own embedding (encoder on the frame)", "own"), ("linear blend of neighbours' embeddings", "linear"),
             ("slerp blend of neighbours' embeddings", None), ("pixel blend of decoded neighbours", None),
             ("pixel blend of original neighbours", "pixel")]
    cells = [[method, rows[method]["frames"], f"{rows[method]['psnr_db']:.2f}",
              f"{PAPER_T15[key]:.2f}" if key else "-"] for method, key in picks if method in rows]
    return table("Table 15: unseen frame i rebuilt from its neighbours i-1, i+1 (CNeRV)",
                 ["method", "frames", "PSNR dB", "paper (Bunny)"], cells)


def table_21(analysis: dict[str, Any]) -> str:
    cells = []
    for m in analysis["methods"]:
        paper = PAPER_T21.get(m["arch"])
        ours = [m["uniformity_seen"], m["uniformity_unseen"], m["uniformity_all"], m["neighbour_distance"],
                m["normalized_distance"]]
        cells.append([m["label"], m["dim"]] + [f"{f2(o)} ({f2(paper[i]) if paper else '-'})" for i, o in enumerate(ours)])
    header = ["method", "values", "uniformity seen", "unseen", "all", "neighbour distance", "normalized distance"]
    text = table("Table 21: embedding analysis, here (paper)", header, cells)
    labels = analysis["cka"]["labels"]
    matrix = [[label] + [f2(v) for v in row] for label, row in zip(labels, analysis["cka"]["matrix"])]
    return text + table("Linear CKA between the methods' embeddings of the same frames (paper figure 13)",
                        ["CKA"] + labels, matrix)


def ranking_line(name: str, values: dict[str, float], among: str) -> str:
    order = sorted(values, key=values.get, reverse=True)
    ranking = " > ".join(f"{LABELS[a]} {values[a]:.2f}" for a in order)
    verdict = "holds" if order and order[0] == "cnerv" else "does not hold"
    return f"- {name} PSNR, {among}: {ranking}. CNeRV best: {verdict}."


def reading(reports: dict[str, dict[str, Any]]) -> str:
    """Whether the paper's ranking holds here, decided from the numbers: CNeRV best on seen and unseen
    among the table 8 methods (all of equal total size; all but ConvAE* also of CNeRV's code length),
    the pixel-wise INRs the worst, CNeRV's unseen PSNR above NeRV's with a smaller gap."""
    table8 = [a for a in reports if a != "nerv"]
    same_code = [a for a in table8 if reports[a]["embedding_values_per_frame"] == reports.get("cnerv", {}).get(
        "embedding_values_per_frame")]
    lines = ["\n### Reading (computed from the tables above)\n"]
    for name in ("seen", "unseen"):
        values = {a: reports[a][name]["psnr"] for a in table8}
        lines.append(ranking_line(name, values, "all table 8 methods (equal total size)"))
        if len(same_code) < len(table8):
            lines.append(ranking_line(name, {a: values[a] for a in same_code}, "those with CNeRV's code length "
                                      "(without ConvAE*)"))
    inrs = [a for a in table8 if a in PIXEL_WISE]
    others = [a for a in table8 if a not in PIXEL_WISE]
    for name in ("seen", "unseen") if inrs and others else ():
        values = {a: reports[a][name]["psnr"] for a in table8}
        bottom = sorted(table8, key=values.get)[: len(inrs)]
        worst_other, best_inr = min(values[a] for a in others), max(values[a] for a in inrs)
        verdict = "holds" if best_inr < worst_other else (
            f"does not hold: the bottom {len(inrs)} are {', '.join(LABELS[a] for a in bottom)}")
        lines.append(f"- pixel-wise INRs the worst on {name} PSNR (best INR {best_inr:.2f}, worst other method "
                     f"{worst_other:.2f} dB): {verdict}.")
    if "nerv" in reports and "cnerv" in reports:
        c, n = reports["cnerv"], reports["nerv"]
        holds = c["unseen"]["psnr"] > n["unseen"]["psnr"] and c["gap_psnr"] < n["gap_psnr"]
        lines.append(f"- CNeRV vs NeRV: unseen {c['unseen']['psnr']:.2f} vs {n['unseen']['psnr']:.2f} dB, gap "
                     f"{c['gap_psnr']:.2f} vs {n['gap_psnr']:.2f} dB (paper: CNeRV's unseen higher, its gap smaller): "
                     f"{'holds' if holds else 'does not hold'}.")
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    """The whole results page from the run's JSON (also what --render rebuilds without fitting again)."""
    parts = [f"# The paper's comparisons on this machine\n\n`python benchmarks/{Path(__file__).name} "
             f"{' '.join(report['argv'])}`\n\n{report['conditions']}. In each cell: this run (the paper's Bunny "
             "figure).\n", table_6(report["table_6"])]
    if report["table_7"] and "skipped" not in report["table_7"]:
        parts.append(table_7(report["table_7"]))
    parts.append(table_8(report["fits"]))
    if report["table_15"].get("rows"):
        parts.append(table_15(report["table_15"]))
    parts += [table_21(report["analysis"]), reading(report["fits"])]
    return "".join(parts)


# ------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(ROOT.parent / "shared/clips/bigbuckbunny_720p.mp4"))
    parser.add_argument("--step", type=int, default=2, help="keep every N-th frame (the paper's low-frame-rate setting) [2]")
    parser.add_argument("--frames", type=int, default=None, help="at most N frames after --step [all]")
    parser.add_argument("--scale", default=(256, 144), type=gen.scale_arg, help="WxH [256x144]")
    parser.add_argument("--size", default="S", choices=["S", "M", "L"])
    parser.add_argument("--epochs", type=int, default=60, help="epochs of every fit [60]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--table6-sizes", nargs="*", default=["M"], choices=["S", "M", "L"],
                        help="table 6: CNeRV and NeRV also fitted at these sizes (the paper's model-size rows) [M]")
    parser.add_argument("--nerv-budget-s", type=float, default=120.0, help="table 7: NeRV fine-tune limit, seconds [120]")
    parser.add_argument("--nerv-lr", type=float, default=5e-4, help="table 7: NeRV fine-tune lr, constant [5e-4]")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="rebuild --md-out from a run's --json-out, fitting nothing")
    parser.add_argument("--plot-out", type=Path, default=ROOT / "benchmarks/results/paper_cka_cpu.png",
                        help="the CKA heatmap PNG (needs matplotlib) [benchmarks/results/paper_cka_cpu.png]")
    parser.add_argument("--md-out", type=Path, default=ROOT / "benchmarks/results/paper_cpu.md")
    parser.add_argument("--json-out", type=Path, default=ROOT / "benchmarks/results/paper_cpu.json")
    return parser.parse_args()


def write_outputs(report: dict[str, Any], args: argparse.Namespace) -> None:
    """The Markdown page and, with --plot-out, the CKA heatmap (skipped with a note without matplotlib)."""
    page = markdown(report)
    if args.plot_out is not None:
        try:
            plot_cka(report["analysis"]["cka"], args.plot_out, title=f"linear CKA between embeddings ({report['conditions'].split(',')[0]})")
            page += f"\n![linear CKA between the methods' embeddings]({args.plot_out.name})\n"
        except BadInputError as exc:
            log({"plot": str(exc)})
    args.md_out.write_text(page)
    print(page)


def main() -> None:
    args = parse_args()
    if args.render is not None:
        write_outputs(json.loads(args.render.read_text()), args)
        return
    bench = gen.open_bench(args, step=args.step)
    clip, device = bench.clip, bench.device
    load_start, start = os.getloadavg(), time.monotonic()
    reports, embeddings = run_fits(bench, args.archs)
    both = "cnerv" in args.archs and "nerv" in args.archs
    part_a = gen.part_a(bench) if both else None
    part_d = gen.part_d(bench) if "cnerv" in args.archs else {}
    analysis = analyze(embeddings)
    by_size = {args.size: reports}
    for size in [s for s in args.table6_sizes if s != args.size and both]:
        sized = gen.Bench(argparse.Namespace(**{**vars(args), "size": size}), clip, device)
        by_size[size] = {arch: fit_cnerv_nerv(sized, arch)[0] for arch in ("nerv", "cnerv")}
    load_end = os.getloadavg()
    conditions = (f"{Path(args.clip).name}, --step {args.step}, {clip.n_frames} frames {clip.width}x{clip.height}, "
                  f"--holdout {gen.HOLDOUT}, size {args.size}, {args.epochs} epochs, seed {args.seed}, {describe(device)}, "
                  f"torch {torch.__version__}, 1-min load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end, "
                  f"{(time.monotonic() - start) / 60:.0f} min in all")
    report = {"argv": sys.argv[1:], "conditions": conditions, "fits": reports, "table_6": by_size, "table_7": part_a,
              "table_15": part_d, "analysis": analysis}
    args.json_out.write_text(json.dumps(report, indent=1, default=str))
    write_outputs(report, args)


if __name__ == "__main__":
    main()
