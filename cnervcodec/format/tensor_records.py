"""Tensor records and the DECO list (``bitstream_spec.md`` sections 6 and 7), shared by both layouts.

A record is a tensor's shape, its eq. 4 quantization ranges and its coded symbols. Reading checks
every shape, count and length against the limits and against what the chunk still holds before
allocating; writing refuses what a reader would refuse (``check_tensor``).
"""

from __future__ import annotations

import math
import struct

import numpy as np

from cnervcodec.errors import CorruptContainerError
from cnervcodec.format.chunks import U32_MAX, ChunkCursor
from cnervcodec.format.records import (
    AXIS_TENSOR,
    BASE_CODERS,
    CODER_CATEGORICAL,
    CODER_LAPLACE,
    CODER_NAMES,
    CODER_RAW,
    STREAM_CODERS,
    LaplaceModel,
    QuantParams,
    SymbolStream,
    TensorRecord,
)

MAX_BITS = 16
MAX_NDIM = 4
MAX_TENSOR_VALUES = 1 << 28
MAX_TENSORS = 4096
MAX_COUNTS = 1 << 16
# Decompression-bomb bounds (bitstream_spec.md section 13). A one-symbol categorical codes any number
# of values in 13 bytes, so record lengths alone do not bound what a file makes a reader allocate:
# a file may declare at most max(FREE_VALUES, MAX_VALUES_PER_BYTE * B) tensor values in B bytes of
# tensor records (its network config, at most network_fields.MAX_DECODER_VALUES parameters).
# Measured densest files the encoder writes: 4-bit weights with 99.999 % pruned, 157 (S, 176x144) to
# 207 (L, 1280x720) values per byte; 2-bit, 331 to 489; 1-bit weights all collapse to one symbol per
# tensor (1,216 to 8,421 values per byte: the network decodes to a constant), which is what
# FREE_VALUES covers for small networks.
MAX_VALUES_PER_BYTE = 1 << 12
FREE_VALUES = 1 << 22  # 16 MiB as float32; every S and M network fits (at most 2.47 M parameters up to 1920x1080)


def record_nbytes(record: TensorRecord) -> int:
    """Bytes ``encode_tensor`` writes for a record (section 6), computed without writing them."""
    n_ranges = 1 if record.quant.axis == AXIS_TENSOR else record.shape[record.quant.axis]
    return 1 + 4 * len(record.shape) + 2 + 8 * n_ranges + symbol_stream_nbytes(record.stream)


def symbol_stream_nbytes(stream: SymbolStream) -> int:
    """Bytes the stream takes in its tensor record (coder byte onwards): what the encoder minimises."""
    if stream.coder == CODER_RAW:
        return 5 + len(stream.payload)
    if stream.coder == CODER_LAPLACE:
        return 5 + 8 + 4 + len(stream.payload)
    counts = np.asarray(stream.counts, np.uint64)
    varint_bytes = counts.size + sum(int((counts >> np.uint64(7 * k)).astype(bool).sum()) for k in range(1, 5))
    return 5 + 4 + varint_bytes + 4 + len(stream.payload)


def require_writable(condition: bool, message: str) -> None:
    """A failed writer check is the caller's bug, hence ValueError rather than a CnervError."""
    if not condition:
        raise ValueError(f"cannot write .cnrv: {message}")


def ranges_stay_finite(offsets: np.ndarray, scales: np.ndarray, bits: int) -> bool:
    """Whether ``offset + symbol * scale`` is finite in float32 for every symbol of ``bits`` bits: a
    finite range can still dequantize to infinity (bitstream_spec.md section 6)."""
    with np.errstate(over="ignore", invalid="ignore"):
        top = offsets.astype(np.float32) + np.float32((1 << bits) - 1) * scales.astype(np.float32)
    return bool(np.isfinite(top).all())


