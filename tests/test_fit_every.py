"""``fit_every``: train on frames 0, K, 2K, ... only, embed and code every frame.

Checks the split, that training (fit and pruning's fine-tune) touches only the seen frames, that the
encoder's standardization comes from them alone, checkpoints, and ``cnerv encode --fit-every``.
"""

import json
from pathlib import Path

import pytest
import torch

from cnervcodec.prune import prune_fit
from cnervcodec.config import EmbeddingConfig, FitConfig, ModelConfig, PruneConfig
from cnervcodec.errors import BadInputError
from cnervcodec.fit import CheckpointPolicy, FitInterrupted, _Trainer, fit, fit_every_split, training_split
from conftest import cnerv

CPU = torch.device("cpu")
DATA = Path(__file__).resolve().parent / "data"
CLIP = str(DATA / "carphone_qcif.mp4")
SELECT = ("--frames", "6", "--scale", "88x72")


def tiny_config(height: int = 32, width: int = 32) -> ModelConfig:
    return ModelConfig(
        arch="cnerv", height=height, width=width,
        embedding=EmbeddingConfig(grid=(1, 1), dim=8, freqs=4),
        widths=(16, 12, 8), strides=(2, 2),
    ).validate()


@pytest.fixture
def clip8() -> torch.Tensor:
    from conftest import moving_scene

    return moving_scene(n_frames=8, height=32, width=32)


def record_trained_frames(monkeypatch) -> list[int]:
    """Every frame index a training step sees, in order."""
    trained: list[int] = []
    original = _Trainer.train_step

    def spy(self, indices):
        trained.extend(indices.tolist())
        return original(self, indices)

    monkeypatch.setattr(_Trainer, "train_step", spy)
    return trained


@pytest.mark.parametrize("n_frames, k", [(8, 2), (8, 3), (7, 4), (10, 5), (3, 8), (1, 4), (6, 1)])
def test_split_sees_frame_zero_and_every_kth(n_frames, k):
    seen, unseen = fit_every_split(n_frames, k)
    assert seen.tolist() == list(range(0, n_frames, k))
    assert sorted(seen.tolist() + unseen.tolist()) == list(range(n_frames))
    assert seen[0] == 0 and all(i % k != 0 for i in unseen.tolist())


def test_training_split_follows_the_config():
    assert training_split(8, FitConfig(fit_every=2))[0].tolist() == [0, 2, 4, 6]
    assert training_split(12, FitConfig(holdout=5))[1].tolist() == [2, 7]
    seen, unseen = training_split(5, FitConfig())
    assert seen.tolist() == list(range(5)) and unseen.numel() == 0


def test_config_validates_and_refuses_holdout_with_fit_every():
    for bad in (0, 1001, True, 2.0):
        with pytest.raises(BadInputError):
            FitConfig(fit_every=bad).validate()
    with pytest.raises(BadInputError, match="one or the other"):
        FitConfig(holdout=5, fit_every=2).validate()
    cfg = FitConfig(epochs=3, fit_every=4)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["fit_every"] == 4
    old = FitConfig(epochs=3).to_dict()
    del old["fit_every"]  # written before the field existed
    assert FitConfig.from_dict(old).fit_every == 1


def test_fit_and_prune_fine_tune_train_on_seen_frames_only(clip8, monkeypatch):
    trained = record_trained_frames(monkeypatch)
    cfg = FitConfig(epochs=3, batch=2, fit_every=2)
    result = fit(clip8, tiny_config(), cfg, CPU)
    assert result.seen.tolist() == [0, 2, 4, 6] and result.unseen.tolist() == [1, 3, 5, 7]
    assert result.train_frames == 3 * 4 and result.steps == 3 * 2
    assert sorted(set(trained)) == [0, 2, 4, 6] and len(trained) == 12

    trained.clear()
    pruned = prune_fit(clip8, result, PruneConfig(fraction=0.2, epochs=2), CPU)
    assert sorted(set(trained)) == [0, 2, 4, 6] and len(trained) == 2 * 4
    assert pruned.seen.tolist() == [0, 2, 4, 6]


def test_encoder_statistics_come_from_seen_frames_only(clip8):
    result = fit(clip8, tiny_config(), FitConfig(epochs=1, batch=4, fit_every=3), CPU)
    encoder = result.network.encoder
    seen_raw = result.inputs[torch.tensor([0, 3, 6])]  # (3, raw_dim, 1, 1)
    flat = seen_raw.transpose(0, 1).reshape(seen_raw.shape[1], -1).double()
    torch.testing.assert_close(encoder.raw_mean, flat.mean(dim=1).float())
    torch.testing.assert_close(encoder.raw_std, flat.std(dim=1, unbiased=False).clamp_min(1e-6).float())
    all_flat = result.inputs.transpose(0, 1).reshape(result.inputs.shape[1], -1).double()
    assert not torch.allclose(encoder.raw_mean, all_flat.mean(dim=1).float())


