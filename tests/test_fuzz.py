"""Hostile files (bitstream_spec.md section 13): what a file declares is checked before anything is
allocated for it, a decompression bomb is refused, and a structure-aware fuzzer (CRC-fixed mutations
of one chunk, then a full decode) finds only the package's own errors, with memory bounded."""

import math
import random
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzzing import Case, decode_model, decode_stream, join_chunks, mutate, peak_growth_mib, run_case, split_chunks

from cnervcodec.config import CompressionConfig, EmbeddingConfig, FitConfig, ModelConfig
from cnervcodec.errors import BadInputError, CorruptContainerError
from cnervcodec.format import network_fields, tensor_records
from cnervcodec.format.records import CODER_CATEGORICAL, QuantParams, SymbolStream, TensorRecord
from cnervcodec.format.stream import Container, StreamHeader, _encode, read_container

GOLDEN_STREAM = Path(__file__).resolve().parent / "data" / "golden_stream_v1_0.cnrv"
GROWTH_LIMIT_MIB = 50  # issue 12: a mutated 12 KB file may not make the reader grow by more


@pytest.fixture(scope="module")
def golden() -> bytes:
    data = GOLDEN_STREAM.read_bytes()
    decode_stream(data)  # warm-up: imports and the allocator's first arenas are not the file's doing
    return data


def with_head(data: bytes, edit) -> bytes:
    """``data`` with ``edit(head)`` applied to the HEAD payload (a bytearray) and its CRC recomputed."""
    preamble, chunks = split_chunks(data)
    head = bytearray(chunks[0][1])
    edit(head)
    chunks[0] = (b"HEAD", bytes(head))
    return join_chunks(preamble, chunks)


def forged_width(golden: bytes) -> bytes:
    """The issue's case: one HEAD bit turns the decoder width 12 into 2,060, the CRC recomputed."""
    widths = struct.pack("<5H", 16, 12, 8, 8, 8)
    return with_head(golden, lambda head: head.__setitem__(slice(head.index(widths) + 2, head.index(widths) + 4),
                                                           struct.pack("<H", 12 ^ 0x800)))


def test_a_forged_decoder_width_is_refused_before_anything_is_built(golden):
    """It used to build a 583 MB decoder before the shape check; now nothing is allocated for it."""
    forged = forged_width(golden)
    assert read_container(forged).header.model.widths == (16, 2060, 8, 8, 8)  # the header itself is valid
    errors = []
    growth = peak_growth_mib(lambda: errors.append(run_case(Case(forged, "HEAD", "flip"), decode_stream)))
    assert errors == ["refused: CorruptContainerError"]
    assert growth < GROWTH_LIMIT_MIB, growth
    with pytest.raises(CorruptContainerError, match=r"tensor blocks.0.conv.weight has shape \(48, 16, 3, 3\), "
                                                    r"expected \(8240, 16, 3, 3\)"):
        decode_stream(forged)


def test_every_head_bit_flip_is_refused_or_decoded_within_the_memory_bound(golden):
    preamble, chunks = split_chunks(golden)
    head = chunks[0][1]
    outcomes, worst = {}, 0.0
    for byte in range(len(head)):
        for bit in range(8):
            mutated = bytearray(head)
            mutated[byte] ^= 1 << bit
            data = join_chunks(preamble, [(b"HEAD", bytes(mutated))] + chunks[1:])
            result = []
            worst = max(worst, peak_growth_mib(lambda: result.append(run_case(Case(data, "HEAD", "flip"),
                                                                              decode_stream))))
            outcomes[result[0]] = outcomes.get(result[0], 0) + 1
    assert sum(outcomes.values()) == 8 * len(head)
    assert outcomes.get("refused: CorruptContainerError", 0) > len(head)  # most flips change the network
    assert worst < GROWTH_LIMIT_MIB, worst


def test_structure_aware_fuzzing_of_the_golden_stream(golden):
    """300 CRC-fixed mutations: each reaches the parser (not the CRC check), and ends in the
    package's own error or in frames, within the memory bound."""
    rng = random.Random(12)
    outcomes, messages, worst = {}, set(), 0.0
    for _ in range(300):
        case = mutate(golden, rng)
        result = []
        worst = max(worst, peak_growth_mib(lambda: result.append(run_case(case, decode_stream))))
        outcomes[result[0]] = outcomes.get(result[0], 0) + 1
        try:
            decode_stream(case.data) if result[0] != "decoded" else None
        except CorruptContainerError as error:
            messages.add(str(error).split(" at byte")[0].split(":")[1][:40])
    assert set(outcomes) <= {"decoded", "refused: CorruptContainerError", "refused: UnsupportedVersionError"}
    assert outcomes["decoded"] > 10 and outcomes["refused: CorruptContainerError"] > 100
    assert not any("fails its CRC" in m for m in messages)
    assert len(messages) >= 5, messages  # refused for many different reasons, deep in the parser
    assert worst < GROWTH_LIMIT_MIB, worst


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    from cnervcodec.fit import seeded_network
    from cnervcodec.format.model_file import write_model_file
    from cnervcodec.trained_model import model_file_from_network

    config = ModelConfig(height=32, width=48, embedding=EmbeddingConfig(grid=(1, 1), dim=8), widths=(16, 12, 8, 8, 8))
    network = seeded_network(config, 0)
    with torch.no_grad():
        network.encoder.raw_std.fill_(1.0)
    data = write_model_file(model_file_from_network(network, CompressionConfig(weight_bits=6), {"test": True}))
    decode_model(data)
    return data


