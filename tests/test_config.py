from dataclasses import replace

import pytest

from cnervcodec.config import (
    EmbeddingConfig,
    FitConfig,
    ModelConfig,
    auto_grid,
    build_model_config,
    parse_grid,
)
from cnervcodec.errors import BadInputError


def test_model_config_round_trips_through_a_dict():
    cfg = build_model_config("cnerv", "M", 272, 640, grid=(1, 3), embed_dim=40)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    nerv = build_model_config("nerv", "S", 144, 176, n_frames=120)
    assert ModelConfig.from_dict(nerv.to_dict()) == nerv


def test_fit_config_round_trips():
    cfg = FitConfig(epochs=7, lr=1e-3, batch=3, holdout=5, seed=11)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(arch="vit"),
        lambda d: d.update(widths=[64, 32]),
        lambda d: d.update(widths=[64, 48, 32, 24, -1]),
        lambda d: d.update(height=10**9),
        lambda d: d.update(extra=1),
        lambda d: d["embedding"].update(dim=0),
        lambda d: d["embedding"].update(grid=[1000, 1]),
        lambda d: d["embedding"].update(base=float("nan")),
        lambda d: d.pop("strides"),
        lambda d: d.update(head_kernel=4),
        lambda d: d.update(height=True),
    ],
)
def test_from_dict_rejects_bad_fields(mutate):
    data = build_model_config("cnerv", "S", 144, 176).to_dict()
    mutate(data)
    with pytest.raises(BadInputError):
        ModelConfig.from_dict(data)


def test_auto_grid_aims_at_240_px_blocks():
    assert auto_grid(480, 960) == (2, 4)  # the paper's default
    assert auto_grid(144, 176) == (1, 1)
    assert auto_grid(20, 20) == (1, 1)
    assert auto_grid(720, 1280) == (3, 6)
    assert auto_grid(136, 320) == (1, 2)


def test_parse_grid():
    assert parse_grid("2x4", 10, 10) == (2, 4)
    assert parse_grid("auto", 480, 960) == (2, 4)
    for bad in ("2", "x", "0x1", "2x-1", "axb", "100x1"):
        with pytest.raises(BadInputError):
            parse_grid(bad, 10, 10)


@pytest.mark.parametrize("height,width", [(143, 175), (1080, 1920), (1, 1), (136, 320)])
def test_padding_divides_into_blocks_and_stride(height, width):
    for grid in ((1, 1), (2, 3)):
        cfg = build_model_config("cnerv", "S", height, width, grid=grid)
        padded_h, padded_w = cfg.padded_size
        assert padded_h >= height and padded_w >= width
        assert padded_h % (grid[0] * cfg.total_stride) == 0 and padded_w % (grid[1] * cfg.total_stride) == 0
        # never more than one stride unit of padding per block row/column
        assert padded_h - height < grid[0] * cfg.total_stride
        assert padded_w - width < grid[1] * cfg.total_stride


def test_nerv_is_matched_to_cnerv_total_size():
    for size in ("S", "M", "L"):
        cnerv = build_model_config("cnerv", size, 136, 320)
        nerv = build_model_config("nerv", size, 136, 320, n_frames=84)
        target = cnerv.decoder_param_count() + 84 * cnerv.embedding.values_per_frame
        assert abs(nerv.decoder_param_count() - target) / target < 0.01


def test_fit_config_validation():
    with pytest.raises(BadInputError):
        FitConfig(holdout=1).validate()
    with pytest.raises(BadInputError):
        FitConfig(lr=0.0).validate()
    with pytest.raises(BadInputError):
        FitConfig.from_dict({"epochs": 3, "bogus": 1})


def test_embedding_config_raw_dim():
    assert EmbeddingConfig(freqs=15).raw_dim == 3 * 30 * 30
    assert replace(EmbeddingConfig(), grid=(2, 4), dim=60).values_per_frame == 480
