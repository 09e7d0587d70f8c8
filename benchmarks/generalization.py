"""What only CNeRV can do, measured: frames it never saw, a fitted model reused, --fit-every, interpolation.

CNeRV embeds a frame from its own pixels (a fixed block projection and one 1x1 layer), so a fitted
decoder can rebuild frames it was never trained on; NeRV's index encoding carries no content, so it
must be trained on a frame to show it. Five parts (--parts), each printing one Markdown table under a
title line (clip, frames, size, epochs, device, torch threads, 1-min load average at the part's start
and end) and adding every number to --json-out (rewritten after each part, so a crash keeps the rest):

  a  CNeRV vs NeRV on unseen frames, --holdout 5, equal epochs: seen and unseen PSNR. CNeRV encodes an
     unseen frame in one forward pass; NeRV is fine-tuned on all frames until its unseen PSNR reaches
     CNeRV's or --nerv-budget-s of training runs out. Time per unseen frame and the ratio (paper,
     table 7: 0.13 vs 16.1 frames/s, about 124x)
  b  a model fitted on the clip's first half (all its frames) encodes the second half with
     codec.encode_with_model (standalone and --model-ref streams, --refine-steps 0 and N), against
     codec.encode fitting the second half from scratch with the same size and epochs: speed-up, bytes,
     bpp, PSNR
  c  codec.encode with FitConfig(fit_every=K) for each --fit-every K: time, PSNR of all, trained and
     untrained frames, bytes
  d  held-out frames rebuilt from interpolated embeddings (paper, table 15), with the fit of part a:
     the frame's own embedding vs linear and slerp blends (a = 0.5) of its neighbours' embeddings vs
     blending the neighbours' pixels; neighbours i-1, i+1 (gap 2) and i-2, i+2 (gap 4)
  e  the first-half model of part b on another clip of the same size (--other-clip, default foreman)
     against that clip's own fit; skipped when the clip is missing or its size differs

Times are wall-clock seconds of what a user waits for (encode times include rendering the decoded
frames that are scored, as codec.encode does); CNeRV's per-frame embedding time, like the paper's
encoding time, leaves out loading the frames. Stream sizes are whole files (the bytes codec.encode returns), coded
with 8-bit weights, 6-bit embeddings, no pruning.

Examples:
  python benchmarks/generalization.py                                   # carphone, 60 frames, 30 epochs
  OMP_NUM_THREADS=1 python benchmarks/generalization.py --frames 10 --epochs 1 --nerv-budget-s 5 --device cpu
  python benchmarks/generalization.py --parts a d --epochs 100 --device cuda --json-out generalization.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch

from cnervcodec.codec import (
    EncodeResult,
    EncodeSettings,
    decode,
    encode,
    encode_with_model,
)
from cnervcodec.config import CompressionConfig, FitConfig, build_model_config
from cnervcodec.embedding import network_inputs
from cnervcodec.errors import BadInputError
from cnervcodec.fit import (
    FitInterrupted,
    FitResult,
    fine_tune,
    fit,
    fitted_embeddings,
    training_split,
)
from cnervcodec.format.model_file import ModelFile, write_model_file
from cnervcodec.interpolate import interpolate_embeddings
from cnervcodec.metrics import bpp, psnr_rgb_db, quality_report, subset_quality
from cnervcodec.model import VideoNetwork, render, render_latents
from cnervcodec.trained_model import model_file_from_network
from cnervcodec.video_io import FrameSelection, VideoClip, parse_video_size, read_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import describe, pick_device, print_table, sync  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("a", "b", "c", "d", "e")
HOLDOUT = 5  # the paper holds out 1 frame in every 5
COMPRESSION = CompressionConfig(weight_bits=8, embed_bits=6)
EMBED_REPEATS = 5  # best-of for CNeRV's embedding time: a few ms per frame is easily disturbed
NERV_MAX_EPOCHS = 1_000_000  # the fine-tune is stopped by time or target, never by its epoch count


@dataclass
class Bench:
    """The clip, the options and the fits that several parts share (fitted once, on first use)."""

    args: argparse.Namespace
    clip: VideoClip
    device: torch.device
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> torch.Tensor:
        return self.clip.frames

    def fit_config(self, **changes: Any) -> FitConfig:
        """The one training recipe of every fit here, so that all parts compare at equal epochs."""
        return FitConfig(epochs=self.args.epochs, seed=self.args.seed, **changes)

    def model_config(self, arch: str = "cnerv", n_frames: int = 1):
        """Size preset at the clip's geometry; NeRV matched to CNeRV's decoder plus its embeddings."""
        return build_model_config(arch, self.args.size, self.clip.height, self.clip.width, n_frames=n_frames)


# ------------------------------------------------------------------------------------------ shared


def log(row: dict) -> None:
    """One JSON line on stderr per measurement: progress on long runs, stdout keeps only the tables."""
    print(json.dumps(row), file=sys.stderr, flush=True)


def holdout_fit(bench: Bench, arch: str) -> FitResult:
    """The --holdout 5 fit of ``arch`` on the whole clip (parts a and d share the CNeRV one)."""
    key = f"holdout_{arch}"
    if key not in bench.cache:
        n_frames = bench.clip.n_frames
        config = bench.model_config(arch, n_frames=n_frames)
        bench.cache[key] = fit(bench.frames, config, bench.fit_config(holdout=HOLDOUT), bench.device)
        log({"fit": arch, "holdout": HOLDOUT, "fit_seconds": round(bench.cache[key].fit_seconds, 2)})
    return bench.cache[key]


def halves(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and second half of the clip: the model's training frames and the frames it encodes."""
    middle = frames.shape[0] // 2
    return frames[:middle], frames[middle:]


