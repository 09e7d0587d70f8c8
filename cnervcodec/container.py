"""The .cnrv byte format, and only the byte format: it mirrors ``bitstream_spec.md`` section by section.

A file is a signature, a major.minor version, then length-prefixed typed chunks each with a CRC32,
ending with an end marker. This module turns the plain data classes below into bytes and back; it
knows nothing of torch, constriction or PyAV. Every length, count and shape read from a file is
checked against what the file can still hold and against sane limits before anything is allocated,
and every problem becomes a ``CorruptContainerError`` or ``UnsupportedVersionError``.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NoReturn

import numpy as np

from cnervcodec.config import ACTIVATIONS, ARCHS, MAX_SIDE_PX, MAX_STAGES, OUT_ACTIVATIONS, EmbeddingConfig, ModelConfig
from cnervcodec.errors import BadInputError, CorruptContainerError, UnsupportedVersionError

SIGNATURE = b"\x89CNV\r\n\x1a\n"
MAJOR_VERSION = 1
MINOR_VERSION = 1  # 1.1 added MREF; files without MREF are still written as 1.0
MODEL_HASH_BYTES = 32  # SHA-256

CODER_RAW = 0  # fixed-width bits, no model: for tiny tensors where a model costs more than it saves
CODER_CATEGORICAL = 1  # constriction ANS with a categorical model from the symbol counts
CODER_NAMES = ("raw", "categorical")  # indexed by coder id

AXIS_TENSOR = -1  # one (offset, scale) pair for the whole tensor

CHUNK_HEAD, CHUNK_DECO, CHUNK_EMBD, CHUNK_AUDIO, CHUNK_META, CHUNK_END = "HEAD", "DECO", "EMBD", "audi", "meta", "FEND"
CHUNK_MREF = "MREF"  # in place of DECO: the SHA-256 of the .cnrvm model that holds the decoder
CHUNK_ORDER = (CHUNK_HEAD, CHUNK_DECO, CHUNK_MREF, CHUNK_EMBD, CHUNK_AUDIO, CHUNK_META, CHUNK_END)  # writer order = known types

PACKET_KEYFRAME, PACKET_HAS_PTS, PACKET_HAS_DTS = 0x01, 0x02, 0x04

# Limits a reader enforces (bitstream_spec.md section 13); the writer refuses what a reader would.
MAX_FILE_BYTES = 1 << 32
MAX_FRAMES = 1_000_000
MAX_BITS = 16
MAX_NDIM = 4
MAX_TENSOR_VALUES = 1 << 28
MAX_TENSORS = 4096
MAX_COUNTS = 1 << 16
MAX_META_BYTES = 64 * 1024
MAX_SAMPLE_RATE_HZ = 768_000
MAX_CHANNELS = 64
MAX_EXTRADATA_BYTES = 1 << 20
MAX_PACKETS = 10_000_000
MAX_PACKET_BYTES = 1 << 20

_U32 = (1 << 32) - 1
LARGEST_F32_BELOW_1 = 1.0 - 2.0**-24  # prune_fraction < 1 as a closed range
_PREAMBLE_BYTES = len(SIGNATURE) + 2  # signature, major, minor
_PACKET_FIXED_BYTES = 25  # flags, pts, dts, duration, size
# The signature after CRLF->LF, LF->CRLF and high-bit-stripping transfers: worth a hint in the message.
_TEXT_MODE_SIGNATURES = (b"\x89CNV\n\x1a\n", b"\x89CNV\r\r\n\x1a\r\n", b"\x09CNV\r\n\x1a\n")


@dataclass(frozen=True)
class FileFormat:
    """What tells one chunked file type from another: the ``.cnrv`` stream and the ``.cnrvm`` model
    share the framing (preamble, chunks, CRCs, bounded reads) and differ in these."""

    label: str  # the extension, as messages name the file type
    signature: bytes  # 8 bytes
    major: int
    minor: int
    text_mode_signatures: tuple[bytes, ...]  # the signature after text-mode transfers


CNRV_FORMAT = FileFormat(".cnrv", SIGNATURE, MAJOR_VERSION, MINOR_VERSION, _TEXT_MODE_SIGNATURES)


@dataclass(frozen=True)
class ColorInfo:
    """The source's colour tags as FFmpeg AVCOL_* codes (0..255; 2 = unspecified), for the output."""

    color_range: int = 0
    matrix: int = 2
    primaries: int = 2
    transfer: int = 2


