"""Tensors <-> tensor records: quantization (eq. 4) plus entropy coding, and back.

The bridge between the numbers (``quantize``, ``format.entropy``) and the file's records
(``format.records``), with the decoder's tensors in bitstream order (``model.bitstream_tensors``).
``codec`` and ``trained_model`` build on it; it knows nothing of files or frames.
"""

from __future__ import annotations

import numpy as np
import torch

from cnervcodec.config import CompressionConfig, ModelConfig
from cnervcodec.errors import CorruptContainerError
from cnervcodec.format import entropy
from cnervcodec.format.network_fields import MAX_DECODER_VALUES
from cnervcodec.format.records import (
    BASE_CODERS,
    CODER_CATEGORICAL,
    CODER_LAPLACE,
    CODER_RAW,
    STREAM_CODERS,
    SymbolStream,
    TensorRecord,
)
from cnervcodec.format.tensor_records import symbol_stream_nbytes
from cnervcodec.model import Decoder, bitstream_tensors
from cnervcodec.quantize import dequantize, quantize, quantize_tensor, step_params


def code_symbols(symbols: np.ndarray, bits: int, coders: tuple[int, ...] = BASE_CODERS) -> SymbolStream:
    """Entropy-code symbols with the smallest of plain packed bits, a categorical ANS stream (the
    histogram in the file) and, where ``coders`` allow it, a Laplace ANS stream (8 bytes of model:
    it wins on small tensors whose symbols spread over many values)."""
    flat = symbols.reshape(-1)
    raw = SymbolStream(coder=CODER_RAW, n_symbols=flat.size, payload=entropy.pack_bits(flat, bits))
    first, counts = entropy.symbol_counts(flat, bits)
    words = entropy.encode_categorical(flat, bits, first, counts)
    candidates = [raw, SymbolStream(
        coder=CODER_CATEGORICAL,
        n_symbols=flat.size,
        payload=words.astype("<u4").tobytes(),
        first_symbol=first,
        counts=counts,
    )]
    if CODER_LAPLACE in coders:
        model = entropy.fit_laplace(first, counts)
        words = entropy.encode_laplace(flat, bits, model)
        candidates.append(SymbolStream(coder=CODER_LAPLACE, n_symbols=flat.size,
                                       payload=words.astype("<u4").tobytes(), laplace=model))
    return min(candidates, key=symbol_stream_nbytes)


def decode_symbols(stream: SymbolStream, bits: int) -> np.ndarray:
    """Inverse of ``code_symbols``: (n_symbols,) int32."""
    if stream.coder == CODER_RAW:
        return entropy.unpack_bits(stream.payload, bits, stream.n_symbols)
    words = np.frombuffer(stream.payload, dtype="<u4")
    if stream.coder == CODER_LAPLACE:
        return entropy.decode_laplace(words, stream.n_symbols, stream.laplace)
    return entropy.decode_categorical(words, stream.n_symbols, stream.first_symbol, stream.counts)


def quantized_symbols(values: np.ndarray, bits: int, axis: int, step: float | None = None):
    """(symbols, parameters): eq. 4 at ``bits`` (min-max, per ``axis``), or the grid of a learned ``step``."""
    if step is None:
        return quantize_tensor(values, bits, axis)
    params = step_params(values, step)
    return quantize(values, params), params


def compress_tensor(values: np.ndarray, bits: int, axis: int, coders: tuple[int, ...] = BASE_CODERS,
                    step: float | None = None) -> TensorRecord:
    """Quantize (eq. 4, or on a learned ``step``'s grid) and entropy-code one float tensor."""
    symbols, params = quantized_symbols(values, bits, axis, step)
    return TensorRecord(shape=tuple(values.shape), quant=params, stream=code_symbols(symbols, params.bits, coders))


def restore_tensor(record: TensorRecord) -> np.ndarray:
    """The dequantized float32 tensor a record holds. The coder's own refusal of damaged data (which
    the reader's checks should have caught first) is corruption, like any other."""
    try:
        symbols = decode_symbols(record.stream, record.quant.bits)
    except ValueError as error:
        raise CorruptContainerError(f"corrupt .cnrv: a tensor's coded symbols do not decode ({error})") from None
    return dequantize(symbols, record.quant, record.shape)


