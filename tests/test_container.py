"""The .cnrv byte format (bitstream_spec.md): round trips, the golden file, the spec's own tables and
example, and hostile input.

Any damaged or hostile file must end in CorruptContainerError or UnsupportedVersionError, quickly and
without large allocations: the reader checks every size before it allocates. Files are built here
with plain struct calls where possible, so that the tests do not share the module's encoder.

Regenerate the golden file (only for a deliberate format change, with a new name):
    python tests/test_container.py --write-golden
"""

from __future__ import annotations

import copy
import math
import re
import struct
import sys
import time
import tracemalloc
import zlib
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from conftest import frame, split_file
from hypothesis import strategies as st

from cnervcodec import config
from cnervcodec.format import chunks, entropy
from cnervcodec.config import EmbeddingConfig, ModelConfig
from cnervcodec.format.records import (
    AXIS_TENSOR,
    AudioPacket,
    AudioTrack,
    CODER_CATEGORICAL,
    CODER_NAMES,
    CODER_RAW,
    ColorInfo,
    QuantParams,
    SymbolStream,
    TensorRecord,
)
from cnervcodec.format.stream import (
    CHUNK_ORDER,
    Container,
    PACKET_HAS_DTS,
    PACKET_HAS_PTS,
    PACKET_KEYFRAME,
    SIGNATURE,
    StreamHeader,
    chunk_table,
    read_container,
    write_container,
)
from cnervcodec.format.tensor_records import symbol_stream_nbytes
from cnervcodec.errors import CorruptContainerError, UnsupportedVersionError

SPEC = Path(__file__).resolve().parents[1] / "bitstream_spec.md"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden_v1_0.cnrv"
REFUSALS = (CorruptContainerError, UnsupportedVersionError)
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True)


# --- building containers ---------------------------------------------------------------------------


