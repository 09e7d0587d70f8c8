"""The paper's baselines (cnervcodec.baselines): sizes matched to CNeRV, shapes, fits that learn, the CLI."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import cnerv, moving_scene
from safetensors import safe_open

from cnervcodec.baselines.config import BASELINE_ARCHS, BaselineConfig, default_lr
from cnervcodec.baselines.inr import pixel_layout
from cnervcodec.baselines.networks import matched_config, parameter_counts
from cnervcodec.baselines.train import baseline_codes, baseline_render, fit_baseline, seeded_baseline
from cnervcodec.config import FitConfig
from cnervcodec.errors import BadInputError
from cnervcodec.safetensors_files import BASELINE_FORMAT

CPU = torch.device("cpu")
H, W = 36, 52


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).div(255.0).square().mean()
    return float(-10.0 * torch.log10(mse))


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_total_size_and_code_length_match_cnerv(arch):
    config, cnerv_config = matched_config(arch, "S", 144, 176)
    encoder, decoder = parameter_counts(config)
    target = cnerv_config.decoder_param_count() + cnerv_config.encoder_param_count()
    assert abs(encoder + decoder - target) / target < 0.03
    values = cnerv_config.embedding.values_per_frame
    if arch == "convae-star":  # the paper's ConvAE*: 12k values against CNeRV's 480
        assert 20 * values <= config.embedding_values_per_frame <= 30 * values
        assert encoder < 0.05 * (encoder + decoder)  # a light encoder
    else:
        assert config.embedding_values_per_frame == values and config.grid == cnerv_config.embedding.grid


def test_pixel_inrs_share_the_autoencoder_encoder():
    convae, _ = matched_config("convae", "S", 144, 256)
    for arch in ("siren", "ffn", "nerf-pe", "mlf"):
        config, _ = matched_config(arch, "S", 144, 256)
        assert config.enc_widths == convae.enc_widths and config.grid == (1, 2)


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_codes_and_frames_have_the_right_shapes(arch):
    config, _ = matched_config(arch, "S", H, W)
    network = seeded_baseline(config, 0).eval()
    frames = torch.rand(2, 3, *config.geometry.padded_size)
    with torch.no_grad():
        code = network.encode(frames)
        out = network.decode(code)
    assert tuple(code.shape) == (2, *config.latent_shape)
    assert tuple(out.shape) == (2, 3, H, W) and out.min() >= 0 and out.max() <= 1


def test_pixel_decoding_in_chunks_matches_pixel_by_pixel(monkeypatch):
    from cnervcodec.baselines import inr

    config, _ = matched_config("mlf", "S", H, W)
    network = seeded_baseline(config, 0).eval()
    code = torch.randn(1, *config.latent_shape)
    pixels = torch.tensor([0, 7, W, H * W - 1])
    with torch.no_grad():
        some = network.decode_pixels(code, pixels)
        monkeypatch.setattr(inr, "DECODE_CHUNK_PIXELS", 100)
        whole = network.decode(code).flatten(2).transpose(1, 2)
    torch.testing.assert_close(whole[:, pixels], some, rtol=1e-5, atol=1e-6)


def test_pixel_layout_puts_each_pixel_in_its_block():
    config, _ = matched_config("ffn", "S", 40, 300, grid=(1, 2))
    coords, blocks = pixel_layout(config)
    block_w = config.geometry.block_size[1]
    assert coords.shape == (40 * 300, 2) and coords.abs().max() <= 1
    assert blocks.reshape(40, 300)[0, block_w - 1] == 0 and blocks.reshape(40, 300)[0, block_w] == 1
    assert coords.reshape(40, 300, 2)[0, 0].tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_every_baseline_learns_more_than_the_mean_frame(arch):
    frames = moving_scene(8, H, W)
    mean_frame = frames.float().mean(dim=0, keepdim=True).round().expand_as(frames)
    config, _ = matched_config(arch, "S", H, W)
    if config.hidden:  # a narrower MLP than the matched one keeps the test fast; it learns all the same
        config = replace(config, hidden=96)
    fit = fit_baseline(frames, config, FitConfig(epochs=40, batch=2, lr=default_lr(arch, 5e-3), loss="mse"), CPU)
    assert fit.steps == 160
    assert psnr_db(frames, baseline_render(fit, CPU)) > psnr_db(frames, mean_frame) + 0.5


def test_fits_are_deterministic_and_keep_unseen_frames_out():
    frames = moving_scene(10, H, W)
    config, _ = matched_config("convvae", "S", H, W)
    recipe = FitConfig(epochs=2, holdout=5)
    first, second = fit_baseline(frames, config, recipe, CPU), fit_baseline(frames, config, recipe, CPU)
    assert first.unseen.tolist() == [2, 7] and len(first.seen) == 8 and first.train_frames == 2 * 8
    torch.testing.assert_close(baseline_codes(first, CPU), baseline_codes(second, CPU), rtol=0, atol=0)
    frames01 = torch.rand(2, 3, *config.geometry.padded_size)
    with torch.no_grad():  # the VAE's embedding is its mean, not a sample
        torch.testing.assert_close(first.network.encode(frames01), first.network.encode(frames01), rtol=0, atol=0)


def test_codec_only_recipes_are_refused():
    config, _ = matched_config("convae", "S", H, W)
    frames = moving_scene(4, H, W)
    with pytest.raises(BadInputError, match="yuv-mse"):
        fit_baseline(frames, config, FitConfig(epochs=1, loss="yuv-mse"), CPU)
    with pytest.raises(BadInputError, match="holdout"):
        fit_baseline(frames, config, FitConfig(epochs=1, fit_every=2), CPU)


def test_config_round_trips_and_refuses_unknown_fields():
    config, _ = matched_config("convae*", "S", H, W)
    assert config.arch == "convae-star" and matched_config("nerf", "S", H, W)[0].arch == "nerf-pe"
    assert BaselineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(BadInputError, match="unknown"):
        BaselineConfig.from_dict({**config.to_dict(), "extra": 1})
    with pytest.raises(BadInputError):
        BaselineConfig.from_dict({**config.to_dict(), "enc_widths": [8, 8]})


def test_cli_fits_a_baseline_with_holdout_json_and_a_file(tmp_path):
    from conftest import write_y4m

    clip = tmp_path / "clip.y4m"
    write_y4m(clip, moving_scene(10, H, W), W, H)
    model = tmp_path / "ae.safetensors"
    out = cnerv("fit", str(clip), "--arch", "convae", "--holdout", "5", "--epochs", "2", "--json", "-q", "-o", str(model))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["arch"] == "convae" and report["seen"]["frames"] == 8 and report["unseen"]["frames"] == 2
    assert report["encoder_params"] > 0 and report["total_params"] == report["params"] + report["encoder_params"]
    assert report["encode_ms_per_frame"] > 0 and report["embedding_values_per_frame"] == 60
    with safe_open(str(model), framework="pt") as handle:
        assert handle.metadata()["format"] == BASELINE_FORMAT
        assert tuple(handle.get_tensor("embeddings").shape) == (10, 60, 1, 1)
    analyzed = cnerv("analyze", str(model), "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)["methods"][0]["arch"] == "convae"


@pytest.mark.parametrize("arch", ["cnerv", "nerv", *BASELINE_ARCHS, "convae*", "nerf"])
def test_every_table_8_arch_runs_through_cnerv_fit_with_holdout_and_json(tmp_path, arch):
    from conftest import write_y4m

    clip = tmp_path / "clip.y4m"
    write_y4m(clip, moving_scene(10, H, W), W, H)
    out = cnerv("fit", str(clip), "--arch", arch, "--holdout", "5", "--epochs", "1", "--json", "-q")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["arch"] == {"convae*": "convae-star", "nerf": "nerf-pe"}.get(arch, arch)
    assert report["seen"]["frames"] == 8 and report["unseen"]["frames"] == 2 and report["gap_psnr"] is not None
    assert report["total_params"] == report["params"] + report["encoder_params"]
    assert (report["encode_ms_per_frame"] is None) == (arch == "nerv")


def test_cli_refuses_what_a_baseline_cannot_do(tmp_path):
    from conftest import write_y4m

    clip = tmp_path / "clip.y4m"
    write_y4m(clip, moving_scene(4, H, W), W, H)
    for extra, message in ((["-o", str(tmp_path / "m.cnrvm")], ".cnrvm"),
                           (["--resume", str(tmp_path / "x.ckpt")], "checkpoint"),
                           (["-o", str(tmp_path / "m.pt")], ".safetensors")):
        out = cnerv("fit", str(clip), "--arch", "siren", "--epochs", "1", "-q", *extra)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
