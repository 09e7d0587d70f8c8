"""Chunk framing shared by ``.cnrv`` streams and ``.cnrvm`` models (``bitstream_spec.md`` sections 2-4, 10, 11).

A file is an 8-byte signature, a major.minor version, then length-prefixed typed chunks each with a
CRC32, ending with the ``FEND`` marker. This module writes and walks that framing; what the chunks
hold is the layouts' business (``stream``, ``model_file``). Every length read from a file is checked
against what the file still holds before anything is allocated, and every problem becomes a
``CorruptContainerError`` or ``UnsupportedVersionError``. No torch here, directly or not.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from cnervcodec.errors import CorruptContainerError, UnsupportedVersionError

CHUNK_META, CHUNK_END = "meta", "FEND"  # the chunk types both layouts share

# Limits a reader enforces (bitstream_spec.md section 13); the writer refuses what a reader would.
MAX_FILE_BYTES = 1 << 32
MAX_META_BYTES = 64 * 1024

U32_MAX = (1 << 32) - 1
PREAMBLE_BYTES = 10  # signature (8), major, minor
CHUNK_FRAMING_BYTES = 12  # length u32 + type 4 bytes + crc32 u32


@dataclass(frozen=True)
class FileFormat:
    """What tells one chunked file type from another: the ``.cnrv`` stream and the ``.cnrvm`` model
    share the framing (preamble, chunks, CRCs, bounded reads) and differ in these."""

    label: str  # the extension, as messages name the file type
    signature: bytes  # 8 bytes
    major: int
    minor: int
    text_mode_signatures: tuple[bytes, ...]  # the signature after text-mode transfers


@dataclass(frozen=True)
class ChunkInfo:
    """One entry of a file's chunk table, for ``cnerv info``."""

    kind: str  # the 4-letter type
    offset: int  # byte offset of the chunk's length field
    length: int  # payload bytes
    crc_ok: bool
    critical: bool


def encode_meta(metadata: dict[str, Any]) -> bytes:
    """The ``meta`` payload: compact, key-sorted ASCII JSON (section 10)."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def frame_chunks(fmt: FileFormat, chunks: list[tuple[str, bytes]], minor: int | None = None) -> bytes:
    """Preamble, then each (type, payload) as length, type, payload, CRC32 of type and payload."""
    framed = (struct.pack("<I", len(p)) + k.encode() + p + struct.pack("<I", zlib.crc32(k.encode() + p))
              for k, p in chunks)
    return fmt.signature + bytes((fmt.major, fmt.minor if minor is None else minor)) + b"".join(framed)


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


def read_preamble(view: memoryview, fmt: FileFormat) -> tuple[int, int]:
    """Check size, signature and major version; returns (major, minor)."""
    label = fmt.label
    if len(view) > MAX_FILE_BYTES:
        raise CorruptContainerError(f"corrupt {label}: {len(view)} bytes exceed the {MAX_FILE_BYTES}-byte limit")
    head = bytes(view[:PREAMBLE_BYTES])
    if not head:
        raise CorruptContainerError(f"not a {label} file (empty file)")
    if not head.startswith(fmt.signature) and not (len(head) < len(fmt.signature) and fmt.signature.startswith(head)):
        hint = "; was it transferred in text mode?" if head.startswith(fmt.text_mode_signatures) else ""
        raise CorruptContainerError(f"not a {label} file (wrong signature){hint}")
    if len(head) < PREAMBLE_BYTES:
        raise CorruptContainerError(f"truncated {label}: file ends inside the signature and version (10 bytes)")
    if head[8] != fmt.major:
        advice = ": upgrade cnervcodec" if head[8] > fmt.major else ""
        raise UnsupportedVersionError(f"this {label} file was written by format version {head[8]}.x; "
                                      f"this cnervcodec reads {fmt.major}.x{advice}")
    return head[8], head[9]


def walk_chunks(view: memoryview, fmt: FileFormat) -> Iterator[tuple[ChunkInfo, int]]:
    """Each chunk's ChunkInfo and payload offset, up to FEND; raises on framing errors, not on CRCs."""
    label = fmt.label
    pos, after = PREAMBLE_BYTES, "before the first chunk"
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
