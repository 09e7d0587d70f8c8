"""The ``.cnrv`` layout (``bitstream_spec.md`` sections 2, 5, 7-9, 12-15): which chunks a stream holds and how.

``write_container`` turns a ``Container`` into the file's bytes and reads them back before returning,
so a file this module writes is, by construction, a file it reads; ``read_container`` parses and
validates a whole file. The framing is ``chunks``'s, the tensor records ``tensor_records``'s. Only
``codec`` builds containers from frames: everything else hands it frames or bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from cnervcodec.config import MAX_SIDE_PX, ModelConfig
from cnervcodec.errors import (
    BadInputError,
    CorruptContainerError,
    UnsupportedVersionError,
)
from cnervcodec.format.chunks import (
    CHUNK_END,
    CHUNK_META,
    U32_MAX,
    ChunkCursor,
    ChunkInfo,
    FileFormat,
    encode_meta,
    frame_chunks,
    parse_guarded,
    read_chunks,
    read_meta,
    read_preamble,
    walk_chunks,
)
from cnervcodec.format.network_fields import encode_model_config, read_model_config
from cnervcodec.format.records import (
    BASE_CODERS,
    CODER_NAMES,
    STREAM_CODERS,
    AudioPacket,
    AudioTrack,
    ColorInfo,
    TensorRecord,
)
from cnervcodec.format.tensor_records import (
    MAX_BITS,
    check_density,
    check_tensor,
    coders_used,
    encode_decoder,
    encode_tensor,
    read_decoder,
    read_tensor,
    require_writable,
)

SIGNATURE = b"\x89CNV\r\n\x1a\n"
MAJOR_VERSION = 1
MINOR_VERSION = 3  # 1.1 added MREF, 1.2 EMBT, 1.3 CODR; a file is written with the lowest minor that holds its chunks
MODEL_HASH_BYTES = 32  # SHA-256

CHUNK_HEAD, CHUNK_DECO, CHUNK_EMBD, CHUNK_AUDIO = "HEAD", "DECO", "EMBD", "audi"
CHUNK_MREF = "MREF"  # in place of DECO: the SHA-256 of the .cnrvm model that holds the decoder
CHUNK_EMBT = "EMBT"  # in place of EMBD: the embeddings' symbols coded as differences from the previous frame's
CHUNK_CODR = "CODR"  # the coders beyond raw and categorical that the file's tensor records use (Laplace)
CHUNK_ORDER = (CHUNK_HEAD, CHUNK_CODR, CHUNK_DECO, CHUNK_MREF, CHUNK_EMBD, CHUNK_EMBT, CHUNK_AUDIO, CHUNK_META,
               CHUNK_END)  # writer order = known types

PACKET_KEYFRAME, PACKET_HAS_PTS, PACKET_HAS_DTS = 0x01, 0x02, 0x04

# Limits a reader enforces (bitstream_spec.md section 13); the writer refuses what a reader would.
MAX_FRAMES = 1_000_000
MAX_SAMPLE_RATE_HZ = 768_000
MAX_CHANNELS = 64
MAX_EXTRADATA_BYTES = 1 << 20
MAX_PACKETS = 10_000_000
MAX_PACKET_BYTES = 1 << 20

LARGEST_F32_BELOW_1 = 1.0 - 2.0**-24  # prune_fraction < 1 as a closed range
_PACKET_FIXED_BYTES = 25  # flags, pts, dts, duration, size
# The signature after CRLF->LF, LF->CRLF and high-bit-stripping transfers: worth a hint in the message.
_TEXT_MODE_SIGNATURES = (b"\x89CNV\n\x1a\n", b"\x89CNV\r\r\n\x1a\r\n", b"\x09CNV\r\n\x1a\n")

CNRV_FORMAT = FileFormat(".cnrv", SIGNATURE, MAJOR_VERSION, MINOR_VERSION, _TEXT_MODE_SIGNATURES)


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
class Container:
    header: StreamHeader
    decoder: tuple[TensorRecord, ...]  # in model.bitstream_tensors order
    embeddings: TensorRecord | None  # (T, d, n_h, n_w); None for NeRV
    audio: AudioTrack | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: tuple[int, int] = (MAJOR_VERSION, MINOR_VERSION)
    chunks: tuple[ChunkInfo, ...] = ()  # filled by read_container
    model_ref: bytes | None = None  # MREF: the decoder is in the model file with this SHA-256; decoder is ()
    embeddings_temporal: bool = False  # EMBT: the record's symbols are temporal residuals (tensor_coding)


def write_container(container: Container) -> bytes:
    """The file's bytes (chunk order: HEAD, DECO or MREF, EMBD or EMBT, audi, meta, FEND); ValueError on invalid input."""
    try:
        container.header.model.validate()
    except BadInputError as exc:
        raise ValueError(f"cannot write .cnrv: {exc}") from exc
    require_writable(isinstance(container.header.fps, Fraction), "fps must be a Fraction")
    metadata = container.metadata
    require_writable(isinstance(metadata, dict) and all(isinstance(k, str) for k in metadata), "metadata needs str keys")
    if container.model_ref is not None:
        require_writable(isinstance(container.model_ref, bytes) and len(container.model_ref) == MODEL_HASH_BYTES
                         and not container.decoder, f"a model reference is {MODEL_HASH_BYTES} bytes and replaces the decoder")
    else:
        require_writable(len(container.decoder) >= 1, "no decoder tensors and no model reference")
    for i, record in enumerate(container.decoder):  # what it uses beyond the base coders goes in CODR
        check_tensor(record, f"decoder tensor {i}", STREAM_CODERS)
    if container.embeddings is not None:
        check_tensor(container.embeddings, "embeddings", STREAM_CODERS)
    try:
        data = _encode(container)
    except (struct.error, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ValueError(f"cannot write .cnrv: a field does not fit its type: {exc}") from exc
    try:
        read_container(data)
    except (CorruptContainerError, UnsupportedVersionError) as exc:
        raise ValueError(f"cannot write .cnrv: it would not read back: {exc}") from exc
    return data


def _encode(container: Container) -> bytes:
    chunks = [(CHUNK_HEAD, _encode_head(container.header))]
    if extra := extra_coders(container):
        chunks.append((CHUNK_CODR, struct.pack(f"<B{len(extra)}B", len(extra), *extra)))
    if container.model_ref is None:
        chunks.append((CHUNK_DECO, encode_decoder(container.decoder)))
    else:
        chunks.append((CHUNK_MREF, container.model_ref))
    if container.embeddings is not None:
        kind = CHUNK_EMBT if container.embeddings_temporal else CHUNK_EMBD
        chunks.append((kind, encode_tensor(container.embeddings)))
    if container.audio is not None:
        chunks.append((CHUNK_AUDIO, _encode_audio(container.audio)))
    if container.metadata:
        chunks.append((CHUNK_META, encode_meta(container.metadata)))
    chunks.append((CHUNK_END, b""))
    return frame_chunks(CNRV_FORMAT, chunks, minor=written_minor(container))


def extra_coders(container: Container) -> tuple[int, ...]:
    """The coders beyond raw and categorical that the container's records use, in ascending order."""
    records = container.decoder + ((container.embeddings,) if container.embeddings is not None else ())
    return tuple(sorted(coders_used(records) - set(BASE_CODERS)))


def written_minor(container: Container) -> int:
    """The lowest minor version that has every chunk the file holds (section 3), so that a reader of
    an older minor refuses only the files it cannot decode, and says to upgrade."""
    if extra_coders(container):
        return 3
    if container.embeddings is not None and container.embeddings_temporal:
        return 2
    return 1 if container.model_ref is not None else 0


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


def read_container(data: bytes) -> Container:
    """Parse and validate a whole file. Raises CorruptContainerError / UnsupportedVersionError."""
    return parse_guarded(data, CNRV_FORMAT, _parse)


def chunk_table(data: bytes) -> tuple[ChunkInfo, ...]:
    """Every chunk with its CRC status, payloads unparsed; raises only when the framing is unreadable."""
    view = memoryview(data).cast("B")
    read_preamble(view, CNRV_FORMAT)
    return tuple(info for info, _ in walk_chunks(view, CNRV_FORMAT))


def _parse(view: memoryview) -> Container:
    parts, infos, version = read_chunks(view, CNRV_FORMAT, CHUNK_HEAD, _read_chunk)
    if (CHUNK_DECO in parts) == (CHUNK_MREF in parts):
        what = "both DECO and MREF chunks" if CHUNK_DECO in parts else "no DECO (or MREF) chunk"
        raise CorruptContainerError(f"corrupt .cnrv: {what} before FEND at byte {infos[-1].offset}")
    if CHUNK_EMBD in parts and CHUNK_EMBT in parts:
        raise CorruptContainerError(f"corrupt .cnrv: both EMBD and EMBT chunks before FEND at byte {infos[-1].offset}")
    embeddings = parts.get(CHUNK_EMBD, parts.get(CHUNK_EMBT))
    if parts[CHUNK_HEAD].model.arch == "cnerv" and embeddings is None:
        raise CorruptContainerError(f"corrupt .cnrv: no EMBD (or EMBT) chunk before FEND at byte {infos[-1].offset}")
    records = parts.get(CHUNK_DECO, ()) + ((embeddings,) if embeddings is not None else ())
    undeclared = coders_used(records) - set(BASE_CODERS) - set(parts.get(CHUNK_CODR, ()))
    if undeclared:
        names = ", ".join(CODER_NAMES[c] for c in sorted(undeclared))
        raise CorruptContainerError(f"corrupt .cnrv: tensor records use coder {names}, which no CODR chunk declares "
                                    f"(before FEND at byte {infos[-1].offset})")
    coded_bytes = sum(info.length for info in infos if info.kind in (CHUNK_DECO, CHUNK_EMBD, CHUNK_EMBT))
    check_density(records, coded_bytes, ".cnrv")
    return Container(parts[CHUNK_HEAD], parts.get(CHUNK_DECO, ()), embeddings, parts.get(CHUNK_AUDIO),
                     parts.get(CHUNK_META, {}), version, tuple(infos), parts.get(CHUNK_MREF),
                     embeddings_temporal=CHUNK_EMBT in parts)


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
    elif kind == CHUNK_CODR:
        parts[kind] = _read_coders(cur, version)
    elif kind in (CHUNK_EMBD, CHUNK_EMBT):
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


def _read_coders(cur: ChunkCursor, version: tuple[int, int]) -> tuple[int, ...]:
    """CODR: a count, then that many coder ids, ascending, each beyond the base coders. An id this
    reader does not know, in a file of a newer minor, is a coder it cannot decode: upgrade."""
    count = cur.number("<B", "coder count", 1, 255)
    at, ids = cur.pos, cur.unpack(f"<{count}B", "coder ids")
    cur.expect_end()
    if list(ids) != sorted(set(ids)) or min(ids) < len(BASE_CODERS):
        cur.fail(f"coder ids {list(ids)} must ascend without repeats, each >= {len(BASE_CODERS)}", at)
    if max(ids) >= len(CODER_NAMES):
        if version[1] > MINOR_VERSION:
            raise UnsupportedVersionError(
                f"unsupported .cnrv: chunk CODR at byte {cur.info.offset} declares coder {max(ids)}, unknown to this "
                f"cnervcodec (format {MAJOR_VERSION}.{MINOR_VERSION}); the file was written by format version "
                f"{version[0]}.{version[1]}: upgrade cnervcodec")
        cur.fail(f"coder id {max(ids)} is unknown to format {MAJOR_VERSION}.{MINOR_VERSION}", at)
    return ids


def _read_head(cur: ChunkCursor) -> StreamHeader:
    n_frames = cur.number("<I", "n_frames", 1, MAX_FRAMES)
    width, height = cur.number("<H", "width", 1, MAX_SIDE_PX), cur.number("<H", "height", 1, MAX_SIDE_PX)
    padded_at, (padded_w, padded_h) = cur.pos, cur.unpack("<HH", "padded size")
    fps = Fraction(cur.number("<I", "fps numerator", 1, U32_MAX), cur.number("<I", "fps denominator", 1, U32_MAX))
    color = ColorInfo(*cur.unpack("<4B", "colour codes"))
    weight_bits, embed_bits = cur.number("<B", "weight_bits", 1, MAX_BITS), cur.number("<B", "embed_bits", 1, MAX_BITS)
    prune = cur.number("<f", "prune_fraction", 0.0, LARGEST_F32_BELOW_1)
    model = read_model_config(cur, width, height)
    if model.padded_size != (padded_h, padded_w):
        cur.fail(f"padded size {padded_w}x{padded_h} != {model.padded_size[1]}x{model.padded_size[0]} "
                 "computed from the network config", padded_at)
    return StreamHeader(model, n_frames, fps, color, weight_bits, embed_bits, prune)  # extra bytes: newer minor


def _read_embeddings(cur: ChunkCursor, header: StreamHeader) -> TensorRecord:
    if header.model.arch != "cnerv":
        cur.fail("a nerv stream has no embeddings", cur.info.offset)
    grid = header.model.embedding.grid
    expected = (header.n_frames, header.model.embedding.dim, grid[0], grid[1])
    at, record = cur.pos, read_tensor(cur, "embeddings")
    if record.shape != expected:
        cur.fail(f"embeddings shape {record.shape} != {expected} from HEAD", at)
    cur.expect_end()
    return record


def _read_audio(cur: ChunkCursor) -> AudioTrack:
    codec = cur.ascii("codec", 1)
    rate = cur.number("<I", "sample_rate", 1, MAX_SAMPLE_RATE_HZ)
    channels = cur.number("<H", "channels", 1, MAX_CHANNELS)
    layout, sample_format = cur.ascii("layout", 0), cur.ascii("sample_format", 0)
    time_base = Fraction(cur.number("<I", "time_base numerator", 1, U32_MAX),
                         cur.number("<I", "time_base denominator", 1, U32_MAX))
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
