"""Coder 2, `laplace` (bitstream_spec.md section 6), and the CODR chunk that declares it (section 7)."""

from __future__ import annotations

import random
import struct
from dataclasses import replace

import numpy as np
import pytest
from conftest import split_file
from fuzzing import decode_stream, mutate, run_case
from test_container import golden_container, join_file, refused

from cnervcodec.errors import CorruptContainerError, UnsupportedVersionError
from cnervcodec.format import entropy
from cnervcodec.format.records import (
    BASE_CODERS,
    CODER_LAPLACE,
    LaplaceModel,
    SymbolStream,
    TensorRecord,
)
from cnervcodec.format.stream import read_container, write_container
from cnervcodec.format.tensor_records import record_nbytes, symbol_stream_nbytes
from cnervcodec.tensor_coding import STREAM_CODERS, code_symbols, decode_symbols


def laplace_symbols(n: int, spread: float, bits: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = 1 << (bits - 1)
    return np.clip(np.rint(rng.laplace(0, spread, size=n)) + half, 0, (1 << bits) - 1).astype(np.int32)


def test_weights_follow_the_integer_recursion_of_the_spec():
    model = LaplaceModel(first=3, size=6, center=5, decay=32768)  # q = 1/2
    assert entropy.laplace_weights(model).tolist() == [16384, 32768, 65536, 32768, 16384, 8192]
    tiny = LaplaceModel(first=0, size=40, center=0, decay=1)  # falls to the floor of 1 at once
    weights = entropy.laplace_weights(tiny)
    assert weights[0] == 65536 and weights.min() == 1 and (weights[1:] == 1).all()
    slow = entropy.laplace_weights(LaplaceModel(0, 300, 150, 65535))
    assert (slow > 0).all() and (slow[:150] <= slow[1:151]).all() and slow[150] == 65536
    assert slow[150 - 7] == slow[150 + 7]  # symmetric about the centre


@pytest.mark.parametrize(("bits", "spread"), [(4, 0.7), (6, 3.0), (8, 12.0), (12, 200.0)])
def test_laplace_streams_round_trip_and_code_near_the_entropy(bits, spread):
    symbols = laplace_symbols(4000, spread, bits)
    first, counts = entropy.symbol_counts(symbols, bits)
    model = entropy.fit_laplace(first, counts)
    words = entropy.encode_laplace(symbols, bits, model)
    np.testing.assert_array_equal(entropy.decode_laplace(words, symbols.size, model), symbols)
    # against the true distribution's entropy: a histogram of 4,000 draws over thousands of values
    # is sparse, and its empirical entropy flatters it (it does not pay for its counts)
    k = np.abs(np.arange(-int(30 * spread) - 30, int(30 * spread) + 31))  # rint of Laplace(0, spread) draws
    true_pmf = np.where(k == 0, 1 - np.exp(-0.5 / spread),
                        0.5 * (np.exp(-(k - 0.5) / spread) - np.exp(-(k + 0.5) / spread)))
    true_pmf = true_pmf[true_pmf > 0]
    true_bytes = symbols.size * float(-(true_pmf * np.log2(true_pmf)).sum()) / 8
    assert entropy.laplace_cost_bits(model, counts) / 8 <= 1.02 * true_bytes + 2
    assert 4 * words.size <= 1.03 * true_bytes + 8


def test_one_symbol_value_needs_no_words():
    symbols = np.full(50, 9, np.int32)
    first, counts = entropy.symbol_counts(symbols, 5)
    model = entropy.fit_laplace(first, counts)
    assert model == LaplaceModel(9, 1, 9, model.decay)
    assert entropy.encode_laplace(symbols, 5, model).size == 0
    np.testing.assert_array_equal(entropy.decode_laplace(np.zeros(0, np.uint32), 50, model), symbols)


def test_a_small_spread_out_tensor_takes_the_laplace_coder_only_where_allowed():
    symbols = laplace_symbols(600, 9.0, 7, seed=3)  # a small network's weights at 7 bits
    laplace = code_symbols(symbols, 7, STREAM_CODERS)
    base = code_symbols(symbols, 7)
    assert laplace.coder == CODER_LAPLACE and base.coder in BASE_CODERS
    assert symbol_stream_nbytes(laplace) < symbol_stream_nbytes(base)
    np.testing.assert_array_equal(decode_symbols(laplace, 7), symbols)


def laplace_container():
    """The golden container with every record re-coded where the Laplace coder is smaller."""
    golden = golden_container()

    def recode(record: TensorRecord) -> TensorRecord:
        symbols = decode_symbols(record.stream, record.quant.bits)
        return replace(record, stream=code_symbols(symbols, record.quant.bits, STREAM_CODERS))

    spread = laplace_symbols(golden.decoder[2].stream.n_symbols, 40.0, 12, seed=5)
    block = replace(golden.decoder[2], stream=code_symbols(spread, 12, STREAM_CODERS))
    decoder = tuple(recode(r) for r in golden.decoder[:2]) + (block,) + tuple(recode(r) for r in golden.decoder[3:])
    return replace(golden, decoder=decoder)


def test_a_stream_with_laplace_records_declares_them_and_is_version_1_3():
    container = laplace_container()
    assert CODER_LAPLACE in {r.stream.coder for r in container.decoder}
    data = write_container(container)
    got = read_container(data)
    assert got.version == (1, 3) and [c.kind for c in got.chunks][:3] == ["HEAD", "CODR", "DECO"]
    assert dict(split_file(data))["CODR"] == bytes([1, CODER_LAPLACE])
    for mine, theirs in zip(container.decoder, got.decoder):
        np.testing.assert_array_equal(decode_symbols(theirs.stream, theirs.quant.bits),
                                      decode_symbols(mine.stream, mine.quant.bits))
        assert record_nbytes(theirs) == record_nbytes(mine)
    assert write_container(got) == data  # canonical
    assert read_container(write_container(golden_container())).version == (1, 0)  # no CODR without coder 2


def test_laplace_records_without_their_declaration_are_corrupt():
    chunks = split_file(write_container(laplace_container()))
    without = [c for c in chunks if c[0] != "CODR"]
    refused(join_file(without, version=(1, 3)), match="coder laplace, which no CODR chunk declares")


@pytest.mark.parametrize(("payload", "match"), [
    (bytes([0]), "coder count 0 is outside 1..255"),
    (bytes([2, 2, 2]), "must ascend without repeats"),
    (bytes([1, 1]), r"each >= 2"),
    (bytes([1, 2, 0]), "unexpected bytes after the last field"),
])
def test_a_bad_codr_payload_is_corrupt(payload, match):
    chunks = [(k, payload if k == "CODR" else p) for k, p in split_file(write_container(laplace_container()))]
    refused(join_file(chunks, version=(1, 3)), match=match)


def test_an_unknown_declared_coder_says_upgrade_only_in_a_newer_minor():
    chunks = [(k, bytes([2, 2, 9]) if k == "CODR" else p) for k, p in split_file(write_container(laplace_container()))]
    refused(join_file(chunks, version=(1, 4)), error=UnsupportedVersionError, match="declares coder 9.*upgrade")
    refused(join_file(chunks, version=(1, 3)), match="coder id 9 is unknown to format 1.3")


def laplace_field_offset(data: bytes) -> int:
    """Byte offset, inside the DECO payload, of the first Laplace record's model (first_symbol)."""
    container = read_container(data)
    offset = 2  # n_tensors
    for record in container.decoder:
        if record.stream.coder == CODER_LAPLACE:
            n_ranges = 1 if record.quant.axis == -1 else record.shape[record.quant.axis]
            return offset + 1 + 4 * len(record.shape) + 2 + 8 * n_ranges + 5
        offset += record_nbytes(record)
    raise AssertionError("no Laplace record")


@pytest.mark.parametrize(("field", "value", "match"), [
    (6, 0, "decay 0 outside 1..65535"),
    (4, 4095, "centre 4095 outside its symbols"),
    (2, 4095, "exceed 12 bits"),
])
def test_out_of_range_laplace_fields_are_corrupt(field, value, match):
    data = write_container(laplace_container())
    chunks = split_file(data)
    deco = bytearray(dict(chunks)["DECO"])
    struct.pack_into("<H", deco, laplace_field_offset(data) + field, value)
    refused(join_file([(k, bytes(deco) if k == "DECO" else p) for k, p in chunks], version=(1, 3)), match=match)


def test_the_writer_refuses_an_invalid_laplace_model():
    container = laplace_container()
    index = next(i for i, r in enumerate(container.decoder) if r.stream.coder == CODER_LAPLACE)
    record = container.decoder[index]
    bad = replace(record, stream=replace(record.stream, laplace=replace(record.stream.laplace, decay=0)))
    decoder = container.decoder[:index] + (bad,) + container.decoder[index + 1:]
    with pytest.raises(ValueError, match="decay 0"):
        write_container(replace(container, decoder=decoder))
    one = SymbolStream(CODER_LAPLACE, record.stream.n_symbols, b"\x01\x00\x00\x00",
                       laplace=LaplaceModel(0, 1, 0, 100))
    with pytest.raises(ValueError, match="one-symbol stream has no words"):
        write_container(replace(container, decoder=container.decoder[:index] + (replace(record, stream=one),)
                                + container.decoder[index + 1:]))


def small_model_file():
    import torch

    from cnervcodec.config import CompressionConfig, EmbeddingConfig, ModelConfig
    from cnervcodec.fit import seeded_network
    from cnervcodec.trained_model import model_file_from_network

    config = ModelConfig(height=32, width=48, embedding=EmbeddingConfig(grid=(1, 1), dim=8), widths=(16, 12, 8, 8, 8))
    network = seeded_network(config, 0)
    with torch.no_grad():
        network.encoder.raw_std.fill_(1.0)
    return model_file_from_network(network, CompressionConfig(weight_bits=6), {})


def test_model_files_keep_the_base_coders():
    from cnervcodec.format.model_file import read_model_file, write_model_file

    model = small_model_file()
    assert {r.stream.coder for r in model.decoder} <= set(BASE_CODERS)
    record = model.decoder[0]
    symbols = laplace_symbols(record.stream.n_symbols, 6.0, record.quant.bits, seed=2)
    stream = code_symbols(symbols, record.quant.bits, STREAM_CODERS)
    assert stream.coder == CODER_LAPLACE
    forced = replace(model, decoder=(replace(record, stream=stream),) + model.decoder[1:])
    with pytest.raises(ValueError, match="coder 2"):
        write_model_file(forced)
    with pytest.raises(CorruptContainerError, match=r"coder 2 \(laplace\) is not allowed"):
        read_model_file(_model_bytes_with(write_model_file(model), stream, record))


def _model_bytes_with(data: bytes, stream: SymbolStream, record: TensorRecord) -> bytes:
    """A model file whose first tensor record is re-coded with ``stream``, CRCs fixed."""
    from fuzzing import join_chunks, split_chunks

    from cnervcodec.format.tensor_records import encode_tensor

    preamble, chunks = split_chunks(data)
    for i, (kind, payload) in enumerate(chunks):
        if kind == b"DECO":
            old = encode_tensor(record)
            assert payload[2:2 + len(old)] == old
            chunks[i] = (kind, payload[:2] + encode_tensor(replace(record, stream=stream)) + payload[2 + len(old):])
    return join_chunks(preamble, chunks)


def test_structure_aware_fuzzing_of_a_laplace_stream():
    """200 CRC-fixed mutations of a 1.3 stream with Laplace records: each ends in the package's own
    error or in frames."""
    data = write_container(laplace_container())
    rng = random.Random(21)
    outcomes: dict[str, int] = {}
    for _ in range(200):
        result = run_case(mutate(data, rng), decode_stream)
        outcomes[result] = outcomes.get(result, 0) + 1
    assert set(outcomes) <= {"decoded", "refused: CorruptContainerError", "refused: UnsupportedVersionError"}
    assert outcomes.get("refused: CorruptContainerError", 0) > 50
