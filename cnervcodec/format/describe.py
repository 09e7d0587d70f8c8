"""What ``cnerv info`` and ``cnerv model info`` report, as plain JSON-ready dicts (the CLI formats the text).

Version, chunk table, header fields and the byte split of a parsed container; a model file's hash,
network and sizes. Bytes only: no torch is imported on this path.

The byte split puts every byte of the file in one bucket: the decoder (the DECO chunk, framing
included; a model reference MREF counts here), the per-frame embeddings (EMBD), the audio (audi), and overhead: everything else
(signature, version, HEAD, meta, FEND).
"""

from __future__ import annotations

from typing import Any

from cnervcodec.format.chunks import CHUNK_FRAMING_BYTES
from cnervcodec.format.model_file import ModelFile
from cnervcodec.format.stream import Container
from cnervcodec.rate import bpp

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


def model_info(model_file: ModelFile, n_bytes: int) -> dict[str, Any]:
    """``cnerv model info``: what a .cnrvm holds and the hash streams refer to it by."""
    model = model_file.model
    return {
        "sha256": model_file.sha256.hex(), "bytes": n_bytes, "width": model.width, "height": model.height,
        "has_encoder": model_file.encoder is not None, "weight_bits": model_file.weight_bits,
        "prune_fraction": model_file.prune_fraction, "decoder_params": model.decoder_param_count(),
        "encoder_params": 0 if model_file.encoder is None else sum(v.size for v in model_file.encoder.values()),
        "model": model.to_dict(), "metadata": model_file.metadata,
    }