def pack_bits(symbols, bits: int) -> bytes:
    """The raw coder's layout, written out independently: bit k of the string is bit k % 8 of byte k // 8."""
    values = [int(s) for s in np.asarray(symbols).reshape(-1)]
    out = bytearray(-(-len(values) * bits // 8))
    for i, value in enumerate(values):
        for b in range(bits):
            if value >> b & 1:
                out[(i * bits + b) // 8] |= 1 << ((i * bits + b) % 8)
    return bytes(out)


def unpack_bits(payload: bytes, bits: int, n: int) -> list[int]:
    return [sum((payload[(i * bits + b) // 8] >> ((i * bits + b) % 8) & 1) << b for b in range(bits)) for i in range(n)]


def small_model(arch: str = "cnerv") -> ModelConfig:
    return ModelConfig(
        arch=arch, height=32, width=48, widths=(8, 6), strides=(2,), embedding=EmbeddingConfig(grid=(1, 1), dim=4),
        nerv_hidden=0 if arch == "cnerv" else 5,
    ).validate()


def unchecked_replace(config: ModelConfig, **changes) -> ModelConfig:
    """A copy of ``config`` with ``changes`` that skips the dataclass's own validation: what a
    caller's bug (or ``object.__setattr__``) could hand the writer, which must still refuse it."""
    bad = copy.copy(config)
    for name, value in changes.items():
        object.__setattr__(bad, name, value)
    return bad


def quant(shape: tuple[int, ...], bits: int, axis: int) -> QuantParams:
    n_ranges = 1 if axis == AXIS_TENSOR else shape[axis]
    offsets = np.linspace(-1.5, 0.75, n_ranges).astype(np.float32)
    scales = (np.arange(n_ranges, dtype=np.float32) + 1) / np.float32(64)
    return QuantParams(bits, axis, offsets, scales)


def raw_record(shape: tuple[int, ...], bits: int, axis: int = AXIS_TENSOR) -> TensorRecord:
    n = math.prod(shape)
    symbols = (np.arange(n) * 7 + 3) % (1 << bits)
    return TensorRecord(shape, quant(shape, bits, axis), SymbolStream(CODER_RAW, n, pack_bits(symbols, bits)))


def categorical_record(shape: tuple[int, ...], bits: int, axis: int, first_symbol: int) -> TensorRecord:
    n = math.prod(shape)
    counts = np.array([n - n // 3 - 1, 0, n // 3, 1], np.uint32)
    words = np.arange(1, 1 + n // 16, dtype="<u4").tobytes()  # illustrative: the container does not decode them
    stream = SymbolStream(CODER_CATEGORICAL, n, words, first_symbol, counts)
    return TensorRecord(shape, quant(shape, bits, axis), stream)


def golden_container() -> Container:
    """What tests/data/golden_v1_0.cnrv holds. Do not change: the golden test compares against it."""
    header = StreamHeader(
        model=small_model(), n_frames=3, fps=Fraction(30000, 1001), color=ColorInfo(1, 1, 1, 1),
        weight_bits=8, embed_bits=6, prune_fraction=0.25,
    )
    decoder = (
        categorical_record((6, 4, 1, 1), 8, 0, first_symbol=120),  # stem weight, per output channel
        raw_record((6,), 5),  # stem bias
        categorical_record((32, 6, 3, 3), 12, AXIS_TENSOR, first_symbol=2000),  # block weight: 2-byte varints
        raw_record((7,), 3),  # block bias: 21 bits, so 3 padding bits in the last byte
        raw_record((3, 6, 3, 3), 16, axis=1),  # head weight
        raw_record((3,), 1),  # head bias
    )
    audio = AudioTrack(
        codec="aac", sample_rate=48000, channels=2, layout="stereo", sample_format="fltp",
        time_base=Fraction(1, 48000), bit_rate=128000, extradata=b"\x11\x90\x56\xe5",
        packets=(
            AudioPacket(pts=-1024, dts=-1024, duration=1024, is_keyframe=True, data=b"\x21\x10\x05"),
            AudioPacket(pts=0, dts=None, duration=1024, is_keyframe=False, data=b"\x21\x1b"),
            AudioPacket(pts=None, dts=None, duration=0, is_keyframe=True, data=b""),
        ),
    )
    metadata = {"encoder": "cnervcodec 0.1.0", "fit": {"epochs": 3, "lr": 0.002}, "source": "caf\u00e9.mp4"}
    return Container(header, decoder, categorical_record((3, 4, 1, 1), 6, 1, first_symbol=5), audio, metadata)


def nerv_container() -> Container:
    header = StreamHeader(model=small_model("nerv"), n_frames=5, fps=Fraction(25))
    return Container(header, (raw_record((2, 3), 4), raw_record((7,), 9)), None)


def example_container() -> Container:
    """The worked example of bitstream_spec.md section 16."""
    model = ModelConfig(height=8, width=8, widths=(2, 2), strides=(2,), head_kernel=1,
                        embedding=EmbeddingConfig(grid=(1, 1), dim=1, freqs=1))
    header = StreamHeader(model=model, n_frames=2, fps=Fraction(25))
    f32 = np.float32
    bias = TensorRecord((2,), QuantParams(4, -1, np.array([-0.5], f32), np.array([0.0625], f32)),
                        SymbolStream(CODER_RAW, 2, pack_bits(np.array([3, 12]), 4)))
    weight = TensorRecord((2, 3), QuantParams(4, 0, np.array([-1, -2], f32), np.array([0.25, 0.5], f32)),
                          SymbolStream(CODER_CATEGORICAL, 6, struct.pack("<I", 0x12345678), 7,
                                       np.array([2, 3, 1], np.uint32)))
    embeddings = TensorRecord((2, 1, 1, 1), QuantParams(6, -1, np.array([0], f32), np.array([1], f32)),
                              SymbolStream(CODER_RAW, 2, pack_bits(np.array([5, 60]), 6)))
    return Container(header, (bias, weight), embeddings, metadata={"encoder": "cnervcodec 0.1.0"})


# --- comparing ------------------------------------------------------------------------------------


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_tensor(a: TensorRecord, b: TensorRecord) -> None:
    assert a.shape == b.shape
    assert (a.quant.bits, a.quant.axis) == (b.quant.bits, b.quant.axis)
    assert same_array(a.quant.offsets, b.quant.offsets) and same_array(a.quant.scales, b.quant.scales)
    sa, sb = a.stream, b.stream
    fields = ("coder", "n_symbols", "payload", "first_symbol")
    assert [getattr(sa, f) for f in fields] == [getattr(sb, f) for f in fields]
    assert same_array(sa.counts, sb.counts)


def assert_same_container(a: Container, b: Container) -> None:
    assert a.header == b.header
    assert len(a.decoder) == len(b.decoder)
    for ta, tb in zip(a.decoder, b.decoder):
        assert_same_tensor(ta, tb)
    assert (a.embeddings is None) == (b.embeddings is None)
    if a.embeddings is not None:
        assert_same_tensor(a.embeddings, b.embeddings)
    assert a.embeddings_temporal == b.embeddings_temporal
    assert a.audio == b.audio
    assert a.metadata == b.metadata


# --- raw file surgery ------------------------------------------------------------------------------


def join_file(chunks: list[tuple[str, bytes]], version: tuple[int, int] = (1, 0)) -> bytes:
    return SIGNATURE + bytes(version) + b"".join(frame(kind, payload) for kind, payload in chunks)


def replace_chunk(data: bytes, kind: str, payload: bytes) -> bytes:
    return join_file([(k, payload if k == kind else p) for k, p in split_file(data)])


def patch(data: bytes, kind: str, offset: int, fmt: str, *values) -> bytes:
    """The file with a field of one chunk's payload overwritten and the CRC made valid again."""
    payload = bytearray(dict(split_file(data))[kind])
    struct.pack_into(fmt, payload, offset, *values)
    return replace_chunk(data, kind, bytes(payload))


def refresh_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every chunk whose framing still fits, so mutations reach the parsers."""
    buf, pos = bytearray(data), 10
    while pos + 12 <= len(buf):
        (length,) = struct.unpack_from("<I", buf, pos)
        end = pos + 12 + length
        if end > len(buf):
            break
        struct.pack_into("<I", buf, end - 4, zlib.crc32(buf[pos + 4 : end - 4]))
        pos = end
    return bytes(buf)


def record(shape, bits=8, axis=-1, ranges=None, coder=0, n_symbols=None, tail=None) -> bytes:
    """A tensor record's bytes, built field by field as the spec's table says."""
    n = math.prod(shape)
    if ranges is None:
        ranges = struct.pack("<ff", 0.0, 1.0) * (1 if axis == -1 else shape[axis])
    if tail is None and coder == 0:
        tail = bytes(-(-n * bits // 8))
    elif tail is None:
        tail = struct.pack("<HH", 0, 0) + encode_varint(n) + struct.pack("<I", 0)
    head = struct.pack(f"<B{len(shape)}IBb", len(shape), *shape, bits, axis) + ranges
    return head + struct.pack("<BI", coder, n if n_symbols is None else n_symbols) + tail


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def audio_payload(codec=b"aac", rate=48000, channels=2, layout=b"stereo", fmt=b"fltp", tb=(1, 48000),
                  extradata=b"", n_packets=None, packets=(), tail=b"") -> bytes:
    text = lambda s: bytes([len(s)]) + s  # noqa: E731
    head = text(codec) + struct.pack("<IH", rate, channels) + text(layout) + text(fmt)
    head += struct.pack("<IIII", *tb, 0, len(extradata)) + extradata
    return head + struct.pack("<I", len(packets) if n_packets is None else n_packets) + b"".join(packets) + tail


def packet(flags=1, pts=0, dts=0, duration=1024, data=b"ab", size=None) -> bytes:
    return struct.pack("<BqqII", flags, pts, dts, duration, len(data) if size is None else size) + data


def refused(data: bytes, error=CorruptContainerError, match: str | None = None) -> str:
    with pytest.raises(error) as info:
        read_container(data)
    message = str(info.value)
    assert "\n" not in message
    if match is not None:
        assert re.search(match, message), message
    return message


@pytest.fixture(scope="module")
def golden_bytes() -> bytes:
    return write_container(golden_container())


# --- round trips and the golden file ---------------------------------------------------------------


def test_round_trip_keeps_every_field(golden_bytes):
    original = golden_container()
    got = read_container(golden_bytes)
    assert_same_container(got, original)
    assert got.version == (1, 0)
    assert [c.kind for c in got.chunks] == ["HEAD", "DECO", "EMBD", "audi", "meta", "FEND"]
    assert all(c.crc_ok for c in got.chunks)
    assert [c.critical for c in got.chunks] == [True, True, True, False, False, True]
    assert got.chunks[0].offset == 10 and got.chunks[-1].offset == len(golden_bytes) - 12
    assert write_container(got) == golden_bytes  # canonical: read then write gives the same bytes


def test_round_trip_nerv_without_audio_or_metadata():
    data = write_container(nerv_container())
    got = read_container(data)
    assert_same_container(got, nerv_container())
    assert got.embeddings is None and got.audio is None and got.metadata == {}
    assert [c.kind for c in got.chunks] == ["HEAD", "DECO", "FEND"]


def test_round_trip_largest_alphabet_and_unreduced_float32():
    counts = np.zeros(65536, np.uint32)
    counts[[0, 65535]] = [1, 2]
    big = TensorRecord((3,), quant((3,), 16, -1), SymbolStream(CODER_CATEGORICAL, 3, b"", 0, counts))
    weird = replace(raw_record((2, 2), 7, axis=1), quant=QuantParams(
        7, 1, np.array([-0.0, 3.4e38], np.float32), np.array([0.0, 1e-45], np.float32)))
    base = nerv_container()
    original = replace(base, decoder=(big, weird), header=replace(base.header, prune_fraction=float(np.float32(0.1))))
    got = read_container(write_container(original))
    assert_same_container(got, original)


def test_golden_file_still_reads():
    """A format change that breaks files written by 1.0 fails here (values are literals on purpose)."""
    data = GOLDEN.read_bytes()
    assert len(data) < 4096
    got = read_container(data)
    header = got.header
    assert got.version == (1, 0) and header.n_frames == 3 and header.fps == Fraction(30000, 1001)
    assert header.color == ColorInfo(1, 1, 1, 1) and (header.weight_bits, header.embed_bits) == (8, 6)
    assert header.prune_fraction == 0.25
    assert header.model == ModelConfig(
        arch="cnerv", height=32, width=48, embedding=EmbeddingConfig(grid=(1, 1), dim=4, freqs=15, base=1.15),
        widths=(8, 6), strides=(2,), activation="gelu", out_activation="tanh01", head_kernel=3,
        nerv_pe_base=1.25, nerv_pe_freqs=80, nerv_hidden=0,
    )
    assert [t.shape for t in got.decoder] == [(6, 4, 1, 1), (6,), (32, 6, 3, 3), (7,), (3, 6, 3, 3), (3,)]
    assert [t.stream.coder for t in got.decoder] == [1, 0, 1, 0, 0, 0]
    assert [t.quant.bits for t in got.decoder] == [8, 5, 12, 3, 16, 1]
    assert [t.quant.axis for t in got.decoder] == [0, -1, -1, -1, 1, -1]
    stem = got.decoder[0]
    assert stem.stream.first_symbol == 120 and stem.stream.counts.tolist() == [15, 0, 8, 1]
    assert same_array(stem.quant.offsets, np.array([-1.5, -1.05, -0.6, -0.15, 0.3, 0.75], np.float32))
    assert same_array(stem.quant.scales, np.arange(1, 7, dtype=np.float32) / 64)
    assert got.decoder[2].stream.counts.tolist() == [1151, 0, 576, 1]
    assert unpack_bits(got.decoder[1].stream.payload, 5, 6) == [3, 10, 17, 24, 31, 6]
    assert got.embeddings.shape == (3, 4, 1, 1) and got.embeddings.stream.first_symbol == 5
    assert got.audio.codec == "aac" and got.audio.time_base == Fraction(1, 48000)
    assert [(p.pts, p.dts, p.is_keyframe) for p in got.audio.packets] == [
        (-1024, -1024, True), (0, None, False), (None, None, True)]
    assert got.metadata == {"encoder": "cnervcodec 0.1.0", "fit": {"epochs": 3, "lr": 0.002}, "source": "caf\u00e9.mp4"}
    assert_same_container(got, golden_container())
    assert write_container(golden_container()) == data  # the writer still produces 1.0 byte for byte


# --- the spec's tables and example -----------------------------------------------------------------


def spec_table(heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table under ``### heading`` in bitstream_spec.md."""
    lines = SPEC.read_text(encoding="utf-8").splitlines()
    rows = []
    for line in lines[lines.index(f"### {heading}") + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
    return rows[1:]


def test_spec_chunk_type_table_matches_code():
    rows = spec_table("Chunk types")
    assert [row[0] for row in rows] == list(CHUNK_ORDER)
    assert [row[1] for row in rows] == [kind.encode().hex(" ").upper() for kind in CHUNK_ORDER]
    assert [row[2] == "yes" for row in rows] == [kind[0].isupper() for kind in CHUNK_ORDER]


@pytest.mark.parametrize(
    ("heading", "names"),
    [("Coders", CODER_NAMES), ("Architectures", config.ARCHS), ("Activations", config.ACTIVATIONS),
     ("Output activations", config.OUT_ACTIVATIONS)],
)
def test_spec_enum_tables_match_code(heading, names):
    assert [(int(row[0]), row[1]) for row in spec_table(heading)] == list(enumerate(names))


def test_spec_small_tables_match_code():
    assert (CODER_NAMES[CODER_RAW], CODER_NAMES[CODER_CATEGORICAL]) == ("raw", "categorical")
    assert int(spec_table("Quantization axis")[0][0]) == AXIS_TENSOR
    flags = [int(row[1], 16) for row in spec_table("Audio packet flags")]
    assert flags == [PACKET_KEYFRAME, PACKET_HAS_PTS, PACKET_HAS_DTS]
    assert f"`{SIGNATURE.hex(' ').upper()}`" in SPEC.read_text(encoding="utf-8")


def spec_hexdump() -> bytes:
    text = SPEC.read_text(encoding="utf-8")
    block = re.search(r"```hexdump\n(.*?)```", text, re.S).group(1)
    data = bytearray()
    for line in block.splitlines():
        offset, _, rest = line.partition("  ")
        assert int(offset, 16) == len(data), line
        data += bytes.fromhex(rest.split("|")[0])
    return bytes(data)


def test_spec_worked_example_is_what_the_writer_writes():
    data = write_container(example_container())
    assert spec_hexdump() == data
    assert_same_container(read_container(data), example_container())


def test_raw_bit_order_agrees_with_the_entropy_module():
    assert pack_bits([1, 2, 3], 3) == bytes([0b11010001, 0b0])
    assert pack_bits([0xABC], 12) == bytes([0xBC, 0x0A])
    symbols = np.arange(1000) * 37 % 2**13
    assert entropy.pack_bits(symbols, 13) == pack_bits(symbols, 13)


def test_symbol_stream_nbytes_is_the_encoded_size():
    for rec in golden_container().decoder:
        deco = dict(split_file(write_container(replace(nerv_container(), decoder=(rec,)))))["DECO"]
        n_ranges = 1 if rec.quant.axis == AXIS_TENSOR else rec.shape[rec.quant.axis]
        assert len(deco) == 2 + 3 + 4 * len(rec.shape) + 8 * n_ranges + symbol_stream_nbytes(rec.stream)
    counts = [0, 127, 128, 2**14 - 1, 2**14, 2**21, 2**28, 2**32 - 1]
    stream = SymbolStream(CODER_CATEGORICAL, 0, bytes(8), 0, np.array(counts, np.uint32))
    assert symbol_stream_nbytes(stream) == 1 + 4 + 4 + sum(len(encode_varint(c)) for c in counts) + 4 + 8


# --- signature and version -------------------------------------------------------------------------


def test_wrong_signature(golden_bytes):
    assert refused(b"GIF89a" + golden_bytes[6:]) == "not a .cnrv file (wrong signature)"
    assert refused(b"") == "not a .cnrv file (empty file)"
    assert refused(b"\x89CNM\r\n\x1a\n\x01\x00") == "not a .cnrv file (wrong signature)"  # a model file
    refused(golden_bytes[:5], match="^truncated .cnrv")
    refused(golden_bytes[:9], match="^truncated .cnrv")


@pytest.mark.parametrize(
    "damage",
    [lambda d: d.replace(b"\r\n", b"\n"), lambda d: d.replace(b"\n", b"\r\n"), lambda d: bytes(b & 0x7F for b in d)],
    ids=["crlf-to-lf", "lf-to-crlf", "7-bit"],
)
def test_text_mode_signature_gets_a_hint(golden_bytes, damage):
    message = refused(damage(golden_bytes))
    assert message == "not a .cnrv file (wrong signature); was it transferred in text mode?"


@pytest.mark.parametrize("major", [0, 2, 255])
def test_unknown_major_version_is_unsupported(golden_bytes, major):
    with pytest.raises(UnsupportedVersionError) as info:
        read_container(golden_bytes[:8] + bytes([major]) + golden_bytes[9:])
    assert info.value.exit_code == 4
    assert f"written by format version {major}.x; this cnervcodec reads 1.x" in str(info.value)
    if major > 1:
        assert str(info.value).endswith(f"version {major}.x; this cnervcodec reads 1.x: upgrade cnervcodec")
    with pytest.raises(UnsupportedVersionError):
        chunk_table(golden_bytes[:8] + bytes([major]) + golden_bytes[9:])


def test_newer_minor_with_appended_fields_and_new_chunks_is_accepted(golden_bytes):
    chunks = split_file(golden_bytes)
    grown = [(kind, payload + b"\x07new" if kind in ("HEAD", "audi") else payload) for kind, payload in chunks]
    grown.insert(3, ("zNEW", b"a new skippable chunk"))
    got = read_container(join_file(grown, version=(1, 9)))
    assert got.version == (1, 9)
    assert_same_container(got, golden_container())
    assert [c.kind for c in got.chunks] == ["HEAD", "DECO", "EMBD", "zNEW", "audi", "meta", "FEND"]
    assert got.chunks[0].length == len(chunks[0][1]) + 4


def test_error_exit_codes():
    assert CorruptContainerError.exit_code == 3 and UnsupportedVersionError.exit_code == 4


# --- framing ---------------------------------------------------------------------------------------


def test_crc_mismatch_names_the_chunk(golden_bytes):
    table = chunk_table(golden_bytes)
    deco = table[1]
    damaged = bytearray(golden_bytes)
    damaged[deco.offset + 20] ^= 0x10
    assert refused(bytes(damaged)) == f"corrupt .cnrv: chunk DECO at byte {deco.offset} fails its CRC check"
    status = chunk_table(bytes(damaged))  # info still lists every chunk and shows which one is damaged
    assert [c.crc_ok for c in status] == [True, False, True, True, True, True]
    assert [c.kind for c in status] == [c.kind for c in table]


def test_unknown_skippable_chunk_needs_a_good_crc(golden_bytes):
    chunks = split_file(golden_bytes)
    data = join_file(chunks[:2] + [("xtra", b"\x00" * 5)] + chunks[2:])
    assert_same_container(read_container(data), golden_container())
    bad = bytearray(data)
    offset = [c.offset for c in chunk_table(data) if c.kind == "xtra"][0]
    bad[offset + 9] ^= 1
    refused(bytes(bad), match=f"chunk xtra at byte {offset} fails its CRC check")


def test_truncation_names_the_chunk_and_missing_bytes(golden_bytes):
    embd = chunk_table(golden_bytes)[2]
    cut = embd.offset + 20
    needed = embd.offset + 12 + embd.length - cut
    assert refused(golden_bytes[:cut]) == (
        f"truncated .cnrv: file ends inside chunk EMBD at byte {embd.offset} (needs {needed} more bytes)")
    fend = chunk_table(golden_bytes)[-1]
    refused(golden_bytes[: fend.offset], match=f"ends at byte {fend.offset} after chunk meta, without the FEND")
    refused(golden_bytes[: fend.offset + 3], match=f"inside a chunk header at byte {fend.offset} .needs 5 more")


def test_truncation_at_every_byte_is_refused(golden_bytes):
    for end in range(len(golden_bytes)):
        with pytest.raises(CorruptContainerError):
            read_container(golden_bytes[:end])
        with pytest.raises(CorruptContainerError):
            chunk_table(golden_bytes[:end])


def test_every_single_bit_flip_is_caught(golden_bytes):
    """The CRC covers type and payload; a flipped length moves both the CRC'd range and the CRC field.

    Only the version bytes are outside every CRC: a flipped major is refused as unsupported, and a
    flipped minor reads as a newer minor of the same content, which the versioning rules make harmless.
    """
    for pos in range(len(golden_bytes)):
        for bit in range(8):
            damaged = bytearray(golden_bytes)
            damaged[pos] ^= 1 << bit
            if pos == 9:
                got = read_container(bytes(damaged))
                assert got.version == (1, 1 << bit)
                assert write_container(got) == golden_bytes
                continue
            with pytest.raises(UnsupportedVersionError if pos == 8 else CorruptContainerError):
                read_container(bytes(damaged))


@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 4096])
def test_length_field_larger_than_the_file(golden_bytes, length):
    for info in chunk_table(golden_bytes):
        damaged = bytearray(golden_bytes)
        struct.pack_into("<I", damaged, info.offset, length)
        refused(bytes(damaged), match=f"^truncated .cnrv: file ends inside chunk {info.kind} at byte {info.offset}")


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda c: [c[0]] + c, "second HEAD chunk"),
        (lambda c: [c[1], c[0]] + c[2:], "first chunk is DECO at byte 10, expected HEAD"),
        (lambda c: [c[-1]], "first chunk is FEND"),
        (lambda c: c[:2] + [c[1]] + c[2:], "second DECO"),
        (lambda c: c[:4] + [c[3]] + c[4:], "second audi"),
        (lambda c: c[:5] + [c[4]] + c[5:], "second meta"),
        (lambda c: [c[0]] + c[2:], r"no DECO \(or MREF\) chunk"),
        (lambda c: c[:2] + c[3:], r"no EMBD \(or EMBT\) chunk"),
        (lambda c: c[:1] + [("XTRA", b"")] + c[1:], r"chunk XTRA at byte \d+ is critical but unknown to format 1.3"),
        (lambda c: c[:-1] + [("FEND", b"\x00")], "FEND at byte \\d+ has 1 payload bytes"),
        (lambda c: c[:-1], "without the FEND chunk"),
    ],
)
def test_chunk_multiplicity_and_order(golden_bytes, build, match):
    refused(join_file(build(split_file(golden_bytes))), match=match)


def test_chunks_between_head_and_fend_may_come_in_any_order(golden_bytes):
    c = split_file(golden_bytes)
    assert_same_container(read_container(join_file([c[0], c[4], c[3], c[2], c[1], c[5]])), golden_container())


def test_unknown_critical_chunk_in_a_newer_minor_is_unsupported(golden_bytes):
    c = split_file(golden_bytes)
    with pytest.raises(UnsupportedVersionError, match="chunk XTRA at byte 89 is critical but unknown.*1.4.*upgrade"):
        read_container(join_file(c[:1] + [("XTRA", b"")] + c[1:], version=(1, 4)))


def test_embeddings_in_a_nerv_file_are_refused(golden_bytes):
    nerv = split_file(write_container(nerv_container()))
    embd = dict(split_file(golden_bytes))["EMBD"]
    refused(join_file(nerv[:2] + [("EMBD", embd)] + nerv[2:]), match="a nerv stream has no embeddings")


def test_framing_errors(golden_bytes):
    refused(golden_bytes + b"\x00" * 7, match=r"7 bytes after the FEND chunk at byte \d+")
    refused(golden_bytes[:14] + b"H\x00AD" + golden_bytes[18:], match=r"invalid chunk type b'H\\x00AD' at byte 10")
    with pytest.raises(CorruptContainerError):
        chunk_table(golden_bytes + b"\x00")


def test_file_size_limit(golden_bytes, monkeypatch):
    monkeypatch.setattr(chunks, "MAX_FILE_BYTES", len(golden_bytes) - 1)
    refused(golden_bytes, match="exceed the")


# --- fields out of range ---------------------------------------------------------------------------

NAN32, NAN64 = struct.pack("<f", math.nan), struct.pack("<d", math.nan)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (0, "<I", 0, "n_frames 0 is outside 1..1000000"),
        (0, "<I", 1_000_001, "n_frames"),
        (4, "<H", 0, r"width 0 is outside 1..16384 \(byte 22\)"),
        (6, "<H", 16385, "height"),
        (8, "<H", 50, "padded size 50x32"),
        (10, "<H", 34, "padded size"),
        (12, "<I", 0, "fps numerator"),
        (16, "<I", 0, "fps denominator"),
        (24, "<B", 0, "weight_bits"),
        (25, "<B", 17, "embed_bits"),
        (26, "<f", math.nan, "prune_fraction"),
        (26, "<f", 1.0, "prune_fraction"),
        (26, "<f", -0.5, "prune_fraction"),
        (30, "<B", 2, "arch code 2"),
        (31, "<B", 0, "embedding.grid"),
        (32, "<B", 65, "embedding.grid"),
        (33, "<H", 0, "embedding.dim"),
        (35, "<B", 65, "embedding.freqs"),
        (36, "<d", math.nan, "embedding base"),
        (36, "<d", math.inf, "embedding base"),
        (36, "<d", 9.0, "embedding.base"),
        (44, "<B", 4, "activation code 4"),
        (45, "<B", 2, "out_activation code 2"),
        (46, "<B", 4, "head_kernel must be odd"),
        (47, "<B", 0, "n_stages 0"),
        (47, "<B", 9, "n_stages 9"),
        (48, "<H", 0, r"widths\[0\]"),
        (52, "<B", 9, r"strides\[0\]"),
        (53, "<d", math.inf, "nerv_pe_base"),
        (61, "<H", 0, "nerv_pe_freqs"),
        (63, "<I", 70000, "nerv_hidden"),
    ],
)
def test_head_fields_out_of_range(golden_bytes, offset, fmt, value, match):
    message = refused(patch(golden_bytes, "HEAD", offset, fmt, value), match=match)
    assert message.startswith("corrupt .cnrv: chunk HEAD at byte 10: ")


def test_short_head_is_refused(golden_bytes):
    head = dict(split_file(golden_bytes))["HEAD"]
    assert len(head) == 67
    refused(replace_chunk(golden_bytes, "HEAD", head[:-1]), match="nerv_pe_freqs and nerv_hidden needs 6 bytes")


ONE = struct.pack("<ff", 0.0, 1.0)


@pytest.mark.parametrize(
    ("deco", "match"),
    [
        (b"\x00\x00", "n_tensors 0"),
        (b"\x01\x10", "n_tensors 4097"),
        (b"\x02\x00" + record((4,)), "tensor 1 ndim needs 1 bytes"),
        (b"\x01\x00" + record((4,)) + b"\x00", "1 unexpected bytes after the last field"),
        (b"\x01\x00\x00", "tensor 0 ndim 0"),
        (b"\x01\x00\x05" + bytes(40), "tensor 0 ndim 5"),
        (b"\x01\x00" + record((4, 0)), r"shape \(4, 0\)"),
        (b"\x01\x00" + record((2**14, 2**14, 2), tail=b""), "at most 268435456 values"),
        (b"\x01\x00" + record((4,), bits=0), "bits 0"),
        (b"\x01\x00" + record((4,), bits=17), "bits 17"),
        (b"\x01\x00" + record((4,), axis=-2, ranges=ONE), "axis -2"),
        (b"\x01\x00" + record((4,), axis=1, ranges=ONE), "axis 1"),
        (b"\x01\x00" + record((4,), ranges=struct.pack("<ff", math.nan, 1)), "finite"),
        (b"\x01\x00" + record((4,), ranges=struct.pack("<ff", 0, math.inf)), "finite"),
        (b"\x01\x00" + record((4,), ranges=struct.pack("<ff", 0, -1)), "scales >= 0"),
        (b"\x01\x00" + record((4,), coder=3), "coder 3"),
        (b"\x01\x00" + record((4,), n_symbols=5), "n_symbols 5 is outside 4..4"),
        (b"\x01\x00" + record((4,), bits=3, tail=b"\x00"), "packed symbols needs 2 bytes"),
        (b"\x01\x00" + record((4,), bits=3, tail=b"\x00\x10"), "nonzero padding bits"),
        (b"\x01\x00" + record((4,), bits=2, coder=1, tail=struct.pack("<HH", 3, 1)), r"symbols 3..4 exceed 2 bits"),
        (b"\x01\x00" + record((4,), coder=1, tail=struct.pack("<HH", 0, 1) + b"\x03\x02" + bytes(4)), "sum to 5"),
        (b"\x01\x00" + record((4,), coder=1, tail=struct.pack("<HH", 0, 1) + b"\x84\x80"), "varint 0 runs past"),
        (b"\x01\x00" + record((4,), coder=1, tail=struct.pack("<HH", 0, 0) + b"\x84\x80\x80\x80\x80\x00"), "5 bytes"),
        (b"\x01\x00" + record((4,), coder=1, tail=struct.pack("<HH", 0, 0) + b"\x84\x00" + bytes(4)), "not minimal"),
        (b"\x01\x00" + record((4,), coder=1, tail=struct.pack("<HH", 0, 0) + b"\xff\xff\xff\xff\x1f"), "exceeds 32"),
        (b"\x01\x00" + record((4,), coder=1, tail=struct.pack("<HH", 0, 0) + b"\x04" + struct.pack("<I", 1)),
         "words needs 4 bytes"),
        (b"\x01\x00" + record((4,), bits=16, coder=1, tail=struct.pack("<HH", 0, 0xFFFF) + b"\x04"),
         "65536 varints need"),
    ],
)
def test_tensor_records_out_of_range(golden_bytes, deco, match):
    message = refused(replace_chunk(golden_bytes, "DECO", deco), match=match)
    assert message.startswith("corrupt .cnrv: chunk DECO at byte 89: ")


def test_embeddings_must_match_the_header(golden_bytes):
    refused(replace_chunk(golden_bytes, "EMBD", record((3, 4, 1, 2))), match=r"embeddings shape \(3, 4, 1, 2\) !=")
    refused(replace_chunk(golden_bytes, "EMBD", record((3, 4, 1, 1)) + b"\x00"), match="unexpected bytes")
    assert read_container(replace_chunk(golden_bytes, "EMBD", record((3, 4, 1, 1)))).embeddings.shape == (3, 4, 1, 1)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (audio_payload(codec=b""), "codec length 0"),
        (audio_payload(codec=b"a\x01c"), "not printable ASCII"),
        (audio_payload(layout=b"st\xe9r"), "not printable ASCII"),
        (audio_payload(rate=0), "sample_rate 0"),
        (audio_payload(rate=768_001), "sample_rate"),
        (audio_payload(channels=0), "channels 0"),
        (audio_payload(channels=65), "channels 65"),
        (audio_payload(tb=(0, 1)), "time_base numerator"),
        (audio_payload(tb=(1, 0)), "time_base denominator"),
        (audio_payload(extradata=b"ab")[:-5], "extradata needs 2 bytes"),
        (audio_payload(n_packets=10_000_001), "n_packets"),
        (audio_payload(n_packets=10_000_000), "10000000 packets need at least 250000000 bytes"),
        (audio_payload(packets=[packet(flags=8)]), "reserved flag bits"),
        (audio_payload(packets=[packet(flags=PACKET_HAS_DTS, pts=5)]), "flagged absent"),
        (audio_payload(packets=[packet(flags=PACKET_HAS_PTS, dts=-1)]), "flagged absent"),
        (audio_payload(packets=[packet(size=2**20 + 1)]), "packet 0 size"),
        (audio_payload(packets=[packet(size=2**20)]), "packet 0 data needs 1048576 bytes"),
    ],
)
def test_audio_fields_out_of_range(golden_bytes, payload, match):
    message = refused(replace_chunk(golden_bytes, "audi", payload), match=match)
    assert message.startswith("corrupt .cnrv: chunk audi at byte ")


def test_audio_extremes_are_accepted(golden_bytes):
    pkts = [packet(flags=7, pts=-(2**63), dts=2**63 - 1, duration=2**32 - 1), packet(flags=0, pts=0, dts=0, data=b"")]
    got = read_container(replace_chunk(golden_bytes, "audi", audio_payload(layout=b"", packets=pkts, tail=b"xy")))
    assert got.audio.layout == "" and got.audio.packets[0].pts == -(2**63) and got.audio.packets[1].pts is None


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\xff", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"a":1} x', "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b"", "not valid JSON"),
        (b'{"a":NaN}', "NaN is not a finite"),
        (b'{"a":-Infinity}', "not a finite"),
        (b'{"a":1e400}', "1e400 is not a finite"),
        (b'{"a":1,"a":2}', "repeated key"),
        (b'{"a":' + b"[" * 30000 + b"]" * 30000 + b"}", "not valid JSON"),
        (b'{"a":"' + b"x" * 65530 + b'"}', "metadata of 65538 bytes exceeds 65536"),
    ],
)
def test_metadata_must_be_a_json_object(golden_bytes, payload, match):
    refused(replace_chunk(golden_bytes, "meta", payload), match=match)


