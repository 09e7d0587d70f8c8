"""The codec end to end in memory: encode -> container bytes -> decode gives exactly the reported frames."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from cnervcodec.codec import EncodeSettings, decoding_network, encode, render_frames
from cnervcodec.tensor_coding import code_symbols, compress_tensor, decode_symbols, restore_tensor
from cnervcodec.config import CompressionConfig, FitConfig, build_model_config
from cnervcodec.format.records import CODER_CATEGORICAL, CODER_RAW
from cnervcodec.format.stream import read_container, write_container
from cnervcodec.errors import CorruptContainerError
from cnervcodec.metrics import psnr_rgb_db
from cnervcodec.quantize import dequantize, quantize_tensor

CPU = torch.device("cpu")


def settings_for(frames, epochs=25, **compression):
    model = build_model_config("cnerv", "S", frames.shape[2], frames.shape[3])
    return EncodeSettings(model=model, fit=FitConfig(epochs=epochs, batch=2),
                          compression=CompressionConfig(prune_epochs=2, **compression))


@pytest.fixture(scope="module")
def encoded():
    from conftest import moving_scene

    frames = moving_scene(n_frames=6)
    return frames, encode(frames, Fraction(30000, 1001), settings_for(frames), CPU)


def test_small_tensors_use_raw_bits_and_large_ones_categorical():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, 8).astype(np.int32)
    large = np.clip(np.rint(rng.laplace(128, 4, 20000)), 0, 255).astype(np.int32)
    assert code_symbols(small, 8).coder == CODER_RAW
    assert code_symbols(large, 8).coder == CODER_CATEGORICAL
    for symbols in (small, large):
        np.testing.assert_array_equal(decode_symbols(code_symbols(symbols, 8), 8), symbols)


def test_tensor_record_round_trip_is_the_dequantized_tensor():
    values = np.random.default_rng(1).normal(0, 0.2, (8, 4, 3, 3)).astype(np.float32)
    record = compress_tensor(values, 6, 0)
    symbols, params = quantize_tensor(values, 6, 0)
    np.testing.assert_array_equal(restore_tensor(record), dequantize(symbols, params, values.shape))


def test_decoding_the_bytes_gives_the_reported_frames(encoded):
    frames, result = encoded
    data = write_container(result.container)
    network = decoding_network(read_container(data))
    decoded = torch.cat(list(render_frames(network, CPU, batch=4)))
    assert decoded.dtype == torch.uint8 and decoded.shape == frames.shape
    assert torch.equal(decoded, result.decoded)


def test_header_keeps_fps_and_geometry(encoded):
    frames, result = encoded
    header = read_container(write_container(result.container)).header
    assert header.fps == Fraction(30000, 1001)
    assert (header.n_frames, header.model.height, header.model.width) == (6, frames.shape[2], frames.shape[3])


def test_quantized_model_beats_the_mean_frame(encoded):
    frames, result = encoded
    mean_frame = frames.float().mean(dim=0, keepdim=True).round().to(torch.uint8).expand_as(frames)
    assert psnr_rgb_db(frames, result.decoded).mean() > psnr_rgb_db(frames, mean_frame).mean() + 3


def test_fewer_bits_make_a_smaller_file(encoded):
    from conftest import moving_scene

    frames = moving_scene(n_frames=6)
    small = encode(frames, Fraction(25), settings_for(frames, epochs=2, weight_bits=4, embed_bits=4), CPU)
    assert len(write_container(small.container)) < len(write_container(encoded[1].container))


def test_pruning_zeros_survive_the_bitstream():
    from conftest import moving_scene

    frames = moving_scene(n_frames=4)
    result = encode(frames, Fraction(25), settings_for(frames, epochs=2, prune=0.5), CPU)
    assert result.sparsity >= 0.5 - 1e-3
    network = decoding_network(read_container(write_container(result.container)))
    weights = [p for p in network.decoder.parameters() if p.dim() >= 2]
    zeros = sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights)
    assert zeros >= 0.5 - 1e-3
    assert read_container(write_container(result.container)).header.prune_fraction == pytest.approx(zeros, abs=1e-3)


def test_shape_mismatch_is_corruption(encoded):
    _, result = encoded
    container = result.container
    swapped = type(container)(header=container.header, decoder=container.decoder[::-1],
                              embeddings=container.embeddings)
    with pytest.raises(CorruptContainerError):
        decoding_network(swapped)


def test_one_fit_serves_several_settings():
    from conftest import moving_scene

    from cnervcodec.codec import compress_fit
    from cnervcodec.fit import fit

    frames = moving_scene(n_frames=4)
    settings = settings_for(frames, epochs=2)
    fitted = fit(frames, settings.model, settings.fit, CPU)
    before = {k: v.clone() for k, v in fitted.network.state_dict().items()}
    pruned = compress_fit(frames, fitted, Fraction(25), CompressionConfig(prune=0.3, prune_epochs=1), CPU)
    assert pruned.sparsity >= 0.3 - 1e-3
    assert all(torch.equal(before[k], v) for k, v in fitted.network.state_dict().items())
    six = compress_fit(frames, fitted, Fraction(25), CompressionConfig(weight_bits=6), CPU)
    eight = compress_fit(frames, fitted, Fraction(25), CompressionConfig(weight_bits=8), CPU)
    assert len(write_container(six.container)) < len(write_container(eight.container))


# ---------------------------------------------------------------------------------------------
# Format stability: a real encoded stream, committed, must keep decoding to the same frames.

GOLDEN_STREAM = Path(__file__).resolve().parent / "data" / "golden_stream_v1_0.cnrv"
GOLDEN_FRAMES = GOLDEN_STREAM.with_suffix(".npy")  # (T, 3, H, W) uint8 the decoder gave when written


def write_golden_stream() -> None:
    """Encode a tiny clip with a tiny network (a few KB) and store it with its decoded frames."""
    from conftest import moving_scene

    from cnervcodec.config import EmbeddingConfig, ModelConfig

    frames = moving_scene(n_frames=4, height=32, width=48)
    model = ModelConfig(height=32, width=48, embedding=EmbeddingConfig(grid=(1, 1), dim=8), widths=(16, 12, 8, 8, 8))
    settings = EncodeSettings(model=model, fit=FitConfig(epochs=40), compression=CompressionConfig(weight_bits=6))
    result = encode(frames, Fraction(25, 2), settings, CPU)
    GOLDEN_STREAM.write_bytes(write_container(result.container))
    np.save(GOLDEN_FRAMES, result.decoded.numpy(), allow_pickle=False)


def test_golden_stream_still_decodes():
    network = decoding_network(read_container(GOLDEN_STREAM.read_bytes()))
    decoded = torch.cat(list(render_frames(network, CPU))).numpy().astype(np.int16)
    expected = np.load(GOLDEN_FRAMES, allow_pickle=False).astype(np.int16)
    assert decoded.shape == expected.shape == (4, 3, 32, 48)
    # Float summation order may differ across CPUs and torch builds: allow rare 1-level roundings.
    assert np.abs(decoded - expected).max() <= 1
    assert np.mean(decoded != expected) < 0.01


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-golden"]:
        write_golden_stream()