@dataclass(frozen=True)
class StreamHeader:
    """Everything the decoder needs besides the tensors (the HEAD chunk)."""

    model: ModelConfig  # network config; holds the original height and width
    n_frames: int
    fps: Fraction
    color: ColorInfo = field(default_factory=ColorInfo)
    weight_bits: int = 8
    embed_bits: int = 6
    prune_fraction: float = 0.0  # informative: the fraction of decoder weights pruned to zero


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Eq. 4 parameters: value = offset + symbol * scale, per tensor or per slice along ``axis``."""

    bits: int
    axis: int  # AXIS_TENSOR, or the tensor axis that owns one (offset, scale) pair per index
    offsets: np.ndarray  # (n_ranges,) float32
    scales: np.ndarray  # (n_ranges,) float32, >= 0


@dataclass(frozen=True, eq=False)
class SymbolStream:
    """Integer symbols in [0, 2**bits), coded by one of the CODER_* methods."""

    coder: int
    n_symbols: int
    payload: bytes  # CODER_RAW: little-endian packed bits; CODER_CATEGORICAL: uint32 LE words
    first_symbol: int = 0  # CODER_CATEGORICAL: the symbol that counts[0] counts
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # (n,) uint32


@dataclass(frozen=True, eq=False)
class TensorRecord:
    """One quantized, entropy-coded tensor."""

    shape: tuple[int, ...]
    quant: QuantParams
    stream: SymbolStream


@dataclass(frozen=True)
class AudioPacket:
    pts: int | None
    dts: int | None
    duration: int
    is_keyframe: bool
    data: bytes


@dataclass(frozen=True)
class AudioTrack:
    """The input's audio stream, copied as packets so that decode can mux it back unchanged."""

    codec: str  # FFmpeg codec name, e.g. "aac"
    sample_rate: int
    channels: int
    layout: str  # FFmpeg channel layout name, e.g. "stereo"
    sample_format: str  # e.g. "fltp"
    time_base: Fraction
    bit_rate: int
    extradata: bytes
    packets: tuple[AudioPacket, ...]


@dataclass(frozen=True)
class ChunkInfo:
    """One entry of a file's chunk table, for ``cnerv info``."""

    kind: str  # the 4-letter type
    offset: int  # byte offset of the chunk's length field
    length: int  # payload bytes
    crc_ok: bool
    critical: bool


@dataclass(frozen=True, eq=False)
class Container:
    header: StreamHeader
    decoder: tuple[TensorRecord, ...]  # in model.bitstream_tensors order
    embeddings: TensorRecord | None  # (T, d, n_h, n_w); None for NeRV
    audio: AudioTrack | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: tuple[int, int] = (MAJOR_VERSION, MINOR_VERSION)
    chunks: tuple[ChunkInfo, ...] = ()  # filled by read_container
    model_ref: bytes | None = None  # MREF: the decoder is in the model file with this SHA-256; decoder is ()


def symbol_stream_nbytes(stream: SymbolStream) -> int:
    """Bytes the stream takes in its tensor record (coder byte onwards): what the encoder minimises."""
    if stream.coder == CODER_RAW:
        return 5 + len(stream.payload)
    counts = np.asarray(stream.counts, np.uint64)
    varint_bytes = counts.size + sum(int((counts >> np.uint64(7 * k)).astype(bool).sum()) for k in range(1, 5))
    return 5 + 4 + varint_bytes + 4 + len(stream.payload)


# --- Writing: check what would read back confusingly, encode, then read the output back, so that ---
# --- a file this module writes is, by construction, a file it reads.                              ---