def half_model(bench: Bench) -> dict[str, Any]:
    """A CNeRV model fitted on all frames of the clip's first half, as the .cnrvm a user would save
    (parts b and e share it)."""
    if "half_model" not in bench.cache:
        first, _ = halves(bench.frames)
        fitted = fit(first, bench.model_config("cnerv"), bench.fit_config(), bench.device)
        model_file = model_file_from_network(fitted.network, COMPRESSION, {"trained_on": f"{bench.clip.source} first {len(first)} frames"})
        bench.cache["half_model"] = {"model_file": model_file, "fit_seconds": fitted.fit_seconds,
                                     "model_bytes": len(write_model_file(model_file)), "frames": len(first)}
        log({"fit": "first half", "frames": len(first), "fit_seconds": round(fitted.fit_seconds, 2)})
    return bench.cache["half_model"]


def mean_psnr_db(per_frame: list[float], indices: torch.Tensor) -> float | None:
    """Mean of per-frame PSNRs over ``indices`` (None when there are none), as clip scores are averaged."""
    values = [per_frame[i] for i in indices.tolist()]
    return sum(values) / len(values) if values else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def timed(function: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """(result, wall seconds), the device synchronized so that queued GPU work is counted."""
    sync(device)
    start = time.perf_counter()
    result = function()
    sync(device)
    return result, time.perf_counter() - start


def encode_row(label: str, frames: torch.Tensor, result: EncodeResult, seconds: float, device: torch.device,
               model_file: ModelFile | None = None) -> dict[str, Any]:
    """Size and quality of an encode as a user gets them: the file's bytes, frames decoded from it."""
    n_frames, _, height, width = frames.shape
    n_bytes = len(result.data)
    quality = quality_report(frames, decode(result.data, model_file=model_file, device=device))
    return {"method": label, "frames": n_frames, "seconds": round(seconds, 3),
            "frames_per_s": n_frames / seconds if seconds > 0 else None,
            "fit_or_embed_seconds": round(result.fit_seconds, 3), "bytes": n_bytes,
            "bpp": bpp(n_bytes, n_frames, height, width), "psnr_db": quality.psnr,
            "psnr_yuv_db": quality.psnr_yuv, "ms_ssim": quality.ms_ssim,
            "per_frame_psnr_db": quality.per_frame_psnr}


def model_encode(frames: torch.Tensor, bench: Bench, model_file: ModelFile, label: str, *, model_ref: bool = False,
                 refine_steps: int = 0) -> dict[str, Any]:
    """Encode ``frames`` with a trained model (no fit): codec.encode_with_model, timed and scored."""
    run = lambda: encode_with_model(frames, bench.clip.fps, model_file, COMPRESSION, bench.device,  # noqa: E731
                                    model_ref=model_ref, refine_steps=refine_steps)
    result, seconds = timed(run, bench.device)
    row = {**encode_row(label, frames, result, seconds, bench.device, model_file), "model_ref": model_ref, "refine_steps": refine_steps}
    log({k: v for k, v in row.items() if k != "per_frame_psnr_db"})
    return row


def scratch_encode(frames: torch.Tensor, bench: Bench, label: str, fit_config: FitConfig | None = None) -> dict[str, Any]:
    """Encode ``frames`` the ordinary way, fitting a network of their own: codec.encode, timed and scored."""
    settings = EncodeSettings(model=bench.model_config("cnerv"), fit=fit_config or bench.fit_config(),
                              compression=COMPRESSION)
    result, seconds = timed(lambda: encode(frames, bench.clip.fps, settings, bench.device), bench.device)
    row = encode_row(label, frames, result, seconds, bench.device)
    log({k: v for k, v in row.items() if k != "per_frame_psnr_db"})
    return row


ENCODE_HEADER = ["method", "frames", "encode s", "frames/s", "speed-up", "bytes", "bpp", "PSNR dB", "PSNR-YUV dB", "MS-SSIM"]


def encode_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Table cells of encode rows (parts b and e): speed-up is the scratch encode's time over the row's."""
    return [[r["method"], r["frames"], f"{r['seconds']:.2f}", fmt(r["frames_per_s"], 1),
             fmt(r.get("speed_up"), 1) + ("x" if r.get("speed_up") else ""), f"{r['bytes']:,}", f"{r['bpp']:.4f}",
             f"{r['psnr_db']:.2f}", f"{r['psnr_yuv_db']:.2f}", f"{r['ms_ssim']:.4f}"] for r in rows]


def add_speed_ups(rows: list[dict[str, Any]], scratch_seconds: float) -> None:
    for row in rows:
        row["speed_up"] = scratch_seconds / row["seconds"] if row["seconds"] > 0 else None


# ------------------------------------------------------------------------- part a: unseen frames


@torch.inference_mode()
def time_embedding(network: VideoNetwork, frames_u8: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Best-of-``EMBED_REPEATS`` seconds for CNeRV to embed frames from their pixels (block projection
    and the 1x1 layer), and to embed and decode them: all a frame it never saw costs. Frames are put
    on the device first (the paper's encoding time also leaves out data loading)."""
    config = network.config
    frames = frames_u8.to(device)
    was_training = network.training
    network.eval()
    embed = lambda: network.encoder(network_inputs("cnerv", config.embedding, config.padded_size, frames))  # noqa: E731
    embed_decode = lambda: network(embed()).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()  # noqa: E731
    embed_decode()  # warm-up: kernels, allocator
    best = {"embed_seconds": math.inf, "embed_decode_seconds": math.inf}
    for _ in range(EMBED_REPEATS):
        best["embed_seconds"] = min(best["embed_seconds"], timed(embed, device)[1])
        best["embed_decode_seconds"] = min(best["embed_decode_seconds"], timed(embed_decode, device)[1])
    network.train(was_training)
    return best


def unseen_psnr_db(network: VideoNetwork, inputs: torch.Tensor, frames_u8: torch.Tensor) -> float:
    """Mean PSNR of the frames ``inputs`` decode to (uint8, as a decoder writes them)."""
    return float(psnr_rgb_db(frames_u8, render(network, inputs)).mean())


def fine_tune_nerv(bench: Bench, fitted: FitResult, target_psnr_db: float) -> dict[str, Any]:
    """Fine-tune (a copy of) the NeRV fit on all frames, seen and unseen, at a constant small lr until
    its unseen PSNR reaches ``target_psnr_db`` or --nerv-budget-s of training has passed: the price of
    a new frame for a network that can only memorize. Unseen PSNR is measured after every epoch; the
    time spent measuring is not counted."""
    frames, budget_s = bench.frames, bench.args.nerv_budget_s
    network = copy.deepcopy(fitted.network)
    unseen = fitted.unseen
    inputs = fitted.inputs[unseen.to(fitted.inputs.device)]
    recipe = FitConfig(epochs=NERV_MAX_EPOCHS, lr=bench.args.nerv_lr, batch=fitted.config.batch, warmup_frac=0.0,
                       min_lr_frac=1.0, seed=bench.args.seed)  # min_lr_frac 1: constant lr, whatever the epochs
    steps_per_epoch = math.ceil(frames.shape[0] / recipe.batch)
    state: dict[str, Any] = {"measure_s": 0.0, "reached_s": None, "reached_epochs": None}
    curve = [{"epochs": 0, "seconds": 0.0, "unseen_psnr_db": unseen_psnr_db(network, inputs, frames[unseen])}]
    if curve[0]["unseen_psnr_db"] >= target_psnr_db:
        state["reached_s"], state["reached_epochs"] = 0.0, 0
    start = time.monotonic()
    training_s = lambda: time.monotonic() - start - state["measure_s"]  # noqa: E731

    def at_epoch_end(progress) -> None:
        if progress.step % steps_per_epoch:
            return
        seconds, measure_start = training_s(), time.monotonic()
        psnr = unseen_psnr_db(network, inputs, frames[unseen])
        state["measure_s"] += time.monotonic() - measure_start
        curve.append({"epochs": progress.step // steps_per_epoch, "seconds": round(seconds, 3), "unseen_psnr_db": psnr})
        log({"nerv_fine_tune": curve[-1]})
        if psnr >= target_psnr_db and state["reached_s"] is None:
            state["reached_s"], state["reached_epochs"] = seconds, curve[-1]["epochs"]

    if state["reached_s"] is None:
        try:
            fine_tune(frames, network, recipe, bench.device, after_step=lambda: None, progress=at_epoch_end,
                      should_stop=lambda: state["reached_s"] is not None or training_s() >= budget_s)
        except FitInterrupted:
            pass
    stopped_s = training_s()
    final_unseen = unseen_psnr_db(network, inputs, frames[unseen])
    seen_inputs = fitted.inputs[fitted.seen.to(fitted.inputs.device)]
    return {"target_psnr_db": target_psnr_db, "budget_s": budget_s, "lr": recipe.lr,
            "reached": state["reached_s"] is not None, "reached_seconds": state["reached_s"],
            "reached_epochs": state["reached_epochs"], "stopped_seconds": round(stopped_s, 3),
            "unseen_psnr_db_at_stop": final_unseen,
            "seen_psnr_db_at_stop": unseen_psnr_db(network, seen_inputs, frames[fitted.seen]), "curve": curve}


def fit_row(label: str, result: FitResult, frames: torch.Tensor, total_params: int) -> dict[str, Any]:
    """Seen and unseen quality of a --holdout fit, rendered from the float network."""
    quality = subset_quality(frames, render(result.network, result.inputs),
                             {"seen": result.seen.cpu(), "unseen": result.unseen.cpu()})
    seen, unseen = quality["seen"], quality["unseen"]
    return {"method": label, "arch": result.network.config.arch, "total_params": total_params,
            "fit_seconds": round(result.fit_seconds, 3), "seen_psnr_db": seen.psnr,
            "unseen_psnr_db": unseen.psnr if unseen else None, "seen_ms_ssim": seen.ms_ssim,
            "unseen_ms_ssim": unseen.ms_ssim if unseen else None}


def part_a(bench: Bench) -> dict[str, Any]:
    """CNeRV's one forward pass per unseen frame against NeRV's fine-tuning to the same unseen PSNR."""
    frames = bench.frames
    cnerv, nerv = holdout_fit(bench, "cnerv"), holdout_fit(bench, "nerv")
    n_unseen = len(cnerv.unseen)
    if n_unseen == 0:
        return {"skipped": f"no unseen frames: {len(frames)} frames with --holdout {HOLDOUT}"}
    cnerv_config = cnerv.network.config
    cnerv_row = fit_row("CNeRV", cnerv, frames,
                        cnerv_config.decoder_param_count() + len(frames) * cnerv_config.embedding.values_per_frame)
    nerv_row = fit_row("NeRV", nerv, frames, nerv.network.config.decoder_param_count())
    timing = time_embedding(cnerv.network, frames[cnerv.unseen], bench.device)
    tune = fine_tune_nerv(bench, nerv, cnerv_row["unseen_psnr_db"])
    nerv_seconds = tune["reached_seconds"] if tune["reached"] else tune["stopped_seconds"]
    result = {"unseen_frames": n_unseen, "cnerv": cnerv_row, "nerv": nerv_row, "cnerv_unseen_timing": timing,
              "cnerv_unseen_frames_per_s": n_unseen / timing["embed_seconds"],
              "cnerv_unseen_embed_decode_frames_per_s": n_unseen / timing["embed_decode_seconds"],
              "nerv_fine_tune": tune,
              "nerv_seconds_per_unseen_frame": nerv_seconds / n_unseen,
              "nerv_unseen_frames_per_s": n_unseen / nerv_seconds if nerv_seconds > 0 else None,
              "nerv_over_cnerv_time": nerv_seconds / timing["embed_seconds"],
              "nerv_over_cnerv_time_is_lower_bound": not tune["reached"]}
    log({k: v for k, v in result.items() if k != "nerv_fine_tune"})
    return result


def table_a(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    c, n, t, tune = result["cnerv"], result["nerv"], result["cnerv_unseen_timing"], result["nerv_fine_tune"]
    n_unseen = result["unseen_frames"]
    bound = ">" if result["nerv_over_cnerv_time_is_lower_bound"] else ""
    if tune["reached"]:
        how = f"fine-tuned on all frames until unseen >= {tune['target_psnr_db']:.2f} dB: {tune['reached_epochs']} epochs"
    else:
        how = f"fine-tuned on all frames: NOT reached {tune['target_psnr_db']:.2f} dB in the {tune['budget_s']:.0f} s budget"
    psnr = tune["unseen_psnr_db_at_stop"]
    nerv_s = result["nerv_seconds_per_unseen_frame"] * n_unseen
    cells = [
        ["CNeRV", f"{c['total_params']:,}", f"{c['fit_seconds']:.1f}", f"{c['seen_psnr_db']:.2f}", f"{c['unseen_psnr_db']:.2f}",
         "embedded from its pixels: projection + 1x1 layer", f"{t['embed_seconds'] / n_unseen * 1e3:.2f} ms",
         f"{result['cnerv_unseen_frames_per_s']:.1f}", "1x"],
        ["CNeRV", "", "", "", "", "the same + decoding to uint8", f"{t['embed_decode_seconds'] / n_unseen * 1e3:.2f} ms",
         f"{result['cnerv_unseen_embed_decode_frames_per_s']:.1f}", f"{t['embed_decode_seconds'] / t['embed_seconds']:.1f}x"],
        ["NeRV", f"{n['total_params']:,}", f"{n['fit_seconds']:.1f}", f"{n['seen_psnr_db']:.2f}", f"{n['unseen_psnr_db']:.2f}",
         "frame index only (no new information)", "-", "-", "-"],
        ["NeRV", "", f"+{nerv_s:.1f}", f"{tune['seen_psnr_db_at_stop']:.2f}", f"{psnr:.2f}", how,
         f"{bound}{nerv_s / n_unseen:.2f} s", f"{fmt(result['nerv_unseen_frames_per_s'], 3)}",
         f"{bound}{result['nerv_over_cnerv_time']:,.0f}x"],
    ]
    header = ["method", "params + embeddings", "fit s", "seen PSNR dB", "unseen PSNR dB", "unseen frames: how",
              "time per unseen frame", "unseen frames/s", "time vs CNeRV"]
    title = (f"(a) CNeRV vs NeRV on {n_unseen} unseen frames (--holdout {HOLDOUT}, equal epochs; NeRV fine-tune "
             f"lr {tune['lr']:g} constant, unseen PSNR checked each epoch; paper table 7: NeRV 0.13 vs CNeRV 16.1 frames/s)")
    return title, header, cells


# ------------------------------------------------------------------------- part b: model reuse


def part_b(bench: Bench) -> dict[str, Any]:
    """The first half's model encoding the second half (no fit) against a fit of the second half's own."""
    first, second = halves(bench.frames)
    model = half_model(bench)
    model_file, refine = model["model_file"], bench.args.refine_steps
    rows = [model_encode(first, bench, model_file, "model on its own (first) half, reference")]
    for steps in dict.fromkeys([0, refine]):
        for model_ref in (False, True):
            label = (f"model on second half, refine {steps}, "
                     + ("--model-ref (embeddings only)" if model_ref else "standalone (decoder copied)"))
            rows.append(model_encode(second, bench, model_file, label, model_ref=model_ref, refine_steps=steps))
    scratch = scratch_encode(second, bench, f"codec.encode on second half (own fit, {bench.args.epochs} epochs)")
    add_speed_ups(rows[1:] + [scratch], scratch["seconds"])
    return {"model_fit_seconds": model["fit_seconds"], "model_bytes": model["model_bytes"],
            "model_frames": model["frames"], "rows": rows + [scratch]}


def table_b(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    title = (f"(b) encoding with a model fitted on the first {result['model_frames']} frames (fit "
             f"{result['model_fit_seconds']:.1f} s, .cnrvm {result['model_bytes']:,} B) vs fitting the second half; "
             "speed-up = own fit's encode time / this row's")
    return title, ENCODE_HEADER, encode_cells(result["rows"])


# ------------------------------------------------------------------------- part c: --fit-every


def part_c(bench: Bench) -> dict[str, Any]:
    """Training on every K-th frame only: encode time against quality of trained and untrained frames."""
    if "fit_every" not in {f.name for f in fields(FitConfig)}:
        return {"skipped": "FitConfig has no fit_every in this version of cnervcodec"}
    rows = []
    n_frames = bench.clip.n_frames
    for k in bench.args.fit_every:
        fit_config = bench.fit_config(fit_every=k)
        row = scratch_encode(bench.frames, bench, f"--fit-every {k}", fit_config)
        seen, unseen = training_split(n_frames, fit_config)
        row.update({"fit_every": k, "trained_frames": len(seen),
                    "seen_psnr_db": mean_psnr_db(row["per_frame_psnr_db"], seen),
                    "unseen_psnr_db": mean_psnr_db(row["per_frame_psnr_db"], unseen)})
        rows.append(row)
    return {"rows": rows}


def table_c(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    header = ["K", "trained frames", "encode s", "fit s", "frames/s", "PSNR dB (all)", "PSNR-YUV dB", "trained PSNR dB",
              "untrained PSNR dB", "bytes", "bpp"]
    cells = [[r["fit_every"], r["trained_frames"], f"{r['seconds']:.2f}", f"{r['fit_or_embed_seconds']:.2f}",
              fmt(r["frames_per_s"], 1), f"{r['psnr_db']:.2f}", f"{r['psnr_yuv_db']:.2f}", fmt(r["seen_psnr_db"]),
              fmt(r["unseen_psnr_db"]), f"{r['bytes']:,}", f"{r['bpp']:.4f}"] for r in result["rows"]]
    return "(c) codec.encode with --fit-every K (train on frames 0, K, 2K, ...; every frame embedded and coded)", header, cells


# ------------------------------------------------------------------------- part d: interpolation


def decode_latents(network: VideoNetwork, latents: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Frames (N, 3, H, W) uint8 that the fitted decoder makes from any latents (float weights)."""
    config = network.config
    return torch.cat(list(render_latents(network.decoder, latents, config.height, config.width, device)))


def midpoints(left: torch.Tensor, right: torch.Tensor, mode: str) -> torch.Tensor:
    """Blend each pair of embeddings at a = 0.5 with the decoder's own interpolation (interpolate.interpolate_embeddings)."""
    return torch.stack([interpolate_embeddings(torch.stack([l, r]), 2, mode)[1] for l, r in zip(left, right)])


def interpolation_targets(result: FitResult, n_frames: int, half_gap: int) -> torch.Tensor:
    """Unseen frames i whose neighbours i - half_gap and i + half_gap were both seen in training."""
    seen = set(result.seen.tolist())
    return torch.tensor([i for i in result.unseen.tolist()
                         if i - half_gap in seen and i + half_gap in seen and i + half_gap < n_frames], dtype=torch.long)


def interpolation_rows(bench: Bench, result: FitResult, embeddings: torch.Tensor, half_gap: int) -> list[dict[str, Any]]:
    """Each way of rebuilding the target frames at one gap, scored against the real frames."""
    frames, network, device = bench.frames, result.network, bench.device
    targets = interpolation_targets(result, frames.shape[0], half_gap)
    if len(targets) == 0:
        return []
    left, right = targets - half_gap, targets + half_gap
    decoded_left = decode_latents(network, embeddings[left], device)
    decoded_right = decode_latents(network, embeddings[right], device)
    pixel_blend = lambda a, b: ((a.float() + b.float()) / 2).round().to(torch.uint8)  # noqa: E731
    candidates = {
        "own embedding (encoder on the frame)": decode_latents(network, embeddings[targets], device),
        "linear blend of neighbours' embeddings": decode_latents(network, midpoints(embeddings[left], embeddings[right], "linear"), device),
        "slerp blend of neighbours' embeddings": decode_latents(network, midpoints(embeddings[left], embeddings[right], "slerp"), device),
        "pixel blend of decoded neighbours": pixel_blend(decoded_left, decoded_right),
        "pixel blend of original neighbours": pixel_blend(frames[left], frames[right]),
    }
    rows = []
    for method, decoded in candidates.items():
        quality = quality_report(frames[targets], decoded)
        rows.append({"gap": 2 * half_gap, "method": method, "frames": len(targets), "targets": targets.tolist(),
                     "psnr_db": quality.psnr, "ms_ssim": quality.ms_ssim})
    for row in rows:
        row["delta_vs_own_db"] = row["psnr_db"] - rows[0]["psnr_db"]
    return rows


def part_d(bench: Bench) -> dict[str, Any]:
    """Held-out frames from interpolated embeddings vs from their own embedding (paper, table 15)."""
    result = holdout_fit(bench, "cnerv")
    embeddings = fitted_embeddings(result)
    rows = [row for half_gap in (1, 2) for row in interpolation_rows(bench, result, embeddings, half_gap)]
    for row in rows:
        log({k: v for k, v in row.items() if k != "targets"})
    return {"rows": rows} if rows else {"skipped": "no unseen frame has seen neighbours on both sides"}


def table_d(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    header = ["gap", "method", "frames", "PSNR dB", "MS-SSIM", "vs own embedding dB"]
    cells = [[r["gap"], r["method"], r["frames"], f"{r['psnr_db']:.2f}", f"{r['ms_ssim']:.4f}",
              f"{r['delta_vs_own_db']:+.2f}"] for r in result["rows"]]
    title = (f"(d) held-out frames (--holdout {HOLDOUT} fit of part a, float network) rebuilt at a = 0.5 between "
             "seen neighbours i-1, i+1 (gap 2) and i-2, i+2 (gap 4); paper table 15: pixel 30.14 / own 28.76 / "
             "interpolated 28.88 dB on UVG")
    return title, header, cells


# ------------------------------------------------------------------------- part e: another clip


def read_other_clip(bench: Bench, n_frames: int) -> VideoClip:
    """The first ``n_frames`` of --other-clip (all of them if it is shorter), at --scale."""
    path = bench.args.other_clip
    try:
        return read_video(path, select=FrameSelection(frames=n_frames), scale=bench.args.scale)
    except BadInputError:
        return read_video(path, scale=bench.args.scale)


def part_e(bench: Bench) -> dict[str, Any]:
    """A model fitted on one clip encoding another clip: what generalization across content is worth."""
    path = bench.args.other_clip
    if not Path(path).is_file():
        return {"skipped": f"{path} not found"}
    _, second = halves(bench.frames)
    other = read_other_clip(bench, len(second))
    if (other.width, other.height) != (bench.clip.width, bench.clip.height):
        return {"skipped": f"{Path(path).name} is {other.width}x{other.height}, the model {bench.clip.width}x{bench.clip.height}"}
    model = half_model(bench)
    model_file, name, own = model["model_file"], Path(path).name, Path(bench.clip.source).name
    rows = [model_encode(second[: other.n_frames], bench, model_file, f"{own} model on {own} second half (reference)")]
    for steps in dict.fromkeys([0, bench.args.refine_steps]):
        rows.append(model_encode(other.frames, bench, model_file, f"{own} model on {name}, refine {steps}", refine_steps=steps))
    scratch = scratch_encode(other.frames, bench, f"codec.encode on {name} (own fit, {bench.args.epochs} epochs)")
    add_speed_ups(rows + [scratch], scratch["seconds"])
    return {"other_clip": str(path), "model_frames": model["frames"], "rows": rows + [scratch]}


def table_e(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    title = (f"(e) a model fitted on the first {result['model_frames']} frames of one clip, used on "
             f"{Path(result['other_clip']).name} (standalone streams), vs that clip's own fit")
    return title, ENCODE_HEADER, encode_cells(result["rows"])


# ------------------------------------------------------------------------------------------ main

RUNNERS = {"a": (part_a, table_a), "b": (part_b, table_b), "c": (part_c, table_c), "d": (part_d, table_d),
           "e": (part_e, table_e)}


def context(bench: Bench, load_start: tuple[float, ...], load_end: tuple[float, ...]) -> str:
    """The title line's measurement conditions: what was run, where, and how busy the machine was."""
    clip, args = bench.clip, bench.args
    threads = torch.get_num_threads()
    device = describe(bench.device) + (f", {threads} torch CPU threads" if bench.device.type == "cuda" else "")
    return (f"{Path(clip.source).name}, {clip.n_frames} frames {clip.width}x{clip.height}, size {args.size}, "
            f"{args.epochs} epochs, seed {args.seed}, {device}, torch threads {threads}, "
            f"1-min load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")


def run_part(name: str, bench: Bench) -> dict[str, Any]:
    """Run one part, print its table under the title line, and return its numbers with the conditions."""
    measure, tabulate = RUNNERS[name]
    load_start, start = os.getloadavg(), time.monotonic()
    result = measure(bench)
    load_end = os.getloadavg()
    result.update({"seconds": round(time.monotonic() - start, 1), "loadavg_start": load_start, "loadavg_end": load_end})
    if "skipped" in result:
        print(f"\n### ({name}) skipped: {result['skipped']}\n")
        return result
    title, header, cells = tabulate(result)
    print_table(f"{title}. {context(bench, load_start, load_end)}", header, cells)
    return result


def scale_arg(text: str) -> tuple[int, int]:
    """--scale WxH as (width, height); a bad value is an argparse error, not a traceback."""
    try:
        return parse_video_size(text)
    except BadInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(ROOT / "tests/data/carphone_qcif.mp4"))
    parser.add_argument("--frames", type=int, default=60, help="first N frames of --clip [60]")
    parser.add_argument("--scale", default=None, type=scale_arg, help="WxH, for --clip and --other-clip")
    parser.add_argument("--size", default="S", choices=["S", "M", "L"])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of every fit [30]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default: OMP_NUM_THREADS]")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--nerv-budget-s", type=float, default=120.0, help="(a) NeRV fine-tune time limit, seconds [120]")
    parser.add_argument("--nerv-lr", type=float, default=5e-4, help="(a) NeRV fine-tune lr, constant [5e-4, a quarter of the fit's]")
    parser.add_argument("--refine-steps", type=int, default=5, help="(b, e) refine_embeddings passes to compare with 0 [5]")
    parser.add_argument("--fit-every", type=int, nargs="+", default=[1, 2, 4, 8], help="(c) values of K [1 2 4 8]")
    parser.add_argument("--other-clip", default=str(ROOT.parent / "shared/clips/foreman_qcif_30f.264"), help="(e)")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args()


def open_bench(args: argparse.Namespace, step: int = 1) -> Bench:
    """The options' threads, device and clip (--clip, --frames after every ``step``-th frame, --scale)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    clip = read_video(args.clip, select=FrameSelection(frames=args.frames, step=step), scale=args.scale)
    return Bench(args, clip, device)


def main() -> None:
    args = parse_args()
    bench = open_bench(args)
    clip, device = bench.clip, bench.device
    report: dict[str, Any] = {
        "clip": args.clip, "frames": clip.n_frames, "width": clip.width, "height": clip.height, "fps": str(clip.fps),
        "size": args.size, "epochs": args.epochs, "seed": args.seed, "device": describe(device),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "holdout": HOLDOUT,
        "compression": COMPRESSION.to_dict(), "argv": sys.argv[1:], "parts": {}}
    for name in args.parts:
        report["parts"][name] = run_part(name, bench)
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
