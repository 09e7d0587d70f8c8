"""Text for people: how ``cnerv info`` and ``cnerv model info`` print the dicts ``format.describe`` builds,
and the parts of ``cnerv decode``'s line that say which frames it wrote."""

from __future__ import annotations

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