def check_tensor(record: TensorRecord, what: str, coders: tuple[int, ...] = BASE_CODERS) -> None:
    """Refuse (ValueError) a record a reader would refuse; ``coders`` are the coders the file may use."""
    quant, stream, shape = record.quant, record.stream, record.shape
    require_writable(stream.coder in coders, f"{what}: coder {stream.coder} is not one this file may use {coders}")
    require_writable(isinstance(shape, tuple) and 1 <= len(shape) <= MAX_NDIM and isinstance(quant.bits, int)
             and isinstance(quant.axis, int) and AXIS_TENSOR <= quant.axis < len(shape), f"{what}: bad shape or axis")
    n_values, n_ranges = math.prod(shape), 1 if quant.axis == AXIS_TENSOR else shape[quant.axis]
    require_writable(stream.n_symbols == n_values, f"{what}: n_symbols {stream.n_symbols} != {n_values} values of {shape}")
    for name, values in (("offsets", quant.offsets), ("scales", quant.scales)):
        require_writable(isinstance(values, np.ndarray) and values.dtype == np.float32 and values.shape == (n_ranges,),
                 f"{what}: {name} must be a float32 array of shape ({n_ranges},)")
    require_writable(isinstance(stream.payload, bytes), f"{what}: payload must be bytes")
    if stream.coder == CODER_RAW:
        n_bytes = -(-n_values * quant.bits // 8)
        require_writable(len(stream.payload) == n_bytes, f"{what}: a raw payload needs {n_bytes} bytes")
        require_writable(np.size(stream.counts) == 0 and stream.first_symbol == 0, f"{what}: a raw stream has no counts")
    elif stream.coder == CODER_CATEGORICAL:
        counts = stream.counts
        require_writable(isinstance(counts, np.ndarray) and counts.dtype == np.uint32 and counts.ndim == 1
                 and 1 <= counts.size <= MAX_COUNTS, f"{what}: counts must be 1..{MAX_COUNTS} uint32 values")
        require_writable(int(counts.sum(dtype=np.uint64)) == n_values, f"{what}: counts must sum to n_symbols")
        require_writable(len(stream.payload) % 4 == 0, f"{what}: categorical payload must be whole u32 words")
        require_writable(counts.size > 1 or not stream.payload, f"{what}: a one-symbol stream has no words")
    elif stream.coder == CODER_LAPLACE:
        model = stream.laplace
        require_writable(isinstance(model, LaplaceModel), f"{what}: no Laplace model")
        problem = laplace_problem(model, quant.bits)
        require_writable(problem is None, f"{what}: {problem}")
        require_writable(np.size(stream.counts) == 0 and stream.first_symbol == 0, f"{what}: a Laplace stream has no counts")
        require_writable(len(stream.payload) % 4 == 0, f"{what}: Laplace payload must be whole u32 words")
        require_writable(model.size > 1 or not stream.payload, f"{what}: a one-symbol stream has no words")


def laplace_problem(model: LaplaceModel, bits: int) -> str | None:
    """What makes a Laplace model invalid for ``bits``-bit symbols (section 6, coder 2), or None."""
    if not (0 <= model.first and 1 <= model.size and model.first + model.size <= 1 << bits):
        return f"Laplace symbols {model.first}..{model.first + model.size - 1} exceed {bits} bits"
    if not model.first <= model.center < model.first + model.size:
        return f"Laplace centre {model.center} outside its symbols {model.first}..{model.first + model.size - 1}"
    if not 1 <= model.decay < 1 << 16:
        return f"Laplace decay {model.decay} outside 1..65535"
    return None


def encode_decoder(records: tuple[TensorRecord, ...]) -> bytes:
    """The DECO payload: tensor count, then each tensor record (also the model file's DECO)."""
    return struct.pack("<H", len(records)) + b"".join(map(encode_tensor, records))


def encode_tensor(record: TensorRecord) -> bytes:
    quant, stream, ndim = record.quant, record.stream, len(record.shape)
    ranges = np.stack([quant.offsets, quant.scales], axis=1).astype("<f4").tobytes()
    head = struct.pack(f"<B{ndim}IBb", ndim, *record.shape, quant.bits, quant.axis) + ranges
    head += struct.pack("<BI", stream.coder, stream.n_symbols)
    if stream.coder == CODER_RAW:
        return head + stream.payload
    if stream.coder == CODER_LAPLACE:
        m = stream.laplace
        model = struct.pack("<HHHHI", m.first, m.size - 1, m.center, m.decay, len(stream.payload) // 4)
        return head + model + stream.payload
    varints = bytearray()
    for count in stream.counts.tolist():
        while count >= 0x80:
            varints.append(count & 0x7F | 0x80)
            count >>= 7
        varints.append(count)
    counts = struct.pack("<HH", stream.first_symbol, stream.counts.size - 1) + varints
    return head + counts + struct.pack("<I", len(stream.payload) // 4) + stream.payload


def read_decoder(cur: ChunkCursor, coders: tuple[int, ...] = STREAM_CODERS) -> tuple[TensorRecord, ...]:
    """A DECO payload: 1..MAX_TENSORS tensor records filling the chunk exactly, each coded by one of
    ``coders`` (a stream checks its CODR declaration after the whole file is read)."""
    count = cur.number("<H", "n_tensors", 1, MAX_TENSORS)
    records = tuple(read_tensor(cur, f"tensor {i}", coders) for i in range(count))
    cur.expect_end()
    return records


def read_tensor(cur: ChunkCursor, what: str, coders: tuple[int, ...] = STREAM_CODERS) -> TensorRecord:
    ndim = cur.number("<B", f"{what} ndim", 1, MAX_NDIM)
    at, shape = cur.pos, cur.unpack(f"<{ndim}I", f"{what} shape")
    if min(shape) < 1 or math.prod(shape) > MAX_TENSOR_VALUES:
        cur.fail(f"{what} shape {shape} needs sizes >= 1 and at most {MAX_TENSOR_VALUES} values", at)
    bits = cur.number("<B", f"{what} bits", 1, MAX_BITS)
    axis = cur.number("<b", f"{what} axis", AXIS_TENSOR, ndim - 1)
    n_ranges = 1 if axis == AXIS_TENSOR else shape[axis]
    at, raw = cur.pos, cur.take(8 * n_ranges, f"{what} ranges")
    ranges = np.frombuffer(raw, "<f4").astype(np.float32).reshape(n_ranges, 2)
    if not np.isfinite(ranges).all() or (ranges[:, 1] < 0).any():
        cur.fail(f"{what} ranges must be finite with scales >= 0", at)
    if not ranges_stay_finite(ranges[:, 0], ranges[:, 1], bits):
        cur.fail(f"{what} ranges overflow float32 at the largest {bits}-bit symbol", at)
    quant = QuantParams(bits, axis, ranges[:, 0].copy(), ranges[:, 1].copy())
    return TensorRecord(shape, quant, _read_stream(cur, math.prod(shape), bits, what, coders))


def _read_stream(cur: ChunkCursor, n_values: int, bits: int, what: str, coders: tuple[int, ...]) -> SymbolStream:
    at, coder = cur.pos, cur.number("<B", f"{what} coder", 0, len(CODER_NAMES) - 1)
    if coder not in coders:
        cur.fail(f"{what} coder {coder} ({CODER_NAMES[coder]}) is not allowed in this file", at)
    cur.number("<I", f"{what} n_symbols", n_values, n_values)
    if coder == CODER_RAW:
        n_bits = n_values * bits
        payload = bytes(cur.take(-(-n_bits // 8), f"{what} packed symbols"))
        if n_bits % 8 and payload[-1] >> (n_bits % 8):
            cur.fail(f"{what} has nonzero padding bits", cur.pos - 1)
        return SymbolStream(CODER_RAW, n_values, payload)
    if coder == CODER_LAPLACE:
        return _read_laplace(cur, n_values, bits, what)
    at, (first_symbol, n_counts) = cur.pos, cur.unpack("<HH", f"{what} first_symbol and n_counts")
    if first_symbol + n_counts + 1 > 1 << bits:
        cur.fail(f"{what} symbols {first_symbol}..{first_symbol + n_counts} exceed {bits} bits", at)
    at, counts = cur.pos, _read_varints(cur, n_counts + 1, f"{what} counts")
    if int(counts.sum(dtype=np.uint64)) != n_values:
        cur.fail(f"{what} counts sum to {int(counts.sum(dtype=np.uint64))}, not n_symbols {n_values}", at)
    payload = _read_words(cur, counts.size == 1, what)
    return SymbolStream(CODER_CATEGORICAL, n_values, payload, first_symbol, counts)


def _read_words(cur: ChunkCursor, one_symbol: bool, what: str) -> bytes:
    """n_words and the ANS words after a model: none when the model has one symbol, no final zero word."""
    at, (n_words,) = cur.pos, cur.unpack("<I", f"{what} n_words")
    payload = bytes(cur.take(4 * n_words, f"{what} words"))
    if one_symbol and n_words:
        cur.fail(f"{what} has one symbol value, so no words, but n_words is {n_words}", at)
    if n_words and payload[-4:] == bytes(4):
        cur.fail(f"{what} words end with a zero word, which an ANS coder never writes", cur.pos - 4)
    return payload


def _read_laplace(cur: ChunkCursor, n_values: int, bits: int, what: str) -> SymbolStream:
    at, (first, size_minus_one, center, decay) = cur.pos, cur.unpack("<HHHH", f"{what} Laplace model")
    model = LaplaceModel(first, size_minus_one + 1, center, decay)
    if problem := laplace_problem(model, bits):
        cur.fail(f"{what}: {problem}", at)
    payload = _read_words(cur, model.size == 1, what)
    return SymbolStream(CODER_LAPLACE, n_values, payload, laplace=model)


def coders_used(records: tuple[TensorRecord, ...]) -> set[int]:
    return {record.stream.coder for record in records}


def _read_varints(cur: ChunkCursor, count: int, what: str) -> np.ndarray:
    """``count`` minimal LEB128 varints of at most 5 bytes and 32 bits, as uint32."""
    if count > cur.remaining:
        cur.fail(f"{what}: {count} varints need at least {count} bytes but the chunk has {cur.remaining} left")
    values, view, pos = np.empty(count, np.uint32), cur.view, cur.pos
    for i in range(count):
        start, value, shift, byte = pos, 0, 0, 0x80
        while byte & 0x80:
            if pos >= cur.end or pos - start == 5:
                cur.fail(f"{what}: varint {i} runs past the chunk or is longer than 5 bytes", start)
            byte, pos = view[pos], pos + 1
            value |= (byte & 0x7F) << shift
            shift += 7
        if value > U32_MAX or (byte == 0 and pos - start > 1):
            cur.fail(f"{what}: varint {i} exceeds 32 bits or is not minimal", start)
        values[i] = value
    cur.pos = pos
    return values


def record_values(records: tuple[TensorRecord, ...]) -> int:
    return sum(math.prod(record.shape) for record in records)


def check_density(records: tuple[TensorRecord, ...], n_bytes: int, label: str) -> None:
    """A reader's rule 2 of section 13: refuse ``records`` carried by ``n_bytes`` bytes of record chunks
    as a decompression bomb when they declare more values than those bytes justify."""
    if problem := density_problem(record_values(records), n_bytes):
        raise CorruptContainerError(f"corrupt {label}: {problem}")


def density_problem(n_values: int, n_bytes: int) -> str | None:
    """Why ``n_values`` tensor values carried by ``n_bytes`` bytes of records are a decompression bomb,
    or None when they are within the bound a reader enforces (and the writer refuses to exceed)."""
    limit = max(FREE_VALUES, MAX_VALUES_PER_BYTE * n_bytes)
    if n_values <= limit:
        return None
    return (f"{n_values:,} tensor values in {n_bytes:,} bytes of tensor records exceed the "
            f"{limit:,} a file of that size may declare ({MAX_VALUES_PER_BYTE} per byte, at least {FREE_VALUES:,})")
