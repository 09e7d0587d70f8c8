"""Eq. 4 of the paper: min-max affine quantization of a tensor to ``bits``-bit symbols, and its inverse.

``value ~= offset + symbol * scale`` with ``scale = (max - min) / (2**bits - 1)``, per tensor or
per slice along one axis (one (offset, scale) pair per output channel, say). One change to the
paper's formula: when the range holds zero, ``offset`` is moved (by less than half a step) onto
the grid ``-k * scale`` so that zero is exactly representable. Pruned weights then decode to exact
zeros and all share one symbol, which is what makes them nearly free to entropy-code.

Everything is numpy float32, computed the same way on both sides: the decoder's weights are bit
for bit the ones the encoder measured its quality with.
"""

from __future__ import annotations

import math

import numpy as np

from cnervcodec.format.records import AXIS_TENSOR, QuantParams

MAX_BITS = 16


def _slices(values: np.ndarray, axis: int) -> np.ndarray:
    """(n_ranges, -1) view: one row per (offset, scale) pair."""
    if axis == AXIS_TENSOR:
        return values.reshape(1, -1)
    return np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)


def quant_params(values: np.ndarray, bits: int, axis: int = AXIS_TENSOR) -> QuantParams:
    """The eq. 4 parameters for ``values`` (float32), with zero kept exact when in range."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
    rows = _slices(np.asarray(values, np.float32), axis).astype(np.float64)
    if rows.size == 0 or not np.isfinite(rows).all():
        raise ValueError("cannot quantize an empty or non-finite tensor")
    low, high = rows.min(axis=1), rows.max(axis=1)
    scale = ((high - low) / ((1 << bits) - 1)).astype(np.float32)
    zero_in_range = (low <= 0) & (high >= 0) & (scale > 0)
    safe_scale = np.where(scale > 0, scale, np.float32(1.0))
    # -(k * scale) in float32 is exactly what dequantize subtracts back: zero decodes to 0.0, not 1e-9.
    zero_offset = -(np.round(-low / safe_scale).astype(np.float32) * safe_scale)
    offset = np.where(zero_in_range, zero_offset, low.astype(np.float32)).astype(np.float32)
    return QuantParams(bits=bits, axis=axis, offsets=offset, scales=scale)


def quantize(values: np.ndarray, params: QuantParams) -> np.ndarray:
    """Symbols in [0, 2**bits) (int32, same shape as ``values``)."""
    values = np.asarray(values, np.float32)
    rows = _slices(values, params.axis).astype(np.float64)
    scales = params.scales.astype(np.float64)[:, None]
    offsets = params.offsets.astype(np.float64)[:, None]
    steps = np.divide(rows - offsets, scales, out=np.zeros_like(rows), where=scales > 0)
    symbols = np.clip(np.rint(steps), 0, (1 << params.bits) - 1).astype(np.int32)
    return _unslice(symbols, values.shape, params.axis)


def dequantize(symbols: np.ndarray, params: QuantParams, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values of ``shape``: ``offset + symbol * scale``, in float32 on both sides."""
    rows = _slices(np.asarray(symbols).reshape(shape), params.axis).astype(np.float32)
    values = params.offsets.astype(np.float32)[:, None] + rows * params.scales.astype(np.float32)[:, None]
    return _unslice(values, shape, params.axis)


def _unslice(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    if axis == AXIS_TENSOR:
        return rows.reshape(shape)
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved), 0, axis))


def step_params(values: np.ndarray, step: float) -> QuantParams:
    """Parameters that put ``values`` on the grid ``k * step`` (a rate-aware fit's learned step): symbols
    ``round(v / step) - k_min`` at the fewest bits that hold the span, ``offset = k_min * step`` in
    float32, so ``k = 0`` decodes to exactly 0.0 and the grid is the one the fit trained on."""
    step32 = np.float32(step)
    if not np.isfinite(step32) or step32 <= 0:
        raise ValueError(f"a quantization step must be positive and finite, got {step}")
    values = np.asarray(values, np.float32)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("cannot quantize an empty or non-finite tensor")
    k = np.rint(values.astype(np.float64) / np.float64(step32))
    k_min, k_max = float(k.min()), float(k.max())
    bits = max(1, math.ceil(math.log2(k_max - k_min + 1)))
    if bits > MAX_BITS:
        raise ValueError(f"step {step:.3g} needs {bits} bits for this tensor's range (at most {MAX_BITS})")
    offset = np.float32(k_min) * step32
    return QuantParams(bits=bits, axis=AXIS_TENSOR, offsets=np.array([offset], np.float32),
                       scales=np.array([step32], np.float32))


def quantize_tensor(values: np.ndarray, bits: int, axis: int = AXIS_TENSOR) -> tuple[np.ndarray, QuantParams]:
    """Symbols and parameters of one tensor; per-axis only where the tensor has that axis."""
    values = np.asarray(values, np.float32)
    if axis != AXIS_TENSOR and (values.ndim < 2 or axis >= values.ndim):
        axis = AXIS_TENSOR  # biases and other vectors: one pair for the whole tensor
    params = quant_params(values, bits, axis)
    return quantize(values, params), params
