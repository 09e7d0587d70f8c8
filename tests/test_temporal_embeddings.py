"""EMBT (bitstream_spec.md section 8): embeddings coded as temporal residuals of their symbols."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import moving_scene, split_file
from test_container import golden_container, join_file, refused

from cnervcodec import codec
from cnervcodec.config import CompressionConfig
from cnervcodec.format.stream import read_container, write_container
from cnervcodec.format.tensor_records import record_nbytes
from cnervcodec.quantize import quantize_tensor
from cnervcodec.tensor_coding import (
    code_symbols,
    compress_embeddings,
    decode_symbols,
    compress_tensor,
    from_temporal_residuals,
    restore_embeddings,
    restore_tensor,
    temporal_residuals,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("bits", [1, 2, 5, 8, 16])
def test_residuals_invert_exactly_and_frame_zero_passes_unchanged(bits):
    rng = np.random.default_rng(bits)
    symbols = rng.integers(0, 1 << bits, size=(9, 3, 2, 2)).astype(np.int32)
    residuals = temporal_residuals(symbols, bits)
    assert residuals.dtype == np.int32 and residuals.min() >= 0 and residuals.max() < 1 << bits
    np.testing.assert_array_equal(residuals[0], symbols[0])
    np.testing.assert_array_equal(from_temporal_residuals(residuals, bits), symbols)


def test_residuals_follow_the_spec_formula():
    symbols = np.array([[5], [7], [0], [63]], np.int32)  # 6 bits: h = 32, wrap-around on 7 -> 0 -> 63
    residuals = temporal_residuals(symbols, 6)
    assert residuals.ravel().tolist() == [5, 34, (0 - 7 + 32) % 64, (63 - 0 + 32) % 64]
    np.testing.assert_array_equal(from_temporal_residuals(residuals, 6), symbols)


def slow_embeddings(n_frames=40, seed=0) -> np.ndarray:
    """Embeddings that drift slowly from frame to frame, as a video's content embeddings do."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=(1, 6, 2, 2))
    return (start + np.cumsum(0.02 * rng.normal(size=(n_frames, 6, 2, 2)), axis=0)).astype(np.float32)


@pytest.mark.parametrize("axis", [-1, 1])
def test_slow_embeddings_code_as_residuals_smaller_and_decode_the_same(axis):
    values = slow_embeddings()
    record, temporal = compress_embeddings(values, 6, axis)
    plain = compress_tensor(values, 6, axis)
    assert temporal and record_nbytes(record) < 0.7 * record_nbytes(plain)
    np.testing.assert_array_equal(restore_embeddings(record, True), restore_tensor(plain))
    np.testing.assert_array_equal(record.quant.scales, plain.quant.scales)


def test_unrelated_frames_keep_the_plain_symbols():
    values = np.random.default_rng(1).normal(size=(40, 6, 2, 2)).astype(np.float32)  # no temporal structure
    record, temporal = compress_embeddings(values, 6, -1)
    assert not temporal
    symbols, _ = quantize_tensor(values, 6, -1)
    np.testing.assert_array_equal(restore_embeddings(record, False), restore_tensor(compress_tensor(values, 6, -1)))
    assert record.stream.n_symbols == symbols.size


def test_embt_stream_round_trips_as_version_1_2_and_refuses_a_second_embeddings_chunk():
    golden = golden_container()
    values = slow_embeddings(n_frames=golden.header.n_frames)[:, :4, :1, :1].copy()
    record, _ = compress_embeddings(values, 6, -1)
    container = replace(golden, embeddings=record, embeddings_temporal=True)
    data = write_container(container)
    got = read_container(data)
    assert got.version == (1, 2) and got.embeddings_temporal
    assert [c.kind for c in got.chunks][:3] == ["HEAD", "DECO", "EMBT"]
    np.testing.assert_array_equal(restore_embeddings(got.embeddings, True), restore_embeddings(record, True))
    assert read_container(write_container(replace(container, embeddings_temporal=False))).version == (1, 0)
    chunks = split_file(data)
    embt = dict(chunks)["EMBT"]
    both = chunks[:3] + [("EMBD", embt)] + chunks[3:]
    refused(join_file(both, version=(1, 2)), match="both EMBD and EMBT chunks")


def test_an_older_reader_would_be_told_to_upgrade():
    """What a 1.1 reader does with EMBT, by the rules it implements: an unknown critical chunk in a
    file of a newer minor is UnsupportedVersionError. This reader knows EMBT, so check the rule via
    a critical chunk it does not know, written with a minor above its own."""
    from cnervcodec.errors import UnsupportedVersionError

    chunks = split_file(write_container(golden_container()))
    refused(join_file(chunks[:2] + [("EMBX", b"")] + chunks[2:], version=(1, 4)), error=UnsupportedVersionError,
            match="upgrade cnervcodec")


def test_an_encoded_clip_writes_embt_and_decodes_like_the_same_symbols_in_embd():
    from test_codec import settings_for

    frames = moving_scene(n_frames=12)
    data = codec.encode(frames, Fraction(25), settings_for(frames, epochs=8), CPU).data
    container = read_container(data)
    assert container.embeddings_temporal and container.version[1] >= 2  # 1.3 when Laplace records won too
    record = container.embeddings
    residuals = decode_symbols(record.stream, record.quant.bits).reshape(record.shape)
    plain = replace(record, stream=code_symbols(from_temporal_residuals(residuals, record.quant.bits), record.quant.bits))
    as_embd = write_container(replace(container, embeddings=plain, embeddings_temporal=False))
    assert not read_container(as_embd).embeddings_temporal and len(as_embd) > len(data)
    assert torch.equal(codec.decode(as_embd), codec.decode(data))


def test_compression_config_embed_axis_is_honoured_by_the_residual_record():
    values = slow_embeddings()
    record, _ = compress_embeddings(values, 5, CompressionConfig(embed_axis=1).embed_axis)
    assert record.quant.axis == 1 and record.quant.offsets.shape == (values.shape[1],)
