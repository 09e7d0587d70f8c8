"""What ``cnerv info`` shows: version, chunk table, header fields and the byte split of a parsed container.

The byte split puts every byte of the file in one bucket: the decoder (the DECO chunk, framing
included; a model reference MREF counts here), the per-frame embeddings (EMBD), the audio (audi), and overhead: everything else
(signature, version, HEAD, meta, FEND).
"""

from __future__ import annotations

from typing import Any

from cnervcodec.container import Container
from cnervcodec.metrics import bpp

CHUNK_FRAMING_BYTES = 12  # length u32 + type 4 bytes + crc32 u32
_BUCKETS = {"DECO": "model", "MREF": "model", "EMBD": "embeddings", "audi": "audio"}


def byte_split(container: Container, n_bytes: int) -> dict[str, int]:
    """Bytes per bucket; they sum to ``n_bytes``."""
    split = {"model": 0, "embeddings": 0, "audio": 0}
    for chunk in container.chunks:
        bucket = _BUCKETS.get(chunk.kind)
        if bucket is not None:
            split[bucket] += chunk.length + CHUNK_FRAMING_BYTES
    split["overhead"] = n_bytes - sum(split.values())
    return split


def container_info(container: Container, n_bytes: int) -> dict[str, Any]:
    """A plain dict, ready for JSON, describing one parsed container of ``n_bytes`` bytes."""
    header = container.header
    model = header.model
    pixels = (header.n_frames, model.height, model.width)
    split = byte_split(container, n_bytes)
    return {
        "version": f"{container.version[0]}.{container.version[1]}",
        "bytes": n_bytes,
        "bpp": bpp(n_bytes, *pixels),
        "frames": header.n_frames,
        "width": model.width,
        "height": model.height,
        "padded_size": list(model.padded_size[::-1]),
        "fps": str(header.fps),
        "weight_bits": header.weight_bits,
        "embed_bits": header.embed_bits,
        "prune_fraction": header.prune_fraction,
        "decoder_params": model.decoder_param_count(),
        "model": model.to_dict(),
        "color": {"range": header.color.color_range, "matrix": header.color.matrix,
                  "primaries": header.color.primaries, "transfer": header.color.transfer},
        "audio": None if container.audio is None else {
            "codec": container.audio.codec, "sample_rate": container.audio.sample_rate,
            "channels": container.audio.channels, "packets": len(container.audio.packets)},
        "metadata": container.metadata,
        "model_ref": None if container.model_ref is None else container.model_ref.hex(),
        "chunks": [{"type": c.kind, "offset": c.offset, "length": c.length, "crc_ok": c.crc_ok,
                    "critical": c.critical} for c in container.chunks],
        "split_bytes": split,
        "split_bpp": {k: bpp(v, *pixels) for k, v in split.items()},
    }


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


def model_info(model_file, n_bytes: int) -> dict[str, Any]:
    """``cnerv model info``: what a .cnrvm holds and the hash streams refer to it by."""
    model = model_file.model
    return {
        "sha256": model_file.sha256.hex(), "bytes": n_bytes, "width": model.width, "height": model.height,
        "has_encoder": model_file.encoder is not None, "weight_bits": model_file.weight_bits,
        "prune_fraction": model_file.prune_fraction, "decoder_params": model.decoder_param_count(),
        "encoder_params": 0 if model_file.encoder is None else sum(v.size for v in model_file.encoder.values()),
        "model": model.to_dict(), "metadata": model_file.metadata,
    }


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
