import math

import torch

from cnervcodec.config import EmbeddingConfig
from cnervcodec.embedding import (
    ContentEncoder,
    basis_1d,
    block_projection,
    index_encoding,
    network_inputs,
    pad_replicate,
)


def slow_projection(frame: torch.Tensor, cfg: EmbeddingConfig) -> torch.Tensor:
    """Eq. 2 written as plain loops over blocks, channels, basis pairs and pixels (float64)."""
    _, height, width = frame.shape
    n_h, n_w = cfg.grid
    bh, bw = height // n_h, width // n_w
    L = cfg.freqs
    funcs = [lambda x, l=l: math.sin(cfg.base**l * math.pi * x) for l in range(L)]
    funcs += [lambda x, l=l: math.cos(cfg.base**l * math.pi * x) for l in range(L)]
    coord = lambda k, n: -1.0 + 2.0 * k / (n - 1)
    out = torch.zeros(3, 2 * L, 2 * L, n_h, n_w, dtype=torch.float64)
    for p in range(n_h):
        for q in range(n_w):
            block = frame[:, p * bh : (p + 1) * bh, q * bw : (q + 1) * bw].double()
            for c in range(3):
                for i in range(2 * L):
                    for j in range(2 * L):
                        total = 0.0
                        for x in range(bh):
                            for y in range(bw):
                                total += block[c, x, y].item() * funcs[i](coord(x, bh)) * funcs[j](coord(y, bw))
                        out[c, i, j, p, q] = total / (bh * bw)
    return out.reshape(3 * 4 * L * L, n_h, n_w)


def test_block_projection_matches_loop_reference():
    cfg = EmbeddingConfig(grid=(2, 3), dim=4, freqs=2, base=1.15)
    frame = torch.rand(3, 10, 18, generator=torch.Generator().manual_seed(1))
    fast = block_projection(frame[None], cfg)[0]
    slow = slow_projection(frame, cfg)
    assert fast.shape == (cfg.raw_dim, 2, 3)
    torch.testing.assert_close(fast.double(), slow, atol=1e-5, rtol=1e-4)


def test_basis_is_sin_then_cos_on_minus_one_to_one():
    rows = basis_1d(5, 3, 1.15)
    assert rows.shape == (6, 5)
    torch.testing.assert_close(rows[3, 0], torch.tensor(math.cos(-math.pi)))  # cos(pi * -1)
    torch.testing.assert_close(rows[0, 2], torch.tensor(0.0))  # sin at the block centre
    torch.testing.assert_close(rows[5, -1], torch.tensor(math.cos(1.15**2 * math.pi)), atol=1e-6, rtol=0)


def test_projection_distinguishes_content_and_is_cached_per_frame(scene):
    cfg = EmbeddingConfig(grid=(1, 2), dim=8, freqs=4)
    raw = network_inputs("cnerv", cfg, (48, 64), scene, batch=3)
    assert raw.shape == (scene.shape[0], cfg.raw_dim, 1, 2)
    # neighbouring frames are closer to each other than frames far apart
    d_near = (raw[0] - raw[1]).norm()
    d_far = (raw[0] - raw[-1]).norm()
    assert d_near < d_far


def test_pad_replicate_copies_edges():
    frame = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = pad_replicate(frame, (4, 5))
    assert padded.shape == (1, 1, 4, 5)
    assert torch.equal(padded[..., :2, :3], frame)
    assert torch.equal(padded[0, 0, 3], torch.tensor([3.0, 4.0, 5.0, 5.0, 5.0]))


def test_content_encoder_standardizes_inputs():
    cfg = EmbeddingConfig(grid=(1, 1), dim=5, freqs=2)
    raw = torch.randn(20, cfg.raw_dim, 1, 1) * torch.logspace(-2, 1, cfg.raw_dim)[None, :, None, None] + 3
    encoder = ContentEncoder(cfg)
    encoder.set_statistics(raw)
    scaled = (raw - encoder.raw_mean[None, :, None, None]) / encoder.raw_std[None, :, None, None]
    torch.testing.assert_close(scaled.mean(dim=(0, 2, 3)), torch.zeros(cfg.raw_dim), atol=1e-4, rtol=0)
    torch.testing.assert_close(scaled.std(dim=(0, 2, 3), unbiased=False), torch.ones(cfg.raw_dim), atol=1e-3, rtol=0)
    assert encoder(raw).shape == (20, 5, 1, 1)


def test_index_encoding_is_accurate_at_high_frequency():
    t = torch.tensor([0.0, 0.5, 1.0])
    enc = index_encoding(t, 80, 1.25)
    assert enc.shape == (3, 160)
    expected = math.sin(1.25**79 * math.pi * 0.5)
    assert abs(enc[1, 79].item() - expected) < 1e-6
