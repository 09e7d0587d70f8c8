"""One fair rate-distortion comparison: a CNeRV curve from one fit against x264/x265/AV1 anchors.

What makes it fair (issue 5, notes.md):

* Same frames: every curve is scored against the same decoded-input RGB frames with the same
  ``metrics.quality_report`` (RGB PSNR, YUV 4:2:0 6:1:1 PSNR, MS-SSIM).
* Real bytes on both sides: a CNeRV point is the size of the whole ``.cnrv`` file ``cnerv encode``
  would write with those settings (header, chunk framing, CRCs and metadata included; no audio, since
  the anchors carry none); an anchor point is its elementary stream (``anchors``).
* One fit, many points: the network is fitted once; each prune level is fine-tuned once and each
  bit depth quantizes that, as the issue asks. Only points that improve YUV-PSNR as the rate grows
  are kept (a BD curve must be monotonic), then ``points`` of them spread over the rate range.
* Anchors cover the CNeRV curve: their CRF ladder grows until it spans CNeRV's YUV-PSNR range (for
  BD-rate) and its rate range (for BD-PSNR), so neither integral extrapolates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from cnervcodec import __version__, metrics
from cnervcodec.codec import code_fit, decode, encode_at_rate, encode_metadata
from cnervcodec.config import CompressionConfig, FitConfig, ModelConfig, PruneConfig
from cnervcodec.errors import BadInputError
from cnervcodec.eval import anchors, bdrate
from cnervcodec.fit import FitProgress, Planes, fit
from cnervcodec.prune import prune_fit
from cnervcodec.rate_estimate import coded_bits
from cnervcodec.ratecontrol import RATE_LAMBDA, target_from_bpp

DEFAULT_BITS_LADDER = (8, 6, 5, 4)
DEFAULT_BPP_LADDER = (0.02, 0.04, 0.08, 0.16)  # spans x264/x265 medium on QCIF test clips (0.01 .. 0.3 bpp)
DEFAULT_PRUNE_LADDER = (0.0, 0.2, 0.4)
MAX_ANCHOR_POINTS = 12
BD_METRIC = "psnr_yuv"  # the PSNR BD-rate and BD-PSNR are computed on (JVET CTC: YUV 6:1:1)

METRIC_DEFINITIONS = {
    "psnr": "RGB PSNR: 10 log10(255^2 / MSE) per frame over the three 8-bit RGB channels, mean over frames",
    "psnr_yuv": ("YUV PSNR 6:1:1: per frame (6 PSNR_Y + PSNR_U + PSNR_V) / 8 on BT.601 limited-range 4:2:0 "
                 "planes (2x2 chroma mean) of the RGB frames, mean over frames (JVET common test conditions)"),
    "ms_ssim": "MS-SSIM (pytorch-msssim, RGB in [0, 255], 5 scales or fewer for small frames), mean over frames",
    "ms_ssim_db": "-10 log10(1 - MS-SSIM), the dB form BD-rate on MS-SSIM is computed on",
    "bpp": "bytes x 8 / (frames x width x height); CNeRV: the whole .cnrv file; anchors: the elementary stream",
    "bd_rate_psnr": "BD-rate (%) of CNeRV against the anchor on psnr_yuv; negative = CNeRV needs fewer bits",
    "bd_psnr": "BD-PSNR (dB) of CNeRV against the anchor on psnr_yuv at equal rate; positive = CNeRV better",
    "bd_rate_psnr_rgb": "BD-rate (%) on the RGB psnr",
    "bd_rate_ms_ssim": "BD-rate (%) on ms_ssim_db",
    "overlap": "shared / union YUV-PSNR range of the two curves (the BD-rate integral's range); warn below 75 %",
    "overlap_log_rate": "shared / union log-rate range (the BD-PSNR integral's range)",
}


@dataclass(frozen=True)
class RdSettings:
    """What a comparison runs: the CNeRV ladder, the anchors and the BD method."""

    anchors: tuple[str, ...] = ("x264", "x265")
    points: int = 4
    anchor_preset: str = "medium"
    anchor_crfs: tuple[int, ...] | None = None
    anchor_threads: int = 1
    method: str = bdrate.DEFAULT_METHOD
    bits_ladder: tuple[int, ...] = DEFAULT_BITS_LADDER
    prune_ladder: tuple[float, ...] = DEFAULT_PRUNE_LADDER
    embed_bits: int = 6
    prune_epochs: int = 10
    # Rate control: one fit per target bpp (a network sized for each); None: one fit, the bits x prune ladder.
    bpp_ladder: tuple[float, ...] | None = None  # cnerv bd-rate's default: DEFAULT_BPP_LADDER
    # Rate-aware training at every ladder point (rate_training): lambda fixed, or None: chosen per target
    rate_aware: bool = True
    rate_lambda: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> RdSettings:
        for name in self.anchors:
            if name not in anchors.CODECS:
                raise BadInputError(f"unknown anchor {name!r}: use {', '.join(anchors.CODECS)}")
        if not self.anchors:
            raise BadInputError("give at least one anchor (--anchors x264,x265)")
        if not 2 <= self.points <= 16:
            raise BadInputError(f"--points must be 2..16, got {self.points}")
        if self.method not in bdrate.METHODS:
            raise BadInputError(f"unknown BD method {self.method!r}: use {', '.join(bdrate.METHODS)}")
        if self.bpp_ladder is not None:
            if len(self.bpp_ladder) < 2 or any(not 0 < b < 100 for b in self.bpp_ladder):
                raise BadInputError(f"--bpp-ladder needs at least 2 rates in (0, 100) bpp, got {self.bpp_ladder}")
        elif len(self.bits_ladder) * len(self.prune_ladder) < self.points:
            raise BadInputError(f"the bits x prune ladders give {len(self.bits_ladder) * len(self.prune_ladder)} "
                                f"settings, fewer than --points {self.points}: add bit depths or prune levels")
        for prune in self.prune_ladder:
            if not 0.0 <= prune < 1.0:
                raise BadInputError(f"--prune-ladder values must be in [0, 1), got {prune:g}")
        for bits in self.bits_ladder:
            if not 1 <= bits <= 16:
                raise BadInputError(f"--bits-ladder values must be whole numbers from 1 to 16, got {bits}")
        CompressionConfig(embed_bits=self.embed_bits)
        PruneConfig(epochs=self.prune_epochs)
        return self


Log = Callable[[str], None]
Keep = Callable[[str, bytes], None]  # (file name, bytes): ``--keep DIR`` saves every coded stream
STREAM_SUFFIX = {"x264": ".264", "x265": ".265", "av1": ".obu"}


def _quality_point(reference_u8: torch.Tensor, decoded_u8: torch.Tensor, n_bytes: int,
                   planes: Planes | None = None) -> dict[str, Any]:
    """Rate and distortion of one decoded version of the clip, by the shared definitions (YUV-PSNR
    against the source's own 4:2:0 ``planes`` when it has them)."""
    height, width = reference_u8.shape[2:]
    return metrics.rate_point(metrics.quality_report(reference_u8, decoded_u8, planes=planes), n_bytes, height, width)


def cnerv_rate_points(frames_u8: torch.Tensor, fps: Fraction, planes: Planes | None, fit_config: FitConfig,
                      rd: RdSettings, device: torch.device, source_name: str, preset: str, log: Log,
                      keep: Keep | None = None, progress: Callable[[FitProgress], None] | None = None,
                      should_stop: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
    """One rate-controlled encode per target of ``rd.bpp_ladder``, each scored from its file."""
    n_frames, _, height, width = frames_u8.shape
    points = []
    for bpp in sorted(rd.bpp_ladder or ()):
        started = time.monotonic()
        target = target_from_bpp(bpp, n_frames, height, width)
        point_fit = replace(fit_config, rate_lambda=(rd.rate_lambda or RATE_LAMBDA) if rd.rate_aware else 0.0)
        meta = encode_metadata(source_name, "auto", preset, point_fit, CompressionConfig(), PruneConfig())
        result = encode_at_rate(frames_u8, fps, target, point_fit, PruneConfig(), device, planes=planes,
                                metadata=meta | {"rate_target_bytes": target.bytes},
                                progress=(lambda _, p: progress(p)) if progress else None, should_stop=should_stop,
                                adapt_lambda=rd.rate_lambda is None)
        if keep is not None:
            keep(f"cnerv_bpp{bpp:g}.cnrv", result.data)
        point = _quality_point(frames_u8, decode(result.data, device=device), len(result.data), planes)
        point |= {"target_bpp": bpp, "off_target": round(len(result.data) / target.bytes - 1, 4),
                  "widths": list(result.model.widths), "embed_dim": result.model.embedding.dim,
                  "grid": list(result.model.embedding.grid), "decoder_params": result.model.decoder_param_count(),
                  "rate_aware": point_fit.rate_lambda > 0, "lambda": point_fit.rate_lambda,
                  "final_lambda": None if result.rate_lambda is None else round(result.rate_lambda, 6),
                  "step_scales": [result.compression.weight_step_scale, result.compression.embed_step_scale],
                  "fit_seconds": round(result.fit_seconds, 3), "train_fps": round(result.train_fps, 1),
                  "encode_seconds": round(time.monotonic() - started, 3)}
        point |= coded_bits(result.data)
        log(f"cnerv --bpp {bpp:g}: {point['bpp']:.4f} bpp ({point['off_target']:+.1%}), PSNR-YUV "
            f"{point['psnr_yuv']:.2f} dB, {point['decoder_params']:,} params, {point['weight_bits']}/{point['embed_bits']} bits, "
            f"lambda {point['lambda']:g} -> {point['final_lambda'] or 0:.3g}, estimate {point['estimate_error']:+.1%}, "
            f"fit {point['fit_seconds']:.0f} s ({point['train_fps']:.0f} frames/s)")
        points.append(point)
    return points


# ----------------------------------------------------------------------------------- CNeRV curve


def cnerv_candidates(frames_u8: torch.Tensor, fps: Fraction, fitted, rd: RdSettings, device: torch.device,
                     source_name: str, size: str, preset: str, log: Log,
                     keep: Keep | None = None, planes: Planes | None = None) -> list[dict[str, Any]]:
    """Every bits x prune setting of one fit, each scored from the file it would write."""
    points = []
    for prune in sorted(rd.prune_ladder):
        started = time.monotonic()
        prune_config = PruneConfig(fraction=prune, epochs=rd.prune_epochs)
        source = prune_fit(frames_u8, fitted, prune_config, device)
        prune_seconds = time.monotonic() - started
        for bits in sorted(rd.bits_ladder, reverse=True):
            compression = CompressionConfig(weight_bits=bits, embed_bits=rd.embed_bits)
            meta = encode_metadata(source_name, size, preset, fitted.config, compression, prune_config)
            data = code_fit(source, fps, compression, metadata=meta)
            if keep is not None:
                keep(f"cnerv_bits{bits}_prune{prune:g}.cnrv", data)
            point = _quality_point(frames_u8, decode(data, device=device), len(data), planes)
            point |= {"bits": bits, "embed_bits": rd.embed_bits, "prune": prune,
                      "prune_seconds": round(prune_seconds, 3)}
            log(f"cnerv bits {bits} prune {prune:g}: {point['bpp']:.4f} bpp, "
                f"PSNR-YUV {point['psnr_yuv']:.2f} dB, PSNR {point['psnr']:.2f} dB")
            points.append(point)
    return points


def pareto(points: Sequence[dict[str, Any]], key: str = BD_METRIC) -> list[dict[str, Any]]:
    """Points sorted by rate, keeping each only if it beats every cheaper point on ``key``."""
    kept: list[dict[str, Any]] = []
    for point in sorted(points, key=lambda p: (p["bytes"], -p[key])):
        if math.isfinite(point[key]) and (not kept or point[key] > kept[-1][key]) and \
                (not kept or point["bytes"] > kept[-1]["bytes"]):
            kept.append(point)
    return kept


def spread(points: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` points (or all, if fewer) evenly spaced in log-rate, both ends kept."""
    if len(points) <= count:
        return list(points)
    log_rates = np.log([p["bpp"] for p in points])
    chosen: list[int] = []
    for target in np.linspace(log_rates[0], log_rates[-1], count):
        free = [i for i in range(len(points)) if i not in chosen]
        chosen.append(min(free, key=lambda i: abs(log_rates[i] - target)))
    return [points[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------------------- anchors


def _anchor_curve(frames_u8: torch.Tensor, fps: Fraction, codec: str, cnerv_points: list[dict[str, Any]],
                  rd: RdSettings, log: Log, keep: Keep | None = None, planes: Planes | None = None) -> dict[str, Any]:
    """One anchor's ladder, covering the CNeRV curve's YUV-PSNR and rate ranges, scored like CNeRV."""
    psnrs = [p["psnr_yuv"] for p in cnerv_points]
    rates = [p["bpp"] for p in cnerv_points]
    ladder = anchors.anchor_ladder(
        frames_u8, fps, codec, crfs=list(rd.anchor_crfs) if rd.anchor_crfs else None, preset=rd.anchor_preset,
        cover_psnr_db=(min(psnrs), max(psnrs)), cover_bpp=(min(rates), max(rates)),
        max_points=MAX_ANCHOR_POINTS, threads=rd.anchor_threads, planes=planes)
    points, dropped = [], []
    for anchor in ladder:
        if keep is not None:
            keep(f"{codec}_crf{anchor.crf}{STREAM_SUFFIX[codec]}", anchor.bitstream)
        point = _quality_point(frames_u8, anchor.frames_u8, anchor.n_bytes, planes) | {"crf": anchor.crf}
        if not all(math.isfinite(point[k]) for k in ("psnr", "psnr_yuv", "ms_ssim")):
            dropped.append(anchor.crf)  # lossless (CRF 0): infinite PSNR has no place on a BD curve
            continue
        log(f"{codec} CRF {anchor.crf}: {point['bpp']:.4f} bpp, PSNR-YUV {point['psnr_yuv']:.2f} dB")
        points.append(point)
    settings = dict(ladder[0].settings)
    settings.pop("crf", None)
    settings["crfs"] = sorted(p["crf"] for p in points)
    if dropped:
        settings["crfs_dropped_lossless"] = dropped
    settings.pop("ffmpeg_options", None)
    return {"points": points, "settings": settings}


# ------------------------------------------------------------------------------------ BD metrics


def _bd(anchor_pts: list[dict[str, Any]], test_pts: list[dict[str, Any]], key: str, method: str,
        kind: str) -> tuple[float | None, float, str | None]:
    """(value, overlap, warning or reason): a curve that is not monotonic in ``key`` gives None."""
    transform = bdrate.ms_ssim_db if key == "ms_ssim" else float
    try:
        a_rate, a_dist = [p["bpp"] for p in anchor_pts], [transform(p[key]) for p in anchor_pts]
        t_rate, t_dist = [p["bpp"] for p in test_pts], [transform(p[key]) for p in test_pts]
        compute = bdrate.bd_rate if kind == "rate" else bdrate.bd_psnr
        result = compute(a_rate, a_dist, t_rate, t_dist, method=method)
    except BadInputError as error:
        return None, 0.0, f"{kind} on {key}: {error}"
    value = None if math.isnan(result.value) or math.isinf(result.value) else result.value
    return value, result.overlap, result.reason or result.warning


def _monotone(points: list[dict[str, Any]], key: str, who: str, notes: list[str]) -> list[dict[str, Any]]:
    """The curve BD uses for ``key``: ``pareto`` of the points, with a note when it leaves some out."""
    curve = pareto(points, key)
    if len(curve) < len(points):
        notes.append(f"{key}: {len(points) - len(curve)} of {len(points)} {who} point(s) left out of the BD curve "
                     f"(not better in {key} than a cheaper point)")
    return curve


def bracket(anchor: list[dict[str, Any]], test: list[dict[str, Any]], key: str,
            min_points: int = 2) -> list[dict[str, Any]]:
    """The anchor points that span the test curve along ``key``: the last at or below its lowest
    value, the first at or above its highest, and all between.

    The anchor ladder is grown to cover the test curve, so it may reach far beyond it; the BD
    integral only uses the shared range, and the overlap share (shared / union) should describe how
    well the curves meet, not how far the ladder happened to run. Needs both curves sorted by rate
    and monotonic in ``key`` (``pareto``). Widened to ``min_points`` where the method needs more.
    """
    if not anchor or not test:
        return anchor
    values = [p[key] for p in anchor]
    lo, hi = min(p[key] for p in test), max(p[key] for p in test)
    first = max([i for i, v in enumerate(values) if v <= lo], default=0)
    last = min([i for i, v in enumerate(values) if v >= hi], default=len(anchor) - 1)
    while last - first + 1 < min(min_points, len(anchor)):
        first, last = (first - 1, last) if first > 0 else (first, last + 1)
    return anchor[first:last + 1]


def bd_against(anchor_pts: list[dict[str, Any]], cnerv_pts: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """CNeRV's BD-rate (YUV PSNR, RGB PSNR, MS-SSIM dB) and BD-PSNR against one anchor curve.

    Each metric uses the points that are monotonic in it (a BD curve must be); ``notes`` says
    which were left out and why a value is missing.
    """
    notes: list[str] = []
    curves = {key: (_monotone(anchor_pts, key, "anchor", notes), _monotone(cnerv_pts, key, "CNeRV", notes))
              for key in (BD_METRIC, "psnr", "ms_ssim")}
    need = bdrate.min_points(method)
    by_quality = {key: (bracket(anchor, test, key, need), test) for key, (anchor, test) in curves.items()}
    rate_yuv, overlap, note_rate = _bd(*by_quality[BD_METRIC], BD_METRIC, method, "rate")
    psnr_yuv, overlap_log_rate, note_psnr = _bd(bracket(*curves[BD_METRIC], "bpp", need), curves[BD_METRIC][1],
                                                BD_METRIC, method, "psnr")
    rate_rgb, _, note_rgb = _bd(*by_quality["psnr"], "psnr", method, "rate")
    rate_ssim, overlap_ssim, note_ssim = _bd(*by_quality["ms_ssim"], "ms_ssim", method, "rate")
    notes += [n for n in (note_rate, note_psnr, note_rgb, note_ssim) if n]
    return {"bd_rate_psnr": rate_yuv, "bd_psnr": psnr_yuv, "bd_rate_psnr_rgb": rate_rgb,
            "bd_rate_ms_ssim": rate_ssim, "overlap": overlap, "overlap_log_rate": overlap_log_rate,
            "overlap_ms_ssim": overlap_ssim, "notes": notes}


# ------------------------------------------------------------------------------------------- run


def run(frames_u8: torch.Tensor, fps: Fraction, model: ModelConfig, fit_config: FitConfig, rd: RdSettings,
        device: torch.device, *, source_name: str, size: str, preset: str, log: Log = lambda _: None,
        keep: Keep | None = None, planes: Planes | None = None,
        progress: Callable[[FitProgress], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """The CNeRV curve (one rate-controlled fit per ``rd.bpp_ladder`` target, or, without a ladder, one
    fit of ``model`` coded at the bits x prune ladder), the anchors around it, and every BD metric:
    one JSON-ready dict. ``planes``: the source's own 4:2:0 planes, what YUV-PSNR is measured on and
    what the anchors encode."""
    started = time.monotonic()
    fit_seconds = 0.0
    if rd.bpp_ladder is not None:
        size = "auto"
        candidates = cnerv_rate_points(frames_u8, fps, planes, fit_config, rd, device, source_name, preset, log,
                                       keep, progress, should_stop)
        fit_seconds = sum(p["fit_seconds"] for p in candidates)
        curve = pareto(candidates)
    else:
        fitted = fit(frames_u8, model, fit_config, device, progress=progress, should_stop=should_stop, planes=planes)
        fit_seconds = fitted.fit_seconds
        log(f"fit: {fitted.fit_seconds:.1f} s, {fitted.train_fps:.1f} frames/s")
        candidates = cnerv_candidates(frames_u8, fps, fitted, rd, device, source_name, size, preset, log, keep, planes)
        curve = spread(pareto(candidates), rd.points)
    if len(curve) < 2:
        raise BadInputError("the CNeRV ladder gave fewer than 2 points that improve with rate: add bit depths "
                            "(--bits-ladder) or prune levels (--prune-ladder), or fit longer (--preset)")
    cnerv_seconds = time.monotonic() - started
    n_frames, _, height, width = frames_u8.shape
    report: dict[str, Any] = {
        "input": {"source": source_name, "frames": n_frames, "width": width, "height": height, "fps": str(fps)},
        "cnerv": {"points": curve, "candidates": candidates, "settings": {
            "encoder": f"cnervcodec {__version__}", "size": size, "preset": preset, "fit": fit_config.to_dict(),
            "embed_bits": rd.embed_bits, "bits_ladder": list(rd.bits_ladder), "prune_ladder": list(rd.prune_ladder),
            "bpp_ladder": list(rd.bpp_ladder) if rd.bpp_ladder is not None else None,
            "reference": "source 4:2:0 planes" if planes is not None else "RGB -> BT.601 4:2:0",
            "prune_epochs": rd.prune_epochs, "device": str(device), "fit_seconds": round(fit_seconds, 3),
            "seconds": round(cnerv_seconds, 3), "audio": "not included (video only, like the anchors)"}},
    }
    for codec in rd.anchors:
        anchor_started = time.monotonic()
        curve_report = _anchor_curve(frames_u8, fps, codec, curve, rd, log, keep, planes)
        curve_report["settings"]["seconds"] = round(time.monotonic() - anchor_started, 3)
        report[codec] = bd_against(curve_report["points"], curve, rd.method) | curve_report
    report["method"] = rd.method
    report["metric_definitions"] = METRIC_DEFINITIONS
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


def plot_curves(report: dict[str, Any], anchor_names: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """Legend label -> (bpp, YUV-PSNR) points, the anchors' settings in their labels."""
    curves = {}
    cnerv = report["cnerv"]["settings"]
    curves[f"CNeRV {cnerv['size']} ({cnerv['preset']}, bits {'/'.join(map(str, cnerv['bits_ladder']))}, "
           f"prune {'/'.join(f'{p:g}' for p in cnerv['prune_ladder'])})"] = [
        (p["bpp"], p["psnr_yuv"]) for p in report["cnerv"]["points"]]
    for name in anchor_names:
        s = report[name]["settings"]
        label = f"{name} ({s['encoder']} {s['preset']}, tune {s['tune'].split(' ')[0]}, CRF {min(s['crfs'])}-{max(s['crfs'])})"
        curves[label] = [(p["bpp"], p["psnr_yuv"]) for p in report[name]["points"]]
    return curves


def ladder_values(text: str, kind: Callable[[str], Any], name: str) -> tuple:
    """Parse a comma-separated ladder option such as ``8,6,4``."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInputError(f"{name} must be comma-separated numbers such as 8,6,4, got {text!r}") from None
    if not values:
        raise BadInputError(f"{name} is empty")
    return tuple(dict.fromkeys(values))

