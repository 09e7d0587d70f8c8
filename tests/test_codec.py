"""The codec end to end in memory: encode -> container bytes -> decode gives exactly the reported frames."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from cnervcodec.codec import EncodeSettings, code_fit, decode, decoding_network, encode, open_stream, render_frames
from cnervcodec.tensor_coding import code_symbols, compress_tensor, decode_symbols, restore_tensor
from cnervcodec.config import CompressionConfig, FitConfig, PruneConfig, build_model_config
from cnervcodec.format.records import CODER_CATEGORICAL, CODER_RAW
from cnervcodec.format.stream import read_container
from cnervcodec.errors import BadInputError
from cnervcodec.errors import CorruptContainerError
from cnervcodec.metrics import psnr_rgb_db
from cnervcodec.quantize import dequantize, quantize_tensor

CPU = torch.device("cpu")


def settings_for(frames, epochs=25, prune=0.0, **compression):
    model = build_model_config("cnerv", "S", frames.shape[2], frames.shape[3])
    return EncodeSettings(model=model, fit=FitConfig(epochs=epochs, batch=2),
                          compression=CompressionConfig(**compression), prune=PruneConfig(fraction=prune, epochs=2))


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
    network = decoding_network(read_container(result.data))
    decoded = torch.cat(list(render_frames(network, CPU, batch=4)))
    assert decoded.dtype == torch.uint8 and decoded.shape == frames.shape
    assert torch.equal(decoded, decode(result.data))


def test_header_keeps_fps_and_geometry(encoded):
    frames, result = encoded
    header = read_container(result.data).header
    assert header.fps == Fraction(30000, 1001)
    assert (header.n_frames, header.model.height, header.model.width) == (6, frames.shape[2], frames.shape[3])


def test_quantized_model_beats_the_mean_frame(encoded):
    frames, result = encoded
    mean_frame = frames.float().mean(dim=0, keepdim=True).round().to(torch.uint8).expand_as(frames)
    assert psnr_rgb_db(frames, decode(result.data)).mean() > psnr_rgb_db(frames, mean_frame).mean() + 3


def test_fewer_bits_make_a_smaller_file(encoded):
    from conftest import moving_scene

    frames = moving_scene(n_frames=6)
    small = encode(frames, Fraction(25), settings_for(frames, epochs=2, weight_bits=4, embed_bits=4), CPU)
    assert len(small.data) < len(encoded[1].data)


def test_pruning_zeros_survive_the_bitstream():
    from conftest import moving_scene

    frames = moving_scene(n_frames=4)
    result = encode(frames, Fraction(25), settings_for(frames, epochs=2, prune=0.5), CPU)
    assert result.sparsity >= 0.5 - 1e-3
    network = open_stream(result.data)
    weights = [p for p in network.decoder.parameters() if p.dim() >= 2]
    zeros = sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights)
    assert zeros >= 0.5 - 1e-3
    assert read_container(result.data).header.prune_fraction == pytest.approx(zeros, abs=1e-3)


def test_shape_mismatch_is_corruption(encoded):
    _, result = encoded
    container = read_container(result.data)
    swapped = type(container)(header=container.header, decoder=container.decoder[::-1],
                              embeddings=container.embeddings)
    with pytest.raises(CorruptContainerError):
        decoding_network(swapped)


def test_one_fit_serves_several_settings():
    from conftest import moving_scene

    from cnervcodec.fit import fit
    from cnervcodec.prune import prune_fit, sparsity

    frames = moving_scene(n_frames=4)
    settings = settings_for(frames, epochs=2)
    fitted = fit(frames, settings.model, settings.fit, CPU)
    before = {k: v.clone() for k, v in fitted.network.state_dict().items()}
    pruned = prune_fit(frames, fitted, PruneConfig(fraction=0.3, epochs=1), CPU)
    assert sparsity(pruned.network.decoder) >= 0.3 - 1e-3
    assert read_container(code_fit(pruned, Fraction(25), CompressionConfig())).header.prune_fraction >= 0.3 - 1e-3
    assert all(torch.equal(before[k], v) for k, v in fitted.network.state_dict().items())
    six = code_fit(fitted, Fraction(25), CompressionConfig(weight_bits=6))
    eight = code_fit(fitted, Fraction(25), CompressionConfig(weight_bits=8))
    assert len(six) < len(eight)


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
    GOLDEN_STREAM.write_bytes(result.data)
    np.save(GOLDEN_FRAMES, decode(result.data).numpy(), allow_pickle=False)


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


# ---------------------------------------------------------------------------------------------
# Random access: any frame range decodes to exactly those frames of a full decode.


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_any_frame_range_is_exactly_those_frames_of_the_full_decode(encoded, batch):
    _, result = encoded
    full = decode(result.data, batch=batch)
    for start, count in [(0, 6), (0, 1), (5, 1), (2, 3), (1, 5), (4, 2)]:
        part = decode(result.data, start=start, frames=count, batch=batch)
        assert part.shape[0] == count
        assert torch.equal(part, full[start : start + count]), (start, count)
    assert torch.equal(decode(result.data, start=4, batch=batch), full[4:])


def test_a_range_runs_the_network_only_on_the_batches_that_hold_it(encoded, monkeypatch):
    from cnervcodec import model

    _, result = encoded
    rendered = []
    original = model.render_latents

    def counting(decoder, latents, *args, **kwargs):
        rendered.append(latents.shape[0])
        return original(decoder, latents, *args, **kwargs)

    monkeypatch.setattr(model, "render_latents", counting)
    decode(result.data, start=5, frames=1, batch=1)
    assert rendered == [1]  # frame 5 alone, not the 5 before it
    rendered.clear()
    decode(result.data, start=3, frames=2, batch=2)
    assert rendered == [4]  # the two batches (2, 3) and (4, 5) of a full decode at batch 2


@pytest.mark.parametrize("start, count", [(6, None), (-1, 1), (0, 7), (5, 2), (0, 0)])
def test_a_range_outside_the_stream_is_refused(encoded, start, count):
    _, result = encoded
    with pytest.raises(BadInputError, match="--start|--frames"):
        decode(result.data, start=start, frames=count)