def temporal_residuals(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Each frame's symbols (axis 0) as centred differences from the previous frame's, modulo
    ``2**bits``: ``(s[t] - s[t-1] + 2**(bits-1)) mod 2**bits`` with ``s[-1] = 2**(bits-1)``, so frame 0
    passes unchanged and every residual is a symbol of the same alphabet. Neighbouring frames'
    content embeddings are close, so the residuals pile up around the middle symbol: on carphone
    at 6 bits they take 2.3 bits a value against 5.0 for the symbols themselves."""
    half, values = 1 << (bits - 1), symbols.astype(np.int64)
    previous = np.concatenate([np.full_like(values[:1], half), values[:-1]])
    return ((values - previous + half) % (1 << bits)).astype(np.int32)


def from_temporal_residuals(residuals: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of ``temporal_residuals``: a running sum along axis 0, modulo ``2**bits``, exact in int64."""
    half = 1 << (bits - 1)
    return ((half + np.cumsum(residuals.astype(np.int64) - half, axis=0)) % (1 << bits)).astype(np.int32)


def compress_embeddings(values: np.ndarray, bits: int, axis: int, coders: tuple[int, ...] = STREAM_CODERS,
                        step: float | None = None) -> tuple[TensorRecord, bool]:
    """Quantize (eq. 4, or on a learned ``step``'s grid) the (T, d, n_h, n_w) embeddings and code the
    smaller of their symbols and their temporal residuals; True when the residuals won (the stream's
    EMBT chunk, not EMBD)."""
    symbols, params = quantized_symbols(values, bits, axis, step)
    bits = params.bits
    plain = code_symbols(symbols, bits, coders)
    residual = code_symbols(temporal_residuals(symbols, bits), bits, coders)
    temporal = symbol_stream_nbytes(residual) < symbol_stream_nbytes(plain)
    return TensorRecord(shape=tuple(values.shape), quant=params, stream=residual if temporal else plain), temporal


def restore_embeddings(record: TensorRecord, temporal: bool) -> np.ndarray:
    """The dequantized embeddings of an EMBD (``temporal`` False) or EMBT record."""
    if not temporal:
        return restore_tensor(record)
    try:
        residuals = decode_symbols(record.stream, record.quant.bits)
    except ValueError as error:
        raise CorruptContainerError(f"corrupt .cnrv: the embeddings' coded symbols do not decode ({error})") from None
    symbols = from_temporal_residuals(residuals.reshape(record.shape), record.quant.bits)
    return dequantize(symbols, record.quant, record.shape)


def compress_decoder(decoder: Decoder, compression: CompressionConfig,
                     coders: tuple[int, ...] = BASE_CODERS,
                     steps: dict[str, float] | None = None) -> tuple[TensorRecord, ...]:
    """Every decoder tensor quantized and coded, in bitstream order: a stream's DECO (``coders``
    STREAM_CODERS) and a model file's (the base coders, which model format 1.0 has). ``steps``: a
    rate-aware fit's learned step per tensor name, used instead of eq. 4's ``weight_bits`` ranges."""
    return tuple(
        compress_tensor(tensor.detach().float().cpu().numpy(), compression.weight_bits, compression.weight_axis, coders,
                        step=None if steps is None else steps[name])
        for name, tensor in bitstream_tensors(decoder)
    )


def check_decoder_records(config: ModelConfig, records: tuple[TensorRecord, ...]) -> None:
    """The records must be exactly the tensors ``config``'s decoder has: count, order and shapes,
    computed by arithmetic (``ModelConfig.decoder_tensor_shapes``), so that nothing is allocated for
    a network a file describes but does not carry."""
    if config.decoder_param_count() > MAX_DECODER_VALUES:
        raise CorruptContainerError(f"corrupt .cnrv: header describes a decoder of {config.decoder_param_count():,} parameters")
    expected = config.decoder_tensor_shapes()
    if len(expected) != len(records):
        raise CorruptContainerError(
            f"corrupt .cnrv: {len(records)} decoder tensors for a network that has {len(expected)}"
        )
    for (name, shape), record in zip(expected, records):
        if shape != record.shape:
            raise CorruptContainerError(f"corrupt .cnrv: tensor {name} has shape {record.shape}, expected {shape}")


def restored_decoder(config: ModelConfig, records: tuple[TensorRecord, ...]) -> Decoder:
    """A decoder with the dequantized weights of ``records``; a count or shape that does not match
    ``config`` is corruption (the records come from a file), found before anything is allocated.

    The module is built on the meta device and takes the restored tensors as its parameters
    (``assign``): no random initialisation, and no second copy of the weights."""
    check_decoder_records(config, records)
    with torch.device("meta"):
        decoder = Decoder(config)
    state = {name: torch.from_numpy(restore_tensor(record)) for (name, _), record in zip(bitstream_tensors(decoder), records)}
    decoder.load_state_dict(state, assign=True)
    decoder.eval()
    return decoder


def estimated_payload_bits(record: TensorRecord) -> float:
    """The bits the rate term of rate-aware training (``rate_training.geometric_bits``) gives a record's
    coded symbols, measured from the most frequent one: what the loss estimates, set against the
    record's real payload (``rate_estimate``)."""
    from cnervcodec.rate_training import geometric_bits  # torch-side: imported only when estimating

    symbols = decode_symbols(record.stream, record.quant.bits).astype(np.int64)
    mode = np.bincount(symbols - symbols.min()).argmax() + symbols.min()
    return float(geometric_bits(torch.from_numpy((symbols - mode).astype(np.float64))))
