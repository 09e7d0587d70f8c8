"""The ``.cnrvm`` model file (``bitstream_spec.md`` section 17): a trained CNeRV network for reuse.

The byte format only, like ``stream``, whose framing it shares (preamble, CRC'd chunks, bounded
reads, tensor records): no torch here. A model holds the encoder layer in float32 (embeddings of new
frames must come out exactly as the trainer's would) and the decoder already quantized and coded, so
that a stream referring to it by hash decodes to the same frames as a stream that copies it.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnervcodec.config import MAX_SIDE_PX, ModelConfig
from cnervcodec.errors import CorruptContainerError
from cnervcodec.format.chunks import (
    CHUNK_END,
    CHUNK_META,
    ChunkCursor,
    FileFormat,
    encode_meta,
    frame_chunks,
    parse_guarded,
    read_chunks,
    read_meta,
)
from cnervcodec.format.network_fields import encode_model_config, read_model_config
from cnervcodec.format.records import BASE_CODERS, TensorRecord
from cnervcodec.format.stream import CHUNK_DECO, LARGEST_F32_BELOW_1
from cnervcodec.format.tensor_records import (
    MAX_BITS,
    check_density,
    check_tensor,
    encode_decoder,
    read_decoder,
)

MODEL_SIGNATURE = b"\x89CNM\r\n\x1a\n"
MODEL_FORMAT = FileFormat(".cnrvm", MODEL_SIGNATURE, 1, 0,
                          (b"\x89CNM\n\x1a\n", b"\x89CNM\r\r\n\x1a\r\n", b"\x09CNM\r\n\x1a\n"))
CHUNK_MHDR, CHUNK_ENCO = "MHDR", "ENCO"
MODEL_CHUNK_ORDER = (CHUNK_MHDR, CHUNK_ENCO, CHUNK_DECO, CHUNK_META, CHUNK_END)
FLAG_HAS_ENCODER = 0x01
HASH_PREFIX = b"cnervcodec-decoder\x00"
ENCODER_FIELDS = ("raw_mean", "raw_std", "weight", "bias")


@dataclass(frozen=True, eq=False)
class ModelFile:
    """A trained network: config, quantized decoder records, and (unless decode-only) the encoder."""

    model: ModelConfig
    weight_bits: int
    prune_fraction: float
    decoder: tuple[TensorRecord, ...]
    encoder: dict[str, np.ndarray] | None = None  # ENCODER_FIELDS -> float32 arrays; None: decode-only
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> bytes:
        """The decoder hash of section 17: what ``MREF`` names."""
        return hashlib.sha256(HASH_PREFIX + _mhdr_tail(self) + encode_decoder(self.decoder)).digest()


def encoder_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of each encoder array: R raw values per block, d embedding values."""
    raw, dim = model.embedding.raw_dim, model.embedding.dim
    return {"raw_mean": (raw,), "raw_std": (raw,), "weight": (dim, raw), "bias": (dim,)}


# ------------------------------------------------------------------------------------------ write


def _mhdr_tail(model_file: ModelFile) -> bytes:
    model = model_file.model
    return struct.pack("<BfHH", model_file.weight_bits, model_file.prune_fraction, model.width, model.height) + \
        encode_model_config(model)


def _check_writable(model_file: ModelFile) -> None:
    """Refuse what a reader would refuse (ValueError: the caller's bug, not bad input)."""
    if model_file.model.arch != "cnerv":
        raise ValueError("cannot write .cnrvm: only cnerv networks can be reused (NeRV has no encoder)")
    if not model_file.decoder:
        raise ValueError("cannot write .cnrvm: no decoder tensors")
    for i, record in enumerate(model_file.decoder):
        check_tensor(record, f"decoder tensor {i}")
    if model_file.encoder is not None:
        for name, shape in encoder_shapes(model_file.model).items():
            value = model_file.encoder.get(name)
            if not (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == shape
                    and np.isfinite(value).all()):
                raise ValueError(f"cannot write .cnrvm: encoder {name} must be a finite float32 array of shape {shape}")
        if (model_file.encoder["raw_std"] <= 0).any():
            raise ValueError("cannot write .cnrvm: encoder raw_std must be > 0")


