"""Eq. 4 quantization: error bounds, exact zeros, per-axis parameters, float32 determinism."""

import numpy as np
import pytest

from cnervcodec.format.records import AXIS_TENSOR
from cnervcodec.quantize import dequantize, quant_params, quantize, quantize_tensor


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 12])
@pytest.mark.parametrize("axis", [AXIS_TENSOR, 0, 1])
def test_error_at_most_one_step(bits, axis):
    values = np.random.default_rng(bits).normal(0, 0.1, (6, 5, 3, 3)).astype(np.float32)
    symbols, params = quantize_tensor(values, bits, axis)
    assert symbols.dtype == np.int32 and symbols.min() >= 0 and symbols.max() < 1 << bits
    restored = dequantize(symbols, params, values.shape)
    assert restored.dtype == np.float32 and restored.shape == values.shape
    bound = params.scales.max()
    # half a step inside the range; up to one step at the end moved to keep zero exact
    assert np.abs(restored - values).max() <= bound * 1.0 + 1e-7
    assert np.abs(restored - values).mean() <= bound * 0.3


def test_min_max_are_the_paper_scale():
    values = np.linspace(-1.0, 3.0, 101, dtype=np.float32)
    params = quant_params(values, 8)
    assert params.scales[0] == pytest.approx(4.0 / 255)


def test_zero_stays_exactly_zero():
    values = np.random.default_rng(0).normal(0.013, 0.05, 1000).astype(np.float32)
    values[::3] = 0.0  # pruned
    symbols, params = quantize_tensor(values, 6)
    restored = dequantize(symbols, params, values.shape)
    assert np.all(restored[::3] == 0.0)
    assert len(set(symbols[::3].tolist())) == 1


def test_per_axis_uses_one_pair_per_slice():
    values = np.stack([np.linspace(-1, 1, 10), np.linspace(-100, 100, 10)]).astype(np.float32)
    per_row, params = quantize_tensor(values, 4, axis=0)
    assert params.offsets.shape == (2,) and params.scales.shape == (2,)
    per_tensor, tensor_params = quantize_tensor(values, 4)
    err_row = np.abs(dequantize(per_row, params, values.shape) - values)[0].max()
    err_tensor = np.abs(dequantize(per_tensor, tensor_params, values.shape) - values)[0].max()
    assert err_row < err_tensor / 10


def test_vectors_fall_back_to_per_tensor():
    _, params = quantize_tensor(np.arange(5, dtype=np.float32), 8, axis=0)
    assert params.axis == AXIS_TENSOR


def test_constant_tensor():
    values = np.full((3, 3), 0.25, np.float32)
    symbols, params = quantize_tensor(values, 8)
    assert np.all(dequantize(symbols, params, values.shape) == 0.25)


def test_quantize_is_deterministic_and_idempotent():
    values = np.random.default_rng(1).normal(0, 1, (4, 7)).astype(np.float32)
    symbols, params = quantize_tensor(values, 8, axis=0)
    restored = dequantize(symbols, params, values.shape)
    np.testing.assert_array_equal(quantize(restored, params), symbols)


@pytest.mark.parametrize("values", [np.zeros(0, np.float32), np.array([1.0, np.nan], np.float32)])
def test_bad_tensors_rejected(values):
    with pytest.raises(ValueError):
        quant_params(values, 8)


def test_bad_bits_rejected():
    with pytest.raises(ValueError):
        quant_params(np.ones(3, np.float32), 0)
