"""A structure-aware fuzzer for .cnrv and .cnrvm files, shared by tests/test_fuzz.py and benchmarks/fuzz.py.

Raw byte mutations almost all die at a chunk's CRC. These mutate one chunk's payload (flip bits,
overwrite bytes, set a numeric field to an edge value, cut it, grow it), write the chunk's length
and CRC back as a writer would, then read and fully decode the file. Each case must end in one of
the package's own errors (``CnervError``) or in frames; anything else escaping is a bug.
"""

from __future__ import annotations

import random
import resource
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PREAMBLE_BYTES = 10
MUTATIONS = ("flip", "bytes", "field", "cut", "grow")
EDGE_VALUES = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


@dataclass(frozen=True)
class Case:
    data: bytes
    chunk: str  # the 4-letter type of the mutated chunk
    mutation: str


def split_chunks(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(preamble, [(type, payload), ...]) of a well-formed file."""
    pos, chunks = PREAMBLE_BYTES, []
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return data[:PREAMBLE_BYTES], chunks


def join_chunks(preamble: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Frame the chunks again with their lengths and CRCs recomputed."""
    framed = (struct.pack("<I", len(p)) + k + p + struct.pack("<I", zlib.crc32(k + p)) for k, p in chunks)
    return preamble + b"".join(framed)


def _mutate_payload(payload: bytes, mutation: str, rng: random.Random) -> bytes:
    data = bytearray(payload)
    if mutation == "flip" and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif mutation == "bytes" and data:
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif mutation == "field" and data:
        width = rng.choice((1, 2, 4))
        at = rng.randrange(max(1, len(data) - width + 1))
        value = rng.choice(EDGE_VALUES) & ((1 << (8 * width)) - 1)
        data[at : at + width] = value.to_bytes(width, "little")[: len(data) - at]
    elif mutation == "cut":
        del data[rng.randrange(len(data) + 1):]
    elif mutation == "grow" or not data:
        at = rng.randrange(len(data) + 1)
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(data)


def mutate(data: bytes, rng: random.Random) -> Case:
    """One chunk's payload changed, its length and CRC fixed: a file that passes the framing checks."""
    preamble, chunks = split_chunks(data)
    index = rng.randrange(len(chunks))
    kind, payload = chunks[index]
    mutation = rng.choice(MUTATIONS)
    chunks[index] = (kind, _mutate_payload(payload, mutation, rng))
    return Case(join_chunks(preamble, chunks), kind.decode("ascii"), mutation)


def decode_stream(data: bytes) -> int:
    """Read a .cnrv and decode every frame (batches of 8, as ``cnerv decode``); returns the frame count."""
    import torch

    from cnervcodec.codec import open_stream, render_frames

    network = open_stream(data)
    return sum(frames.shape[0] for frames in render_frames(network, torch.device("cpu")))


def decode_model(data: bytes) -> int:
    """Read a .cnrvm, build its decoder and encoder, and decode one frame through both."""
    import torch

    from cnervcodec.format.model_file import read_model_file
    from cnervcodec.model import render_latents
    from cnervcodec.tensor_coding import restored_decoder
    from cnervcodec.trained_model import embed_frames

    model_file = read_model_file(data)
    config = model_file.model
    decoder = restored_decoder(config, model_file.decoder)
    if model_file.encoder is not None:  # builds the encoder from the file's arrays
        latents = embed_frames(torch.zeros(1, 3, config.height, config.width, dtype=torch.uint8), model_file,
                               torch.device("cpu"))
    else:
        latents = torch.zeros(1, config.embedding.dim, *config.embedding.grid)
    return sum(f.shape[0] for f in render_latents(decoder, latents, config.height, config.width, torch.device("cpu")))


def run_case(case: Case, decode: Callable[[bytes], int]) -> str:
    """``"decoded"`` or ``"refused: ErrorType"``; any exception that is not the package's own escapes."""
    from cnervcodec.errors import CnervError

    try:
        decode(case.data)
    except CnervError as error:
        return f"refused: {type(error).__name__}"
    return "decoded"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_growth_mib(run: Callable[[], object]) -> float:
    """How far this process's resident memory rose above its level before ``run()``, at the peak.

    On Linux the peak (VmHWM) is reset first through /proc/self/clear_refs, so each call measures
    its own peak; elsewhere only growth of the process's lifetime peak (ru_maxrss) can be seen.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kib("VmRSS")
        run()
        return (_status_kib("VmHWM") - before) / 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