def write_model_file(model_file: ModelFile) -> bytes:
    """The file's bytes; read back before returning, so what this writes is what it reads."""
    _check_writable(model_file)
    flags = FLAG_HAS_ENCODER if model_file.encoder is not None else 0
    chunks = [(CHUNK_MHDR, bytes([flags]) + _mhdr_tail(model_file))]
    if model_file.encoder is not None:
        chunks.append((CHUNK_ENCO, b"".join(model_file.encoder[name].astype("<f4").tobytes() for name in ENCODER_FIELDS)))
    chunks.append((CHUNK_DECO, encode_decoder(model_file.decoder)))
    if model_file.metadata:
        chunks.append((CHUNK_META, encode_meta(model_file.metadata)))
    chunks.append((CHUNK_END, b""))
    data = frame_chunks(MODEL_FORMAT, chunks)
    read_model_file(data)
    return data


# ------------------------------------------------------------------------------------------- read


def read_model_file(data: bytes) -> ModelFile:
    """Parse and validate a whole model file; CorruptContainerError / UnsupportedVersionError."""
    return parse_guarded(data, MODEL_FORMAT, _parse)


def _parse(view: memoryview) -> ModelFile:
    parts, infos, _ = read_chunks(view, MODEL_FORMAT, CHUNK_MHDR, _read_chunk)
    if CHUNK_DECO not in parts:
        raise CorruptContainerError(f"corrupt .cnrvm: no DECO chunk before FEND at byte {infos[-1].offset}")
    header = parts[CHUNK_MHDR]
    check_density(parts[CHUNK_DECO], sum(info.length for info in infos if info.kind == CHUNK_DECO), ".cnrvm")
    if header["has_encoder"] != (CHUNK_ENCO in parts):
        raise CorruptContainerError(f"corrupt .cnrvm: MHDR says has_encoder={header['has_encoder']} but the file "
                                    f"{'lacks' if header['has_encoder'] else 'has'} an ENCO chunk")
    return ModelFile(header["model"], header["weight_bits"], header["prune_fraction"], parts[CHUNK_DECO],
                     parts.get(CHUNK_ENCO), parts.get(CHUNK_META, {}))


def _read_chunk(cur: ChunkCursor, parts: dict[str, Any], version: tuple[int, int]) -> None:
    """Parse one chunk into ``parts`` (or skip an unknown skippable one); ``read_chunks`` checked its place."""
    kind, offset = cur.info.kind, cur.info.offset
    if kind == CHUNK_MHDR:
        parts[kind] = _read_mhdr(cur)
    elif kind == CHUNK_ENCO:
        parts[kind] = _read_enco(cur, parts[CHUNK_MHDR]["model"])
    elif kind == CHUNK_DECO:
        parts[kind] = read_decoder(cur, BASE_CODERS)  # model files keep raw and categorical (format 1.0)
    elif kind == CHUNK_META:
        parts[kind] = read_meta(cur)
    elif kind[0].isupper() and kind != CHUNK_END:
        raise CorruptContainerError(f"corrupt .cnrvm: chunk {kind} at byte {offset} is critical but unknown to "
                                    f"model format {MODEL_FORMAT.major}.{MODEL_FORMAT.minor}")


def _read_mhdr(cur: ChunkCursor) -> dict[str, Any]:
    at, (flags,) = cur.pos, cur.unpack("<B", "flags")
    if flags & ~FLAG_HAS_ENCODER:
        cur.fail(f"reserved flag bits set ({flags:#04x})", at)
    weight_bits = cur.number("<B", "weight_bits", 1, MAX_BITS)
    prune = cur.number("<f", "prune_fraction", 0.0, LARGEST_F32_BELOW_1)
    width, height = cur.number("<H", "width", 1, MAX_SIDE_PX), cur.number("<H", "height", 1, MAX_SIDE_PX)
    at, model = cur.pos, read_model_config(cur, width, height)
    if model.arch != "cnerv":
        cur.fail("a model file holds a cnerv network", at)
    cur.expect_end()
    return {"has_encoder": bool(flags & FLAG_HAS_ENCODER), "weight_bits": weight_bits, "prune_fraction": prune,
            "model": model}


def _read_enco(cur: ChunkCursor, model: ModelConfig) -> dict[str, np.ndarray]:
    shapes = encoder_shapes(model)
    expected = 4 * sum(math.prod(shape) for shape in shapes.values())
    if cur.remaining != expected:
        cur.fail(f"the encoder needs {expected} bytes for its config, the chunk has {cur.remaining}")
    arrays = {}
    for name, shape in shapes.items():
        at, raw = cur.pos, cur.take(4 * math.prod(shape), f"encoder {name}")
        values = np.frombuffer(raw, "<f4").astype(np.float32).reshape(shape)
        if not np.isfinite(values).all() or (name == "raw_std" and (values <= 0).any()):
            cur.fail(f"encoder {name} has non-finite{' or non-positive' * (name == 'raw_std')} values", at)
        arrays[name] = values
    return arrays
