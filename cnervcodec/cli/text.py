"""Text for people: how ``cnerv info`` and ``cnerv model info`` print the dicts ``format.describe`` builds,
``cnerv encode``'s report, and the parts of ``cnerv decode``'s line that say which frames it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_info(info: dict[str, Any]) -> str:
    """The human-readable form of ``container_info``."""
    lines = [
        f".cnrv version {info['version']}: {info['bytes']:,} bytes, {info['bpp']:.4f} bpp",
        f"  video     {info['frames']} frames {info['width']}x{info['height']} (padded "
        f"{info['padded_size'][0]}x{info['padded_size'][1]}) at {info['fps']} fps",
        f"  network   {info['model']['arch']}, widths {info['model']['widths']}, grid "
        f"{info['model']['embedding']['grid']}, d={info['model']['embedding']['dim']}, "
        f"{info['decoder_params']:,} decoder params",
        f"  quantize  {info['weight_bits']}-bit weights, {info['embed_bits']}-bit embeddings, "
        f"{100 * info['prune_fraction']:.1f} % of weights pruned",
    ]
    if info.get("model_ref"):
        lines.append(f"  decoder   not in this file: the model with SHA-256 {info['model_ref']} (decode --model)")
    if info["audio"]:
        a = info["audio"]
        lines.append(f"  audio     {a['codec']} {a['sample_rate']} Hz, {a['channels']} ch, {a['packets']} packets")
    lines.append("  chunks    type  offset      length  crc")
    lines.extend(f"            {c['type']}  {c['offset']:>8}  {c['length']:>10}  {'ok' if c['crc_ok'] else 'BAD'}"
                 for c in info["chunks"])
    lines.append("  bytes     " + ", ".join(
        f"{k} {v:,} ({info['split_bpp'][k]:.4f} bpp)" for k, v in info["split_bytes"].items()))
    return "\n".join(lines)


def format_model_info(info: dict[str, Any]) -> str:
    lines = [
        f".cnrvm model {info['sha256']}: {info['bytes']:,} bytes",
        f"  frames    {info['width']}x{info['height']} (encode inputs of this size; --scale others)",
        f"  network   cnerv, widths {info['model']['widths']}, grid {info['model']['embedding']['grid']}, "
        f"d={info['model']['embedding']['dim']}, {info['decoder_params']:,} decoder params",
        f"  decoder   {info['weight_bits']}-bit weights, {100 * info['prune_fraction']:.1f} % pruned",
        "  encoder   " + (f"{info['encoder_params']:,} float32 values" if info["has_encoder"]
                           else "none (decode-only: exported from a .cnrv)"),
    ]
    return "\n".join(lines)


def range_text(r: dict[str, Any]) -> str:
    if "start" not in r:
        return ""
    count = r.get("source_frames", r["frames"])
    return f" (frames {r['start']}..{r['start'] + count - 1} of {r['stream_frames']})"


def interpolation_text(r: dict[str, Any]) -> str:
    if "interpolate" not in r:
        return ""
    return f" ({r['source_frames']} coded frames x {r['interpolate']}, {r['interp']} interpolation)"


def format_encode(r: dict[str, Any], output: Path, notes: list[str]) -> str:
    """The human-readable form of ``cnerv encode``'s report."""
    lines = [
        f"{output}: {r['frames']} frames {r['width']}x{r['height']} at {r['fps']} fps",
        f"  size     {r['bytes']:,} bytes, {r['bpp']:.4f} bpp",
        *([f"  rate     target {r['target_bytes']:,} bytes ({r['target_bpp']:.4g} bpp), video part "
           f"{r['video_bytes']:,} bytes ({r['off_target']:+.1%}); network widths "
           f"{'-'.join(map(str, r['network']['widths']))}, d {r['network']['embed_dim']}, grid "
           f"{'x'.join(map(str, r['network']['grid']))}, {r['network']['decoder_params']:,} params; "
           f"{r['weight_bits']}-bit weights, {r['embed_bits']}-bit embeddings"] if "target_bytes" in r else []),
        f"  quality  PSNR {r['psnr']:.2f} dB  PSNR-YUV {r['psnr_yuv']:.2f} dB  MS-SSIM {r['ms_ssim']:.4f} (decoded from the file)",
        f"  time     {r['encode_seconds']:.1f} s",
    ]
    if "fit_every" in r:
        lines.append(f"  fit      every {r['fit_every']} frames, {r['fit_seconds']:.1f} s: "
                     f"seen {psnr_text(r['seen'])}, unseen {psnr_text(r['unseen'])}")
    if "model" in r:
        lines.append(f"  model    {r['model'][:16]}... (no fit: embeddings in {r['embed_seconds']:.2f} s"
                     f"{', refined ' + str(r['refine_embeddings']) + ' passes' if r['refine_embeddings'] else ''})")
    lines.extend(f"  note: {n}" for n in notes)
    return "\n".join(lines)


def psnr_text(q: dict[str, Any]) -> str:
    return f"{q['frames']} frames PSNR {q['psnr']:.2f} dB" if q["psnr"] is not None else f"{q['frames']} frames"