def test_metadata_of_exactly_64_kib_is_accepted(golden_bytes):
    payload = b'{"a":"' + b"x" * (65536 - 8) + b'"}'
    assert len(read_container(replace_chunk(golden_bytes, "meta", payload)).metadata["a"]) == 65528


# --- hostile sizes: refused quickly and without allocating -----------------------------------------

HUGE_DECO = [
    b"\x01\x00" + record((2**14, 2**14), bits=16, tail=b""),  # 512 MiB of packed bits claimed
    b"\x01\x00" + record((2**28,), axis=0, ranges=b"", tail=b""),  # 2 GiB of ranges claimed
    b"\x01\x00" + record((2**28,), coder=1, tail=struct.pack("<HH", 0, 0) + encode_varint(2**28) + b"\xff" * 4),
    b"\x01\x00" + record((2**28,), bits=16, coder=1, tail=struct.pack("<HH", 0, 0xFFFF) + b"\x80" * 100),
    b"\x00\x10" + record((4,)),  # 4096 tensors claimed, one present
]


def assert_refused_cheaply(data: bytes, error=CorruptContainerError) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error):
            read_container(data)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak_bytes < 2 * 2**20, peak_bytes


@pytest.mark.parametrize("deco", HUGE_DECO)
def test_huge_tensor_claims_are_refused_without_allocating(golden_bytes, deco):
    assert_refused_cheaply(replace_chunk(golden_bytes, "DECO", deco))


