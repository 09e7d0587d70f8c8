"""Entropy coding of integer symbols: constriction's ANS with a categorical or a discrete Laplace
model, and plain bit packing.

The categorical model is the symbols' own counts, which travel in the file; the Laplace model is
four integers (range, centre, decay) from which both sides compute the same integer weights.
Either way encoder and decoder build the same float64 probabilities from the same integers, so
they agree bit for bit. Tiny
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

from cnervcodec.format.records import LaplaceModel

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


def _model(weights: np.ndarray) -> constriction.stream.model.Categorical:
    """The ANS model both sides build from the same integers (histogram counts or Laplace weights)."""
    weights = np.asarray(weights)
    if weights.ndim != 1 or weights.size == 0 or weights.sum() == 0:
        raise ValueError("counts must be a non-empty 1-D array with a positive sum")
    probabilities = weights.astype(np.float64) / float(weights.sum())
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def _ans_encode(flat: np.ndarray, first_symbol: int, weights: np.ndarray) -> np.ndarray:
    """ANS words of ``flat`` (checked symbols) under the model ``weights`` starting at ``first_symbol``."""
    shifted = flat - np.int32(first_symbol)
    if shifted.size and (shifted.min() < 0 or shifted.max() >= len(weights)):
        raise ValueError("a symbol lies outside the model's range")
    if shifted.size and np.any(np.asarray(weights)[shifted] == 0):
        raise ValueError("a symbol has a zero count in the model")
    if len(weights) == 1:  # one symbol value (a fully pruned tensor): nothing to code, and constriction
        return np.zeros(0, np.uint32)  # refuses a one-entry categorical ("not normalizable")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(shifted.astype(np.int32, copy=False), _model(weights))
    return coder.get_compressed().astype(np.uint32, copy=False)


def _ans_decode(words: np.ndarray, n_symbols: int, first_symbol: int, weights: np.ndarray) -> np.ndarray:
    if len(weights) == 1:  # every symbol is first_symbol; the stream holds no words
        return np.full(n_symbols, first_symbol, np.int32)
    coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    shifted = coder.decode(_model(weights), n_symbols)
    return shifted.astype(np.int32, copy=False) + np.int32(first_symbol)


def encode_categorical(symbols: np.ndarray, bits: int, first_symbol: int, counts: np.ndarray) -> np.ndarray:
    """ANS-code ``symbols`` with the categorical model ``counts`` (starting at ``first_symbol``): uint32 words."""
    return _ans_encode(_check_symbols(symbols, bits), first_symbol, counts)


def decode_categorical(words: np.ndarray, n_symbols: int, first_symbol: int, counts: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_categorical``: (n_symbols,) int32. Damaged words give wrong symbols, not errors."""
    if n_symbols < 0 or int(np.asarray(counts).sum()) != n_symbols:
        raise ValueError("the model's counts must sum to the number of symbols")
    return _ans_decode(words, n_symbols, first_symbol, counts)


LAPLACE_ONE = 1 << 16  # the weight at distance 0, and the decay's fixed-point unit
# A Laplace model is four small integers instead of a histogram, so a tensor whose symbols spread
# over many values pays 8 bytes of model, not one varint per value; its weights are integer
# arithmetic, the same on every machine.


def laplace_weights(model: LaplaceModel) -> np.ndarray:
    """(size,) uint32 weights: ``w(0) = 2**16``, ``w(k) = max(1, (w(k-1) * decay) >> 16)``, symbol
    ``first + i`` weighted ``w(|first + i - center|)``. Never zero, so every symbol is codable."""
    reach = max(model.center - model.first, model.first + model.size - 1 - model.center)
    by_distance = np.empty(reach + 1, np.int64)
    weight = LAPLACE_ONE
    for k in range(reach + 1):  # a recursion in integers: exact and machine-independent
        by_distance[k] = weight
        weight = max(1, (weight * model.decay) >> 16)
    distances = np.abs(np.arange(model.first, model.first + model.size) - model.center)
    return by_distance[distances].astype(np.uint32)


def laplace_cost_bits(model: LaplaceModel, counts: np.ndarray) -> float:
    """Ideal bits of symbols with histogram ``counts`` (starting at ``model.first``) under ``model``."""
    weights = laplace_weights(model).astype(np.float64)
    counts = np.asarray(counts, np.float64)
    used = counts > 0
    return float(-(counts[used] * np.log2(weights[used] / weights.sum())).sum())


def fit_laplace(first: int, counts: np.ndarray) -> LaplaceModel:
    """The Laplace model of the histogram ``counts`` (symbols ``first ..``): centred on the most
    frequent symbol, the decay that minimises the ideal cost, searched on a float approximation of
    the weights (vectorised over candidates; the file's weights are then the exact integers)."""
    counts = np.asarray(counts, np.float64)
    center = int(np.argmax(counts))
    distances = np.abs(np.arange(counts.size) - center)
    per_distance = np.bincount(distances, weights=counts)  # symbols at each distance
    multiplicity = np.bincount(distances).astype(np.float64)  # alphabet entries at each distance (1 or 2)
    k = np.arange(per_distance.size, dtype=np.float64)
    low, high = 1.0, LAPLACE_ONE - 1.0
    for _ in range(3):  # three rounds of 64 candidates, each zooming into the best interval
        decays = np.linspace(low, high, 64)
        log_w = np.maximum(k[None, :] * np.log2(decays[:, None] / LAPLACE_ONE), -16.0)  # floor: weight 1
        log_z = np.log2((multiplicity[None, :] * np.exp2(log_w)).sum(axis=1))
        cost = (per_distance[None, :] * (log_z[:, None] - log_w)).sum(axis=1)
        best = int(np.argmin(cost))
        spacing = decays[1] - decays[0]
        low, high = max(1.0, decays[best] - spacing), min(LAPLACE_ONE - 1.0, decays[best] + spacing)
    return LaplaceModel(first, counts.size, first + center, int(round(decays[best])))


def encode_laplace(symbols: np.ndarray, bits: int, model: LaplaceModel) -> np.ndarray:
    """ANS-code ``symbols`` under the Laplace ``model``: uint32 words (none when ``model.size`` is 1)."""
    return _ans_encode(_check_symbols(symbols, bits), model.first, laplace_weights(model))


def decode_laplace(words: np.ndarray, n_symbols: int, model: LaplaceModel) -> np.ndarray:
    """Inverse of ``encode_laplace``: (n_symbols,) int32. Damaged words give wrong symbols, not errors."""
    if n_symbols < 0:
        raise ValueError("negative symbol count")
    return _ans_decode(words, n_symbols, model.first, laplace_weights(model))


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
