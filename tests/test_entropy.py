"""Entropy coding: exact round trips, size close to the empirical entropy, strict argument checks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnervcodec.format import entropy


def laplace_symbols(n, bits, spread, seed=0):
    rng = np.random.default_rng(seed)
    centre = (1 << bits) // 2
    return np.clip(np.rint(rng.laplace(centre, spread, n)), 0, (1 << bits) - 1).astype(np.int32)


@pytest.mark.parametrize("bits", [1, 4, 8, 12])
def test_categorical_round_trip(bits):
    symbols = laplace_symbols(5000, bits, spread=max(1, (1 << bits) / 16))
    first, counts = entropy.symbol_counts(symbols, bits)
    words = entropy.encode_categorical(symbols, bits, first, counts)
    assert words.dtype == np.uint32
    np.testing.assert_array_equal(entropy.decode_categorical(words, symbols.size, first, counts), symbols)


def test_categorical_size_within_one_percent_of_entropy():
    symbols = laplace_symbols(200_000, 8, spread=6)
    first, counts = entropy.symbol_counts(symbols, 8)
    coded_bits = 32 * entropy.encode_categorical(symbols, 8, first, counts).size
    ideal = entropy.entropy_bits(counts)
    assert ideal <= coded_bits <= 1.01 * ideal + 64


def test_pruned_zeros_cost_almost_nothing():
    symbols = laplace_symbols(100_000, 8, spread=6)
    symbols[: 90_000] = 128  # 90 % of weights pruned to the zero symbol
    first, counts = entropy.symbol_counts(symbols, 8)
    coded_bits = 32 * entropy.encode_categorical(symbols, 8, first, counts).size
    dense_first, dense_counts = entropy.symbol_counts(symbols[90_000:], 8)
    dense_bits = entropy.entropy_bits(dense_counts)
    # 90 k zeros add well under 0.6 bits each (their share is 0.9: -log2 0.9 = 0.15 bits)
    assert coded_bits < dense_bits + 0.6 * 90_000


@given(st.lists(st.integers(0, 1023), min_size=1, max_size=300), st.integers(10, 16))
@settings(max_examples=60, deadline=None)
def test_pack_bits_round_trip(values, bits):
    symbols = np.array(values, np.int32)
    payload = entropy.pack_bits(symbols, bits)
    assert len(payload) == math.ceil(len(values) * bits / 8)
    np.testing.assert_array_equal(entropy.unpack_bits(payload, bits, len(values)), symbols)


def test_pack_bits_layout_is_lsb_first():
    assert entropy.pack_bits(np.array([1, 2, 3], np.int32), 2) == bytes([0b00111001])


@pytest.mark.parametrize("call", [
    lambda: entropy.symbol_counts(np.array([4], np.int32), 2),  # symbol >= 2**bits
    lambda: entropy.symbol_counts(np.array([-1], np.int32), 8),
    lambda: entropy.pack_bits(np.array([1], np.int32), 0),
    lambda: entropy.pack_bits(np.array([1], np.int32), 17),
    lambda: entropy.encode_categorical(np.array([3], np.int32), 8, 0, np.array([1, 1], np.uint32)),
    lambda: entropy.encode_categorical(np.array([1], np.int32), 8, 0, np.array([1, 0], np.uint32)),
    lambda: entropy.encode_categorical(np.array([0], np.int32), 8, 0, np.array([0, 0], np.uint32)),
    lambda: entropy.decode_categorical(np.zeros(1, np.uint32), 5, 0, np.array([1, 1], np.uint32)),
    lambda: entropy.unpack_bits(b"\x00", 8, 2),
])
def test_bad_arguments_raise_value_error_not_panic(call):
    with pytest.raises(ValueError):
        call()


def test_entropy_bits_of_uniform_histogram():
    assert entropy.entropy_bits(np.array([5, 5, 5, 5])) == pytest.approx(40.0)


def test_one_symbol_value_codes_to_no_words_and_back():
    """A fully pruned tensor: constriction refuses a one-entry categorical, so the coder stores no words."""
    from cnervcodec.format import entropy

    symbols = np.full(1000, 37, np.int32)
    first, counts = entropy.symbol_counts(symbols, 8)
    assert (first, counts.tolist()) == (37, [1000])
    words = entropy.encode_categorical(symbols, 8, first, counts)
    assert words.size == 0
    np.testing.assert_array_equal(entropy.decode_categorical(words, 1000, first, counts), symbols)