def test_huge_frame_count_and_audio_claims_are_refused_without_allocating(golden_bytes):
    many_frames = patch(golden_bytes, "HEAD", 0, "<I", 1_000_000)
    assert_refused_cheaply(replace_chunk(many_frames, "EMBD", record((1_000_000, 4, 1, 1), bits=16, tail=b"")))
    assert_refused_cheaply(replace_chunk(golden_bytes, "audi", audio_payload(n_packets=10_000_000)))
    extradata = audio_payload()[:-4]
    assert_refused_cheaply(replace_chunk(golden_bytes, "audi", extradata[:-4] + struct.pack("<I", 2**20)))
    assert_refused_cheaply(replace_chunk(golden_bytes, "audi", audio_payload(packets=[packet(size=2**20)])))
    big_length = bytearray(golden_bytes)
    struct.pack_into("<I", big_length, chunk_table(golden_bytes)[1].offset, 0xFFFFFFF0)
    assert_refused_cheaply(bytes(big_length))


# --- the writer refuses what a reader would refuse -------------------------------------------------

GOOD = golden_container()
F32 = np.float32


@pytest.mark.parametrize(
    ("broken", "match"),
    [
        (replace(GOOD, decoder=()), "no decoder tensors and no model reference"),
        (replace(GOOD, embeddings=None), r"no EMBD \(or EMBT\) chunk"),
        (replace(GOOD, embeddings=raw_record((3, 4, 1, 2), 6)), "embeddings shape"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], shape=(7,)),)), "n_symbols 6 != 7"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], quant=QuantParams(5, -1, np.zeros(1), np.ones(1, F32))),)),
         "offsets must be a float32 array"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], quant=QuantParams(5, 0, np.zeros(1, F32), np.ones(1, F32))),)),
         r"shape \(6,\)"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], quant=QuantParams(5, -1, np.zeros(1, F32),
                                                                            -np.ones(1, F32))),)), "scales >= 0"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], quant=QuantParams(5, -1, np.full(1, np.nan, F32),
                                                                            np.ones(1, F32))),)), "finite"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], stream=SymbolStream(CODER_RAW, 6, b"\x00")),)), "4 bytes"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[3], stream=SymbolStream(CODER_RAW, 7, b"\x00\x00\xff")),)),
         "padding bits"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], stream=SymbolStream(
            CODER_CATEGORICAL, 6, b"", 0, np.array([6], np.int64))),)), "uint32"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], stream=SymbolStream(
            CODER_CATEGORICAL, 6, b"", 0, np.array([5], np.uint32))),)), "sum to n_symbols"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], stream=SymbolStream(
            CODER_CATEGORICAL, 6, b"", 31, np.array([3, 3], np.uint32))),)), "exceed 5 bits"),
        (replace(GOOD, decoder=(replace(GOOD.decoder[1], stream=SymbolStream(3, 6, b"")),)), "coder 3"),
        (replace(GOOD, header=replace(GOOD.header, n_frames=0)), "n_frames 0"),
        (replace(GOOD, header=replace(GOOD.header, prune_fraction=1.0)), "prune_fraction"),
        (replace(GOOD, header=replace(GOOD.header, weight_bits=17)), "weight_bits"),
        (replace(GOOD, header=replace(GOOD.header, color=ColorInfo(256, 2, 2, 2))), "does not fit"),
        (replace(GOOD, header=replace(GOOD.header, fps=29.97)), "fps must be a Fraction"),
        (replace(GOOD, header=replace(GOOD.header, fps=Fraction(2**32, 3))), "does not fit"),
        (replace(GOOD, header=replace(GOOD.header, model=unchecked_replace(small_model(), widths=(8,)))), "widths"),
        (replace(GOOD, audio=replace(GOOD.audio, codec="\u00e5ac")), "does not fit"),
        (replace(GOOD, audio=replace(GOOD.audio, sample_rate=0)), "sample_rate 0"),
        (replace(GOOD, audio=replace(GOOD.audio, packets=(AudioPacket(2**63, None, 0, True, b""),))), "does not fit"),
        (replace(GOOD, metadata={"a": math.nan}), "does not fit"),
        (replace(GOOD, metadata={"a": object()}), "does not fit"),
        (replace(GOOD, metadata={1: "a"}), "str keys"),
        (replace(GOOD, metadata={"a": "x" * 65536}), "exceeds 65536"),
    ],
)
def test_writer_refuses_invalid_input(broken, match):
    with pytest.raises(ValueError, match=match):
        write_container(broken)