def test_resume_mid_epoch_keeps_the_split(clip8, tmp_path):
    cfg = FitConfig(epochs=3, lr=5e-3, batch=3, seed=2, fit_every=2)  # 4 seen frames, batch 3: 2 steps an epoch
    straight = fit(clip8, tiny_config(), cfg, CPU)
    ckpt = tmp_path / "run.ckpt"
    calls = {"n": 0}

    def stop_mid_epoch() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(FitInterrupted):
        fit(clip8, tiny_config(), cfg, CPU, checkpoint=CheckpointPolicy(ckpt, 1e9), should_stop=stop_mid_epoch)
    resumed = fit(clip8, tiny_config(), FitConfig(epochs=1), CPU, resume=ckpt)
    assert resumed.config.fit_every == 2 and resumed.seen.tolist() == [0, 2, 4, 6]
    assert resumed.steps == straight.steps and resumed.train_frames == straight.train_frames
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_checkpoint_without_the_field_resumes_on_every_frame(clip8, tmp_path, monkeypatch):
    ckpt = tmp_path / "old.ckpt"
    new_to_dict = FitConfig.to_dict

    def old_to_dict(self):
        data = new_to_dict(self)
        del data["fit_every"]
        return data

    monkeypatch.setattr(FitConfig, "to_dict", old_to_dict)
    with pytest.raises(FitInterrupted):
        fit(clip8, tiny_config(), FitConfig(epochs=1, batch=4), CPU,
            checkpoint=CheckpointPolicy(ckpt, 1e9), should_stop=lambda: True)
    monkeypatch.setattr(FitConfig, "to_dict", new_to_dict)
    resumed = fit(clip8, tiny_config(), FitConfig(epochs=1), CPU, resume=ckpt)
    assert resumed.config.fit_every == 1 and resumed.seen.tolist() == list(range(8))
    assert resumed.train_frames == 8


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_every")
    out_path = folder / "k2.cnrv"
    out = cnerv("encode", CLIP, "-o", str(out_path), *SELECT, "--epochs", "4", "--fit-every", "2", "--json", "-q")
    assert out.returncode == 0, out.stderr
    return out_path, json.loads(out.stdout)


def test_encode_reports_seen_and_unseen(encoded):
    path, report = encoded
    assert {"frames", "width", "height", "fps", "bytes", "bpp", "psnr", "psnr_yuv", "ms_ssim",
            "encode_seconds", "fit_every", "seen", "unseen", "fit_seconds"} <= set(report)
    assert report["fit_every"] == 2 and report["frames"] == 6 and report["bytes"] == path.stat().st_size
    assert report["seen"]["frames"] == 3 and report["unseen"]["frames"] == 3
    for part in ("seen", "unseen"):
        assert set(report[part]) == {"frames", "psnr", "psnr_yuv", "ms_ssim"}
    overall = (report["seen"]["psnr"] * 3 + report["unseen"]["psnr"] * 3) / 6  # means of per-frame PSNRs
    assert overall == pytest.approx(report["psnr"], abs=1e-6)
    assert 0 < report["fit_seconds"] <= report["encode_seconds"]


def test_every_frame_decodes_at_the_reported_quality(encoded, tmp_path):
    path, report = encoded
    y4m = tmp_path / "k2.y4m"
    out = cnerv("decode", str(path), "-o", str(y4m), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["frames"] == 6
    metrics = cnerv("metrics", CLIP, str(y4m), "--json", *SELECT)
    assert metrics.returncode == 0, metrics.stderr
    measured = json.loads(metrics.stdout)
    assert len(measured["per_frame_psnr"]) == 6
    assert abs(measured["psnr"] - report["psnr"]) <= 0.05
    assert abs(measured["psnr_yuv"] - report["psnr_yuv"]) <= 0.05


def test_fit_every_zero_is_a_usage_error(tmp_path):
    out = cnerv("encode", CLIP, "-o", str(tmp_path / "x.cnrv"), *SELECT, "--fit-every", "0", "-q")
    assert out.returncode == 2 and "--fit-every" in out.stderr
    assert not (tmp_path / "x.cnrv").exists()


def test_text_report_has_a_seen_unseen_line():
    from cnervcodec.cli.text import format_encode

    report = {"frames": 5, "width": 8, "height": 8, "fps": "25", "bytes": 100, "bpp": 2.5, "psnr": 30.0,
              "psnr_yuv": 31.0, "ms_ssim": 0.9, "encode_seconds": 2.0, "fit_every": 4, "fit_seconds": 1.5,
              "seen": {"frames": 2, "psnr": 32.0, "psnr_yuv": 33.0, "ms_ssim": 0.95},
              "unseen": {"frames": 3, "psnr": 28.5, "psnr_yuv": 29.0, "ms_ssim": 0.85}}
    text = format_encode(report, Path("x.cnrv"), [])
    assert "seen 2 frames PSNR 32.00 dB, unseen 3 frames PSNR 28.50 dB" in text
    assert "every 4 frames" in text