def write_container(container: Container) -> bytes:
    """The file's bytes (chunk order: HEAD, DECO, EMBD, audi, meta, FEND); ValueError on invalid input."""
    try:
        container.header.model.validate()
    except BadInputError as exc:
        raise ValueError(f"cannot write .cnrv: {exc}") from exc
    _require(isinstance(container.header.fps, Fraction), "fps must be a Fraction")
    metadata = container.metadata
    _require(isinstance(metadata, dict) and all(isinstance(k, str) for k in metadata), "metadata needs str keys")
    if container.model_ref is not None:
        _require(isinstance(container.model_ref, bytes) and len(container.model_ref) == MODEL_HASH_BYTES
                 and not container.decoder, f"a model reference is {MODEL_HASH_BYTES} bytes and replaces the decoder")
    else:
        _require(len(container.decoder) >= 1, "no decoder tensors and no model reference")
    for i, record in enumerate(container.decoder):
        check_tensor(record, f"decoder tensor {i}")
    if container.embeddings is not None:
        check_tensor(container.embeddings, "embeddings")
    try:
        data = _encode(container)
    except (struct.error, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ValueError(f"cannot write .cnrv: a field does not fit its type: {exc}") from exc
    try:
        read_container(data)
    except (CorruptContainerError, UnsupportedVersionError) as exc:
        raise ValueError(f"cannot write .cnrv: it would not read back: {exc}") from exc
    return data


def _require(condition: bool, message: str) -> None:
    """A failed writer check is the caller's bug, hence ValueError rather than a CnervError."""
    if not condition:
        raise ValueError(f"cannot write .cnrv: {message}")


def check_tensor(record: TensorRecord, what: str) -> None:
    quant, stream, shape = record.quant, record.stream, record.shape
    _require(isinstance(shape, tuple) and 1 <= len(shape) <= MAX_NDIM and isinstance(quant.bits, int)
             and isinstance(quant.axis, int) and AXIS_TENSOR <= quant.axis < len(shape), f"{what}: bad shape or axis")
    n_values, n_ranges = math.prod(shape), 1 if quant.axis == AXIS_TENSOR else shape[quant.axis]
    _require(stream.n_symbols == n_values, f"{what}: n_symbols {stream.n_symbols} != {n_values} values of {shape}")
    for name, values in (("offsets", quant.offsets), ("scales", quant.scales)):
        _require(isinstance(values, np.ndarray) and values.dtype == np.float32 and values.shape == (n_ranges,),
                 f"{what}: {name} must be a float32 array of shape ({n_ranges},)")
    _require(isinstance(stream.payload, bytes), f"{what}: payload must be bytes")
    if stream.coder == CODER_RAW:
        n_bytes = -(-n_values * quant.bits // 8)
        _require(len(stream.payload) == n_bytes, f"{what}: a raw payload needs {n_bytes} bytes")
        _require(np.size(stream.counts) == 0 and stream.first_symbol == 0, f"{what}: a raw stream has no counts")
    elif stream.coder == CODER_CATEGORICAL:
        counts = stream.counts
        _require(isinstance(counts, np.ndarray) and counts.dtype == np.uint32 and counts.ndim == 1
                 and 1 <= counts.size <= MAX_COUNTS, f"{what}: counts must be 1..{MAX_COUNTS} uint32 values")
        _require(int(counts.sum(dtype=np.uint64)) == n_values, f"{what}: counts must sum to n_symbols")
        _require(len(stream.payload) % 4 == 0, f"{what}: categorical payload must be whole u32 words")


def _encode(container: Container) -> bytes:
    chunks = [(CHUNK_HEAD, _encode_head(container.header))]
    if container.model_ref is None:
        chunks.append((CHUNK_DECO, encode_decoder(container.decoder)))
    else:
        chunks.append((CHUNK_MREF, container.model_ref))
    if container.embeddings is not None:
        chunks.append((CHUNK_EMBD, _encode_tensor(container.embeddings)))
    if container.audio is not None:
        chunks.append((CHUNK_AUDIO, _encode_audio(container.audio)))
    if container.metadata:
        text = json.dumps(container.metadata, sort_keys=True, separators=(",", ":"), allow_nan=False)
        chunks.append((CHUNK_META, text.encode("ascii")))
    chunks.append((CHUNK_END, b""))
    return frame_chunks(CNRV_FORMAT, chunks, minor=1 if container.model_ref is not None else 0)


def encode_decoder(records: tuple[TensorRecord, ...]) -> bytes:
    """The DECO payload: tensor count, then each tensor record (also the model file's DECO)."""
    return struct.pack("<H", len(records)) + b"".join(map(_encode_tensor, records))


def frame_chunks(fmt: FileFormat, chunks: list[tuple[str, bytes]], minor: int | None = None) -> bytes:
    """Preamble, then each (type, payload) as length, type, payload, CRC32 of type and payload."""
    framed = (struct.pack("<I", len(p)) + k.encode() + p + struct.pack("<I", zlib.crc32(k.encode() + p))
              for k, p in chunks)
    return fmt.signature + bytes((fmt.major, fmt.minor if minor is None else minor)) + b"".join(framed)


def _encode_head(header: StreamHeader) -> bytes:
    model, color, fps = header.model, header.color, header.fps
    padded_h, padded_w = model.padded_size
    return b"".join((
        struct.pack("<IHHHHII", header.n_frames, model.width, model.height, padded_w, padded_h,
                    fps.numerator, fps.denominator),
        struct.pack("<6Bf", color.color_range, color.matrix, color.primaries, color.transfer,
                    header.weight_bits, header.embed_bits, header.prune_fraction),
        encode_model_config(model),
    ))


def encode_model_config(model: ModelConfig) -> bytes:
    """The network config fields (HEAD from offset 24; also the model file's MHDR)."""
    emb, n_stages = model.embedding, len(model.strides)
    return b"".join((
        struct.pack("<3BHBd", ARCHS.index(model.arch), emb.grid[0], emb.grid[1], emb.dim, emb.freqs, emb.base),
        struct.pack("<4B", ACTIVATIONS.index(model.activation), OUT_ACTIVATIONS.index(model.out_activation),
                    model.head_kernel, n_stages),
        struct.pack(f"<{n_stages + 1}H{n_stages}B", *model.widths, *model.strides),
        struct.pack("<dHI", model.nerv_pe_base, model.nerv_pe_freqs, model.nerv_hidden),
    ))


def _encode_tensor(record: TensorRecord) -> bytes:
    quant, stream, ndim = record.quant, record.stream, len(record.shape)
    ranges = np.stack([quant.offsets, quant.scales], axis=1).astype("<f4").tobytes()
    head = struct.pack(f"<B{ndim}IBb", ndim, *record.shape, quant.bits, quant.axis) + ranges
    head += struct.pack("<BI", stream.coder, stream.n_symbols)
    if stream.coder != CODER_CATEGORICAL:
        return head + stream.payload
    varints = bytearray()
    for count in stream.counts.tolist():
        while count >= 0x80:
            varints.append(count & 0x7F | 0x80)
            count >>= 7
        varints.append(count)
    counts = struct.pack("<HH", stream.first_symbol, stream.counts.size - 1) + varints
    return head + counts + struct.pack("<I", len(stream.payload) // 4) + stream.payload


def _encode_audio(track: AudioTrack) -> bytes:
    def text(value: str) -> bytes:
        return struct.pack("<B", len(value)) + value.encode("ascii")  # non-ASCII: UnicodeEncodeError

    tb = track.time_base
    parts = [text(track.codec), struct.pack("<IH", track.sample_rate, track.channels), text(track.layout),
             text(track.sample_format), struct.pack("<4I", tb.numerator, tb.denominator, track.bit_rate,
                                                    len(track.extradata)), track.extradata,
             struct.pack("<I", len(track.packets))]
    for pkt in track.packets:
        flags = PACKET_KEYFRAME * pkt.is_keyframe | PACKET_HAS_PTS * (pkt.pts is not None) | \
            PACKET_HAS_DTS * (pkt.dts is not None)
        parts += [struct.pack("<BqqII", flags, pkt.pts or 0, pkt.dts or 0, pkt.duration, len(pkt.data)), pkt.data]
    return b"".join(bytes(part) for part in parts)


# --- Reading: every read goes through a bounds-checked ChunkCursor, and nothing is allocated before ---
# --- its size is known to fit in what the payload still holds.                                 ---


def read_container(data: bytes) -> Container:
    """Parse and validate a whole file. Raises CorruptContainerError / UnsupportedVersionError."""
    return parse_guarded(data, CNRV_FORMAT, _parse)


def parse_guarded(data: bytes, fmt: FileFormat, parse: Callable[[memoryview], Any]) -> Any:
    """``parse(view)`` of a whole file, with any stray low-level error turned into the container's own."""
    view = memoryview(data).cast("B")
    try:
        return parse(view)
    except (struct.error, ValueError, OverflowError, MemoryError, RecursionError, IndexError) as exc:
        # A safety net: the checks should all fire first, but no input may escape as anything else.
        raise CorruptContainerError(f"corrupt {fmt.label}: unreadable ({type(exc).__name__}: {exc})") from exc


def read_chunks(view: memoryview, fmt: FileFormat, first_kind: str,
                read_payload: Callable[[ChunkCursor, dict[str, Any], tuple[int, int]], None],
                ) -> tuple[dict[str, Any], list[ChunkInfo], tuple[int, int]]:
    """Walk a file of format ``fmt``: preamble, framing, each chunk's CRC, ``first_kind`` first and no
    known type twice; ``read_payload(cursor, parts, version)`` parses each chunk into ``parts``."""
    version = read_preamble(view, fmt)
    parts: dict[str, Any] = {}
    infos: list[ChunkInfo] = []
    for info, start in walk_chunks(view, fmt):
        infos.append(info)
        kind, offset, label = info.kind, info.offset, fmt.label
        if not info.crc_ok:
            raise CorruptContainerError(f"corrupt {label}: chunk {kind} at byte {offset} fails its CRC check")
        if first_kind not in parts and kind != first_kind:
            raise CorruptContainerError(f"corrupt {label}: first chunk is {kind} at byte {offset}, expected {first_kind}")
        if kind in parts:
            raise CorruptContainerError(f"corrupt {label}: second {kind} chunk at byte {offset}")
        read_payload(ChunkCursor(view, info, start, label), parts, version)
    return parts, infos, version


def chunk_table(data: bytes) -> tuple[ChunkInfo, ...]:
    """Every chunk with its CRC status, payloads unparsed; raises only when the framing is unreadable."""
    view = memoryview(data).cast("B")
    read_preamble(view)
    return tuple(info for info, _ in walk_chunks(view))


def read_preamble(view: memoryview, fmt: FileFormat = CNRV_FORMAT) -> tuple[int, int]:
    """Check size, signature and major version; returns (major, minor)."""
    label = fmt.label
    if len(view) > MAX_FILE_BYTES:
        raise CorruptContainerError(f"corrupt {label}: {len(view)} bytes exceed the {MAX_FILE_BYTES}-byte limit")
    head = bytes(view[:_PREAMBLE_BYTES])
    if not head:
        raise CorruptContainerError(f"not a {label} file (empty file)")
    if not head.startswith(fmt.signature) and not (len(head) < len(fmt.signature) and fmt.signature.startswith(head)):
        hint = "; was it transferred in text mode?" if head.startswith(fmt.text_mode_signatures) else ""
        raise CorruptContainerError(f"not a {label} file (wrong signature){hint}")
    if len(head) < _PREAMBLE_BYTES:
        raise CorruptContainerError(f"truncated {label}: file ends inside the signature and version (10 bytes)")
    if head[8] != fmt.major:
        advice = ": upgrade cnervcodec" if head[8] > fmt.major else ""
        raise UnsupportedVersionError(f"this {label} file was written by format version {head[8]}.x; "
                                      f"this cnervcodec reads {fmt.major}.x{advice}")
    return head[8], head[9]


def walk_chunks(view: memoryview, fmt: FileFormat = CNRV_FORMAT) -> Iterator[tuple[ChunkInfo, int]]:
    """Each chunk's ChunkInfo and payload offset, up to FEND; raises on framing errors, not on CRCs."""
    label = fmt.label
    pos, after = _PREAMBLE_BYTES, "before the first chunk"
    while True:
        left = len(view) - pos
        if left < 8:
            raise CorruptContainerError(
                f"truncated {label}: file ends at byte {pos} {after}, without the FEND chunk" if not left
                else f"truncated {label}: file ends inside a chunk header at byte {pos} (needs {8 - left} more bytes)")
        length, raw_type = struct.unpack_from("<I4s", view, pos)
        if not (raw_type.isalpha() and raw_type.isascii()):
            raise CorruptContainerError(f"corrupt {label}: invalid chunk type {raw_type!r} at byte {pos}")
        kind, end = raw_type.decode("ascii"), pos + 12 + length
        if end > len(view):
            raise CorruptContainerError(f"truncated {label}: file ends inside chunk {kind} at byte {pos} "
                                        f"(needs {end - len(view)} more bytes)")
        crc_ok = zlib.crc32(view[pos + 4 : end - 4]) == struct.unpack_from("<I", view, end - 4)[0]
        if kind == CHUNK_END and length:
            raise CorruptContainerError(f"corrupt {label}: chunk FEND at byte {pos} has {length} payload bytes, needs 0")
        yield ChunkInfo(kind, pos, length, crc_ok, kind[0].isupper()), pos + 8
        if kind == CHUNK_END:
            if end != len(view):
                raise CorruptContainerError(f"corrupt {label}: {len(view) - end} bytes after the FEND chunk "
                                            f"at byte {pos}")
            return
        pos, after = end, f"after chunk {kind}"


class ChunkCursor:
    """Bounds-checked reads from one chunk's payload; its errors name the chunk and the field's byte."""

    def __init__(self, view: memoryview, info: ChunkInfo, start: int, label: str = ".cnrv") -> None:
        self.view, self.info, self.pos, self.end = view, info, start, start + info.length
        self.label = label

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def fail(self, what: str, at: int | None = None) -> NoReturn:
        where = self.pos if at is None else at
        raise CorruptContainerError(f"corrupt {self.label}: chunk {self.info.kind} at byte {self.info.offset}: {what} "
                                    f"(byte {where})")

    def take(self, n_bytes: int, what: str) -> memoryview:
        if n_bytes > self.remaining:
            self.fail(f"{what} needs {n_bytes} bytes but the chunk has {self.remaining} left")
        self.pos += n_bytes
        return self.view[self.pos - n_bytes : self.pos]

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def number(self, fmt: str, what: str, low: float, high: float) -> Any:
        """One int or float field; NaN and infinities are always out of range."""
        at, (value,) = self.pos, self.unpack(fmt, what)
        if not (math.isfinite(value) and low <= value <= high):
            self.fail(f"{what} {value} is outside {low}..{high}", at)
        return value

    def enum(self, what: str, names: tuple[str, ...]) -> str:
        return names[self.number("<B", f"{what} code", 0, len(names) - 1)]

    def ascii(self, what: str, min_len: int) -> str:
        at = self.pos
        raw = bytes(self.take(self.number("<B", f"{what} length", min_len, 255), what))
        if not all(0x20 <= b <= 0x7E for b in raw):
            self.fail(f"{what} {raw!r} is not printable ASCII", at)
        return raw.decode("ascii")

    def expect_end(self) -> None:
        if self.remaining:
            self.fail(f"{self.remaining} unexpected bytes after the last field")


def _parse(view: memoryview) -> Container:
    parts, infos, version = read_chunks(view, CNRV_FORMAT, CHUNK_HEAD, _read_chunk)
    if (CHUNK_DECO in parts) == (CHUNK_MREF in parts):
        what = "both DECO and MREF chunks" if CHUNK_DECO in parts else "no DECO (or MREF) chunk"
        raise CorruptContainerError(f"corrupt .cnrv: {what} before FEND at byte {infos[-1].offset}")
    if parts[CHUNK_HEAD].model.arch == "cnerv" and CHUNK_EMBD not in parts:
        raise CorruptContainerError(f"corrupt .cnrv: no EMBD chunk before FEND at byte {infos[-1].offset}")
    return Container(parts[CHUNK_HEAD], parts.get(CHUNK_DECO, ()), parts.get(CHUNK_EMBD), parts.get(CHUNK_AUDIO),
                     parts.get(CHUNK_META, {}), version, tuple(infos), parts.get(CHUNK_MREF))


def _read_chunk(cur: ChunkCursor, parts: dict[str, Any], version: tuple[int, int]) -> None:
    """Parse one chunk into ``parts`` (or skip an unknown skippable one); ``read_chunks`` checked its place."""
    kind, offset = cur.info.kind, cur.info.offset
    if kind == CHUNK_HEAD:
        parts[kind] = _read_head(cur)
    elif kind == CHUNK_DECO:
        parts[kind] = read_decoder(cur)
    elif kind == CHUNK_MREF:
        parts[kind] = bytes(cur.take(MODEL_HASH_BYTES, "model SHA-256"))
        cur.expect_end()
    elif kind == CHUNK_EMBD:
        parts[kind] = _read_embeddings(cur, parts[CHUNK_HEAD])
    elif kind == CHUNK_AUDIO:
        parts[kind] = _read_audio(cur)
    elif kind == CHUNK_META:
        parts[kind] = read_meta(cur)
    elif kind[0].isupper() and kind != CHUNK_END:
        ours = f"{MAJOR_VERSION}.{MINOR_VERSION}"
        if version[1] > MINOR_VERSION:
            raise UnsupportedVersionError(
                f"unsupported .cnrv: chunk {kind} at byte {offset} is critical but unknown; this .cnrv file was "
                f"written by format version {version[0]}.{version[1]}; this cnervcodec reads {ours}: "
                "upgrade cnervcodec")
        raise CorruptContainerError(f"corrupt .cnrv: chunk {kind} at byte {offset} is critical but unknown to "
                                    f"format {ours}")


def read_decoder(cur: ChunkCursor) -> tuple[TensorRecord, ...]:
    """A DECO payload: 1..MAX_TENSORS tensor records filling the chunk exactly."""
    count = cur.number("<H", "n_tensors", 1, MAX_TENSORS)
    records = tuple(_read_tensor(cur, f"tensor {i}") for i in range(count))
    cur.expect_end()
    return records


def _read_head(cur: ChunkCursor) -> StreamHeader:
    n_frames = cur.number("<I", "n_frames", 1, MAX_FRAMES)
    width, height = cur.number("<H", "width", 1, MAX_SIDE_PX), cur.number("<H", "height", 1, MAX_SIDE_PX)
    padded_at, (padded_w, padded_h) = cur.pos, cur.unpack("<HH", "padded size")
    fps = Fraction(cur.number("<I", "fps numerator", 1, _U32), cur.number("<I", "fps denominator", 1, _U32))
    color = ColorInfo(*cur.unpack("<4B", "colour codes"))
    weight_bits, embed_bits = cur.number("<B", "weight_bits", 1, MAX_BITS), cur.number("<B", "embed_bits", 1, MAX_BITS)
    prune = cur.number("<f", "prune_fraction", 0.0, LARGEST_F32_BELOW_1)
    model = read_model_config(cur, width, height)
    if model.padded_size != (padded_h, padded_w):
        cur.fail(f"padded size {padded_w}x{padded_h} != {model.padded_size[1]}x{model.padded_size[0]} "
                 "computed from the network config", padded_at)
    return StreamHeader(model, n_frames, fps, color, weight_bits, embed_bits, prune)  # extra bytes: newer minor


def read_model_config(cur: ChunkCursor, width: int, height: int) -> ModelConfig:
    """The network config fields of HEAD, validated by ModelConfig itself so that its limits live in one place."""
    at, arch = cur.pos, cur.enum("arch", ARCHS)
    rows, cols, dim, freqs = cur.unpack("<BBHB", "embedding grid, dim and freqs")
    base = cur.number("<d", "embedding base", -math.inf, math.inf)
    activation, out_activation = cur.enum("activation", ACTIVATIONS), cur.enum("out_activation", OUT_ACTIVATIONS)
    (head_kernel,) = cur.unpack("<B", "head_kernel")
    n_stages = cur.number("<B", "n_stages", 1, MAX_STAGES)
    widths, strides = cur.unpack(f"<{n_stages + 1}H", "widths"), cur.unpack(f"<{n_stages}B", "strides")
    pe_base = cur.number("<d", "nerv_pe_base", -math.inf, math.inf)
    pe_freqs, hidden = cur.unpack("<HI", "nerv_pe_freqs and nerv_hidden")
    try:
        return ModelConfig(
            arch=arch, height=height, width=width, embedding=EmbeddingConfig((rows, cols), dim, freqs, base),
            widths=widths, strides=strides, activation=activation, out_activation=out_activation,
            head_kernel=head_kernel, nerv_pe_base=pe_base, nerv_pe_freqs=pe_freqs, nerv_hidden=hidden,
        ).validate()
    except BadInputError as exc:
        cur.fail(f"invalid network config: {exc}", at)


def _read_tensor(cur: ChunkCursor, what: str) -> TensorRecord:
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
    quant = QuantParams(bits, axis, ranges[:, 0].copy(), ranges[:, 1].copy())
    return TensorRecord(shape, quant, _read_stream(cur, math.prod(shape), bits, what))


def _read_stream(cur: ChunkCursor, n_values: int, bits: int, what: str) -> SymbolStream:
    coder = cur.number("<B", f"{what} coder", 0, len(CODER_NAMES) - 1)
    cur.number("<I", f"{what} n_symbols", n_values, n_values)
    if coder == CODER_RAW:
        n_bits = n_values * bits
        payload = bytes(cur.take(-(-n_bits // 8), f"{what} packed symbols"))
        if n_bits % 8 and payload[-1] >> (n_bits % 8):
            cur.fail(f"{what} has nonzero padding bits", cur.pos - 1)
        return SymbolStream(CODER_RAW, n_values, payload)
    at, (first_symbol, n_counts) = cur.pos, cur.unpack("<HH", f"{what} first_symbol and n_counts")
    if first_symbol + n_counts + 1 > 1 << bits:
        cur.fail(f"{what} symbols {first_symbol}..{first_symbol + n_counts} exceed {bits} bits", at)
    at, counts = cur.pos, _read_varints(cur, n_counts + 1, f"{what} counts")
    if int(counts.sum(dtype=np.uint64)) != n_values:
        cur.fail(f"{what} counts sum to {int(counts.sum(dtype=np.uint64))}, not n_symbols {n_values}", at)
    (n_words,) = cur.unpack("<I", f"{what} n_words")
    payload = bytes(cur.take(4 * n_words, f"{what} words"))
    return SymbolStream(CODER_CATEGORICAL, n_values, payload, first_symbol, counts)


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
        if value > _U32 or (byte == 0 and pos - start > 1):
            cur.fail(f"{what}: varint {i} exceeds 32 bits or is not minimal", start)
        values[i] = value
    cur.pos = pos
    return values


def _read_embeddings(cur: ChunkCursor, header: StreamHeader) -> TensorRecord:
    if header.model.arch != "cnerv":
        cur.fail("a nerv stream has no embeddings", cur.info.offset)
    grid = header.model.embedding.grid
    expected = (header.n_frames, header.model.embedding.dim, grid[0], grid[1])
    at, record = cur.pos, _read_tensor(cur, "embeddings")
    if record.shape != expected:
        cur.fail(f"embeddings shape {record.shape} != {expected} from HEAD", at)
    cur.expect_end()
    return record


def _read_audio(cur: ChunkCursor) -> AudioTrack:
    codec = cur.ascii("codec", 1)
    rate = cur.number("<I", "sample_rate", 1, MAX_SAMPLE_RATE_HZ)
    channels = cur.number("<H", "channels", 1, MAX_CHANNELS)
    layout, sample_format = cur.ascii("layout", 0), cur.ascii("sample_format", 0)
    time_base = Fraction(cur.number("<I", "time_base numerator", 1, _U32),
                         cur.number("<I", "time_base denominator", 1, _U32))
    (bit_rate,) = cur.unpack("<I", "bit_rate")
    extradata = bytes(cur.take(cur.number("<I", "extradata length", 0, MAX_EXTRADATA_BYTES), "extradata"))
    n_packets = cur.number("<I", "n_packets", 0, MAX_PACKETS)
    if n_packets * _PACKET_FIXED_BYTES > cur.remaining:
        cur.fail(f"{n_packets} packets need at least {n_packets * _PACKET_FIXED_BYTES} bytes, {cur.remaining} left")
    packets = tuple(_read_packet(cur, i) for i in range(n_packets))
    return AudioTrack(codec, rate, channels, layout, sample_format, time_base, bit_rate, extradata, packets)


def _read_packet(cur: ChunkCursor, index: int) -> AudioPacket:
    at, (flags, pts, dts, duration) = cur.pos, cur.unpack("<BqqI", f"packet {index}")
    if flags & ~(PACKET_KEYFRAME | PACKET_HAS_PTS | PACKET_HAS_DTS):
        cur.fail(f"packet {index} has reserved flag bits set ({flags:#04x})", at)
    if (not flags & PACKET_HAS_PTS and pts) or (not flags & PACKET_HAS_DTS and dts):
        cur.fail(f"packet {index} has a nonzero pts/dts that is flagged absent", at)
    data = bytes(cur.take(cur.number("<I", f"packet {index} size", 0, MAX_PACKET_BYTES), f"packet {index} data"))
    return AudioPacket(pts if flags & PACKET_HAS_PTS else None, dts if flags & PACKET_HAS_DTS else None,
                       duration, bool(flags & PACKET_KEYFRAME), data)


def read_meta(cur: ChunkCursor) -> dict[str, Any]:
    if cur.remaining > MAX_META_BYTES:
        cur.fail(f"metadata of {cur.remaining} bytes exceeds {MAX_META_BYTES}")
    at = cur.pos
    try:
        value = json.loads(bytes(cur.take(cur.remaining, "metadata")).decode("utf-8"),
                           object_pairs_hook=_unique_keys, parse_constant=_finite_float, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        cur.fail(f"metadata is not valid JSON: {exc}", at)
    if not isinstance(value, dict):
        cur.fail("metadata must be a JSON object", at)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key is refused: two JSON readers could keep different values."""
    if len(result := dict(pairs)) != len(pairs):
        raise ValueError("repeated key in an object")
    return result


def _finite_float(text: str) -> float:
    """Python's json reads NaN, Infinity and 1e400 (as inf); the format has no non-finite numbers anywhere."""
    if not math.isfinite(value := float(text)):
        raise ValueError(f"{text} is not a finite JSON number")
    return value