def test_writer_refuses_embeddings_for_nerv():
    with pytest.raises(ValueError, match="a nerv stream has no embeddings"):
        write_container(replace(nerv_container(), embeddings=raw_record((5, 4, 1, 1), 6)))


# --- property-based: nothing but the two refusals may escape ---------------------------------------


def check_reads_or_refuses(data: bytes) -> None:
    """Only the two refusals may escape, and whatever reads must write and read back the same."""
    try:
        got = read_container(data)
    except REFUSALS:
        return
    assert_same_container(read_container(write_container(got)), got)


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["set", "insert", "delete"]),
        st.integers(0, 5000),
        st.one_of(
            st.binary(min_size=1, max_size=8),
            st.sampled_from([b"\x00", b"\xff", b"\x80", b"\x7f", b"\xff\xff", b"\xff\xff\xff\xff", bytes(4),
                             b"\x00\x00\x00\x10", NAN32, NAN64, struct.pack("<d", math.inf)]),
        ),
    ),
    min_size=1,
    max_size=4,
)


def apply_edits(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, blob in edits:
        pos %= len(buf) + 1
        if op == "set":
            buf[pos : pos + len(blob)] = blob
        elif op == "insert":
            buf[pos:pos] = blob
        else:
            del buf[pos : pos + len(blob)]
    return bytes(buf)


GOLDEN_DATA = write_container(golden_container())
NERV_DATA = write_container(nerv_container())


@FUZZ
@given(st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: SIGNATURE + b"\x01\x00" + b)))
def test_random_bytes_are_refused(data):
    check_reads_or_refuses(data)


@FUZZ
@given(st.sampled_from([GOLDEN_DATA, NERV_DATA]), EDITS, st.booleans())
def test_mutated_files_are_refused_or_read(base, edits, fix_crcs):
    data = apply_edits(base, edits)
    check_reads_or_refuses(refresh_crcs(data) if fix_crcs else data)


@FUZZ
@given(st.sampled_from([GOLDEN_DATA, NERV_DATA]), st.integers(0, 5), EDITS, st.integers(0, 9))
def test_payload_mutations_with_valid_crcs_are_refused_or_read(base, index, edits, minor):
    chunks = split_file(base)
    kind, payload = chunks[index % len(chunks)]
    chunks[index % len(chunks)] = (kind, apply_edits(payload, edits))
    check_reads_or_refuses(join_file(chunks, version=(1, minor)))


def write_golden() -> None:
    GOLDEN.write_bytes(write_container(golden_container()))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-golden"]:
        write_golden()