def test_structure_aware_fuzzing_of_a_model_file(model_bytes):
    rng = random.Random(3)
    outcomes, worst = {}, 0.0
    for _ in range(150):
        case = mutate(model_bytes, rng)
        result = []
        worst = max(worst, peak_growth_mib(lambda: result.append(run_case(case, decode_model))))
        outcomes[result[0]] = outcomes.get(result[0], 0) + 1
    assert outcomes.get("decoded", 0) > 5 and outcomes.get("refused: CorruptContainerError", 0) > 50
    assert worst < GROWTH_LIMIT_MIB, worst


# ------------------------------------------------------------------------------ decompression bombs


def one_symbol(shape: tuple[int, ...]) -> TensorRecord:
    """A tensor of zeros coded as a one-symbol categorical stream: 13 bytes whatever its size."""
    n = math.prod(shape)
    return TensorRecord(shape, QuantParams(8, -1, np.zeros(1, np.float32), np.zeros(1, np.float32)),
                        SymbolStream(CODER_CATEGORICAL, n, b"", 0, np.array([n], np.uint32)))


def bomb(widths: tuple[int, ...], side_px: int) -> bytes:
    """A consistent stream (HEAD and DECO agree) whose decoder is all one-symbol tensors."""
    config = ModelConfig(height=side_px, width=side_px, embedding=EmbeddingConfig(grid=(1, 1), dim=8), widths=widths)
    records = tuple(one_symbol(shape) for _, shape in config.decoder_tensor_shapes())
    header = StreamHeader(model=config, n_frames=1, fps=Fraction(25))
    return _encode(Container(header, records, one_symbol((1, 8, 1, 1))))  # the bytes, past the writer's checks


def test_a_decompression_bomb_is_refused_while_parsing():
    data = bomb((1024, 512, 256, 128, 64), 1024)  # 80 M parameters in a few hundred bytes
    assert len(data) < 2000
    errors = []
    growth = peak_growth_mib(lambda: errors.append(run_case(Case(data, "DECO", "field"), decode_stream)))
    assert errors == ["refused: CorruptContainerError"] and growth < GROWTH_LIMIT_MIB
    with pytest.raises(CorruptContainerError, match=r"tensor values in \d[\d,]* bytes of tensor records exceed"):
        read_container(data)


def test_a_dense_but_small_network_still_decodes():
    """Within FREE_VALUES a file may be as dense as it likes: a fully pruned small network is legitimate."""
    from cnervcodec.codec import decode

    data = bomb((16, 12, 8, 8, 8), 32)
    assert decode(data).shape == (1, 3, 32, 32)


def test_the_writer_refuses_what_the_reader_would(monkeypatch):
    """codec refuses to code a network whose file would be a bomb (in practice: 1-bit weights of a
    large network), with advice; here the bound is lowered so that a small fit shows it."""
    from conftest import moving_scene

    from cnervcodec.codec import code_fit
    from cnervcodec.fit import fit

    frames = moving_scene(n_frames=2, height=32, width=48)
    model = ModelConfig(height=32, width=48, embedding=EmbeddingConfig(grid=(1, 1), dim=8), widths=(16, 12, 8, 8, 8))
    fitted = fit(frames, model, FitConfig(epochs=1), torch.device("cpu"))
    monkeypatch.setattr(tensor_records, "FREE_VALUES", 1000)
    monkeypatch.setattr(tensor_records, "MAX_VALUES_PER_BYTE", 16)
    code_fit(fitted, Fraction(25), CompressionConfig(weight_bits=8))  # about 1 value per byte: fine
    with pytest.raises(BadInputError, match="--bits 1.*use more --bits"):
        code_fit(fitted, Fraction(25), CompressionConfig(weight_bits=1))


def test_one_symbol_streams_carry_no_words():
    from cnervcodec.format.tensor_records import encode_tensor

    record = one_symbol((4, 3))
    # ndim, shape, bits, axis, ranges, coder, n_symbols, first_symbol, n_counts - 1, one varint, n_words: no words
    assert len(encode_tensor(record)) == 1 + 8 + 1 + 1 + 8 + 1 + 4 + 2 + 2 + 1 + 4
    config = ModelConfig(height=8, width=8, widths=(2, 2), strides=(2,), head_kernel=1,
                         embedding=EmbeddingConfig(grid=(1, 1), dim=1, freqs=1))
    data = _encode(Container(StreamHeader(model=config, n_frames=1, fps=Fraction(25)), (record,), one_symbol((1, 1, 1, 1))))
    assert read_container(data).embeddings.stream.payload == b""
    preamble, chunks = split_chunks(data)
    chunks = [(kind, payload[:-4] + struct.pack("<I", 1) + bytes(4) if kind == b"EMBD" else payload)
              for kind, payload in chunks]
    with pytest.raises(CorruptContainerError, match="one symbol value, so no words, but n_words is 1"):
        read_container(join_chunks(preamble, chunks))


