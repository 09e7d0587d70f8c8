import pytest
import torch

from cnervcodec.config import EmbeddingConfig, ModelConfig, build_model_config
from cnervcodec.embedding import network_inputs
from cnervcodec.model import VideoNetwork, bitstream_tensors, count_parameters, render


@pytest.mark.parametrize("arch", ["cnerv", "nerv"])
@pytest.mark.parametrize("size,height,width,grid", [("S", 144, 176, None), ("M", 143, 175, (2, 3)), ("L", 64, 96, (1, 2))])
def test_param_count_formula_matches_torch(arch, size, height, width, grid):
    cfg = build_model_config(arch, size, height, width, grid=grid, n_frames=30)
    net = VideoNetwork(cfg)
    assert count_parameters(net.decoder) == cfg.decoder_param_count()
    assert count_parameters(net.encoder) == cfg.encoder_param_count()


def tiny_config(arch: str, height: int, width: int, grid=(1, 1)) -> ModelConfig:
    return ModelConfig(
        arch=arch, height=height, width=width,
        embedding=EmbeddingConfig(grid=grid, dim=8, freqs=3),
        widths=(16, 12, 8), strides=(2, 2), nerv_hidden=16,
    ).validate()


@pytest.mark.parametrize("height,width,grid", [(37, 53, (1, 1)), (37, 53, (2, 3)), (8, 8, (1, 1)), (1, 5, (1, 1))])
def test_odd_sizes_pad_and_crop_exactly(height, width, grid):
    cfg = tiny_config("cnerv", height, width, grid)
    frames = torch.randint(0, 256, (3, 3, height, width), dtype=torch.uint8)
    net = VideoNetwork(cfg)
    inputs = network_inputs("cnerv", cfg.embedding, cfg.padded_size, frames)
    out = render(net, inputs, batch=2)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    # decoded in render's own batches of 2: a convolution's float results can depend on the batch size
    # (measured: 2 random networks in 300 differ by one 8-bit level between batches of 2 and of 3)
    with torch.no_grad():
        padded = torch.cat([net.decoder(net.latent_for(inputs[i : i + 2])) for i in range(0, len(inputs), 2)])
    assert padded.shape[-2:] == cfg.padded_size
    # the crop is the top-left corner of the padded output, nothing resampled
    expected = padded[..., :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
    assert torch.equal(out, expected)


def test_block_wise_decoding_lays_cubes_out_in_grid_order():
    cfg = tiny_config("cnerv", 32, 48, grid=(2, 3))
    net = VideoNetwork(cfg)
    stem = net.decoder.stem
    emb = torch.randn(1, cfg.embedding.dim, 2, 3)
    grid_map = stem(emb)
    h0, w0 = cfg.cube_size
    assert grid_map.shape == (1, cfg.widths[0], 2 * h0, 3 * w0)
    # block (1, 2) of the map comes from the embedding of block (1, 2) alone
    single = stem(emb[:, :, 1:2, 2:3])
    torch.testing.assert_close(grid_map[:, :, h0:, 2 * w0 :], single)


def test_nerv_decodes_frame_times():
    cfg = tiny_config("nerv", 20, 28)
    net = VideoNetwork(cfg)
    times = torch.linspace(0, 1, 4, dtype=torch.float64)
    with torch.no_grad():
        out = net(net.latent_for(times))
    assert out.shape == (4, 3, 20, 28)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_bitstream_tensors_are_the_decoder_in_a_fixed_order():
    cfg = tiny_config("cnerv", 16, 16)
    names_a = [n for n, _ in bitstream_tensors(VideoNetwork(cfg).decoder)]
    names_b = [n for n, _ in bitstream_tensors(VideoNetwork(cfg).decoder)]
    assert names_a == names_b
    assert names_a[0].startswith("stem.") and names_a[-1].startswith("head.")
    assert sum(t.numel() for _, t in bitstream_tensors(VideoNetwork(cfg).decoder)) == cfg.decoder_param_count()
