"""Entropy coding of integer symbols: constriction's ANS with a categorical model, and plain bit packing.

The probability model is the symbols' own counts, which travel in the file: encoder and decoder
build the same float64 probabilities from the same integers, so they agree bit for bit. Tiny
tensors (biases) can cost more in model than they save; for them plain fixed-width bits are
offered and the caller keeps whichever is smaller. This module works on numpy arrays only and
knows nothing of the file layout or of torch.

constriction raises ``PanicException`` (a ``BaseException``) on bad parameters and decodes damaged
data silently into wrong symbols, so every argument is validated here first and the container's
CRCs guard the data.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

MAX_BITS = 16


def _check_symbols(symbols: np.ndarray, bits: int) -> np.ndarray:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
    flat = np.asarray(symbols).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"symbols must lie in [0, {1 << bits})")
    return flat.astype(np.int32, copy=False)


def symbol_counts(symbols: np.ndarray, bits: int) -> tuple[int, np.ndarray]:
    """(first_symbol, counts): the histogram over the smallest range holding every symbol."""
    flat = _check_symbols(symbols, bits)
    if flat.size == 0:
        raise ValueError("no symbols to count")
    first, last = int(flat.min()), int(flat.max())
    counts = np.bincount(flat - first, minlength=last - first + 1).astype(np.uint32)
    return first, counts


def _model(counts: np.ndarray) -> constriction.stream.model.Categorical:
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or counts.sum() == 0:
        raise ValueError("counts must be a non-empty 1-D array with a positive sum")
    probabilities = counts.astype(np.float64) / float(counts.sum())
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def encode_categorical(symbols: np.ndarray, bits: int, first_symbol: int, counts: np.ndarray) -> np.ndarray:
    """ANS-code ``symbols`` with the categorical model ``counts`` (starting at ``first_symbol``): uint32 words."""
    flat = _check_symbols(symbols, bits)
    shifted = flat - np.int32(first_symbol)
    if shifted.size and (shifted.min() < 0 or shifted.max() >= len(counts)):
        raise ValueError("a symbol lies outside the model's range")
    if shifted.size and np.any(np.asarray(counts)[shifted] == 0):
        raise ValueError("a symbol has a zero count in the model")
    if len(counts) == 1:  # one symbol value (a fully pruned tensor): nothing to code, and constriction
        return np.zeros(0, np.uint32)  # refuses a one-entry categorical ("not normalizable")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(shifted.astype(np.int32, copy=False), _model(counts))
    return coder.get_compressed().astype(np.uint32, copy=False)


def decode_categorical(words: np.ndarray, n_symbols: int, first_symbol: int, counts: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_categorical``: (n_symbols,) int32. Damaged words give wrong symbols, not errors."""
    if n_symbols < 0 or int(np.asarray(counts).sum()) != n_symbols:
        raise ValueError("the model's counts must sum to the number of symbols")
    if len(counts) == 1:  # every symbol is first_symbol; the stream holds no words
        return np.full(n_symbols, first_symbol, np.int32)
    coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    shifted = coder.decode(_model(counts), n_symbols)
    return shifted.astype(np.int32, copy=False) + np.int32(first_symbol)


def pack_bits(symbols: np.ndarray, bits: int) -> bytes:
    """Symbols as a little-endian bit string, ``bits`` each, LSB first: ceil(n * bits / 8) bytes."""
    flat = _check_symbols(symbols, bits).astype(np.uint32)
    bit_planes = (flat[:, None] >> np.arange(bits, dtype=np.uint32)) & 1  # (n, bits), LSB first
    return np.packbits(bit_planes.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_bits(payload: bytes, bits: int, n_symbols: int) -> np.ndarray:
    """Inverse of ``pack_bits``: (n_symbols,) int32."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
    if len(payload) != math.ceil(n_symbols * bits / 8):
        raise ValueError("payload length does not match the symbol count")
    bit_string = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder="little")[: n_symbols * bits]
    weights = (1 << np.arange(bits, dtype=np.int64))
    return (bit_string.reshape(n_symbols, bits).astype(np.int64) @ weights).astype(np.int32)


def entropy_bits(counts: np.ndarray) -> float:
    """Empirical entropy of the symbols a histogram describes, in bits (the ideal coded size)."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    total = counts.sum()
    return float(-(counts * np.log2(counts / total)).sum()) if total else 0.0