def test_a_referring_stream_must_describe_its_models_network(model_bytes):
    """The model's hash covers its own config, not the stream's HEAD: a HEAD that describes another
    network (here another activation) would decode the model's weights wrongly, so it is refused."""
    from cnervcodec.codec import encode_with_model, open_stream
    from cnervcodec.format.model_file import read_model_file

    model = read_model_file(model_bytes)
    frames = torch.zeros(2, 3, 32, 48, dtype=torch.uint8)
    data = encode_with_model(frames, Fraction(25), model, CompressionConfig(), torch.device("cpu"), model_ref=True).data
    assert open_stream(data, model).n_frames == 2
    activation_at = 30 + 14  # HEAD (spec section 5): the network config from byte 30; arch, grid, dim, freqs, base first
    other = with_head(data, lambda head: head.__setitem__(activation_at, (head[activation_at] + 1) % 4))
    assert read_container(other).header.model.activation != model.model.activation
    with pytest.raises(CorruptContainerError, match="another network than the model"):
        open_stream(other, model)


def test_shapes_are_checked_before_the_decoder_is_built(golden, monkeypatch):
    from cnervcodec import tensor_coding

    def no_building(*args, **kwargs):
        raise AssertionError("a decoder was built for a file whose records do not fit it")

    monkeypatch.setattr(tensor_coding, "Decoder", no_building)
    with pytest.raises(CorruptContainerError):
        decode_stream(forged_width(golden))


def test_ans_words_ending_in_zero_are_refused_while_parsing(golden):
    """Found by benchmarks/fuzz.py: constriction refuses such words with a ValueError of its own at
    decode time; the reader now refuses them first (an ANS coder never ends on a zero word)."""
    from cnervcodec.format.records import CODER_CATEGORICAL

    parsed = read_container(golden)
    index = next(i for i, r in enumerate(parsed.decoder)
                 if r.stream.coder == CODER_CATEGORICAL and len(r.stream.payload) >= 4)
    payload = parsed.decoder[index].stream.payload
    position = golden.index(payload) + len(payload) - 4
    preamble, chunks = split_chunks(golden[:position] + bytes(4) + golden[position + 4:])
    with pytest.raises(CorruptContainerError, match="words end with a zero word"):
        read_container(join_chunks(preamble, chunks))


def test_the_spec_states_the_bounds_the_code_enforces():
    spec = (Path(__file__).resolve().parents[1] / "bitstream_spec.md").read_text(encoding="utf-8")
    limits = spec[spec.index("## 13. Limits"):spec.index("## 14.")]
    free, per_byte = int(math.log2(tensor_records.FREE_VALUES)), tensor_records.MAX_VALUES_PER_BYTE
    assert 2**free == tensor_records.FREE_VALUES
    assert f"max(2^{free}, {per_byte} x B)" in limits
    assert f"<= 2^{int(math.log2(network_fields.MAX_DECODER_VALUES))} (`MAX_DECODER_VALUES`)" in limits


def test_a_fuzzing_run_in_a_fresh_process_stays_within_the_memory_bound():
    """The same loop in its own interpreter, measured the portable way: ``resource``'s lifetime peak
    (ru_maxrss) after 200 mutated files against the peak after decoding the unmutated one."""
    import subprocess
    import sys

    script = (
        "import random, resource, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from fuzzing import decode_stream, mutate, run_case\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "decode_stream(data)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "rng = random.Random(5)\n"
        "outcomes = [run_case(mutate(data, rng), decode_stream) for _ in range(200)]\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) / 1024, outcomes.count('decoded'))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(GOLDEN_STREAM), str(Path(__file__).resolve().parent)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    growth_mib, decoded = run.stdout.split()
    assert float(growth_mib) < GROWTH_LIMIT_MIB and 0 < int(decoded) < 200


def test_record_sizes_are_counted_as_the_writer_writes_them(golden):
    """The writer's density check counts record bytes without writing them; they must be the bytes
    a reader counts (the DECO payload is its u16 tensor count plus the records)."""
    from cnervcodec.format.tensor_records import encode_decoder, encode_tensor, record_nbytes

    parsed = read_container(golden)
    for record in parsed.decoder + (parsed.embeddings,):
        assert record_nbytes(record) == len(encode_tensor(record))
    assert 2 + sum(map(record_nbytes, parsed.decoder)) == len(encode_decoder(parsed.decoder))
