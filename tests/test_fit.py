from pathlib import Path

import pytest
import torch

from cnervcodec.config import EmbeddingConfig, FitConfig, ModelConfig
from cnervcodec.errors import CheckpointError
from cnervcodec.fit import FitInterrupted, CheckpointPolicy, fit, holdout_split, lr_at
from cnervcodec.model import render

CPU = torch.device("cpu")


def small_config(height: int, width: int, arch: str = "cnerv") -> ModelConfig:
    return ModelConfig(
        arch=arch, height=height, width=width,
        embedding=EmbeddingConfig(grid=(1, 1), dim=16, freqs=6),
        widths=(32, 24, 16), strides=(2, 2), nerv_hidden=32,
    ).validate()


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean(dim=(1, 2, 3))
    return float((10 * torch.log10(255.0**2 / mse)).mean())


def test_short_fit_beats_the_mean_frame_by_a_wide_margin(scene):
    torch.set_num_threads(2)
    result = fit(scene, small_config(36, 52), FitConfig(epochs=60, lr=5e-3, batch=2, seed=0), CPU)
    decoded = render(result.network, result.inputs)
    mean_frame = scene.float().mean(dim=0, keepdim=True).round().expand_as(scene)
    baseline = psnr_db(scene, mean_frame)
    fitted = psnr_db(scene, decoded)
    assert fitted > baseline + 6.0, (fitted, baseline)
    assert result.steps == 60 * 5 and result.train_frames == 60 * 10


def test_holdout_split_keeps_the_middle_of_each_group():
    seen, unseen = holdout_split(12, 5)
    assert unseen.tolist() == [2, 7]
    assert sorted(seen.tolist() + unseen.tolist()) == list(range(12))
    seen, unseen = holdout_split(7, 0)
    assert seen.tolist() == list(range(7)) and unseen.numel() == 0


def test_lr_schedule_warms_up_then_decays():
    cfg = FitConfig(lr=1e-2, warmup_frac=0.2)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-2 / 20)
    assert max(lrs) == pytest.approx(1e-2)
    assert lrs.index(max(lrs)) == 19
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:]))
    assert lrs[-1] < 1e-4


def test_fit_leaves_the_global_rng_alone(scene):
    state = torch.random.get_rng_state()
    fit(scene[:4], small_config(36, 52), FitConfig(epochs=1, batch=2, seed=3), CPU)
    assert torch.equal(state, torch.random.get_rng_state())


def test_same_seed_same_result(scene):
    cfg = FitConfig(epochs=2, batch=3, seed=5)
    a = fit(scene, small_config(36, 52), cfg, CPU).network.state_dict()
    b = fit(scene, small_config(36, 52), cfg, CPU).network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["cnerv", "nerv"])
def test_resume_ends_where_an_uninterrupted_fit_ends(scene, tmp_path: Path, arch):
    model_cfg = small_config(36, 52, arch)
    fit_cfg = FitConfig(epochs=6, lr=5e-3, batch=3, seed=1, holdout=5)
    straight = fit(scene, model_cfg, fit_cfg, CPU)

    ckpt = tmp_path / "run.ckpt"
    calls = {"n": 0}

    def stop_mid_epoch() -> bool:  # 8 seen frames, batch 3: 3 steps an epoch; stop after 7 steps
        calls["n"] += 1
        return calls["n"] > 7

    with pytest.raises(FitInterrupted) as info:
        fit(scene, model_cfg, fit_cfg, CPU, checkpoint=CheckpointPolicy(ckpt, 1e9), should_stop=stop_mid_epoch)
    assert info.value.checkpoint == ckpt and ckpt.exists()
    resumed = fit(scene, model_cfg, fit_cfg, CPU, resume=ckpt)
    assert resumed.steps == straight.steps
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    frames_a = render(straight.network, straight.inputs)
    frames_b = render(resumed.network, resumed.inputs)
    assert abs(psnr_db(scene, frames_a) - psnr_db(scene, frames_b)) < 0.05


def test_resume_refuses_other_frames(scene, tmp_path: Path):
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(FitInterrupted):
        fit(scene, small_config(36, 52), FitConfig(epochs=2, batch=2), CPU,
            checkpoint=CheckpointPolicy(ckpt, 1e9), should_stop=lambda: True)
    other = scene.flip(0).contiguous()
    with pytest.raises(CheckpointError, match="other frames"):
        fit(other, small_config(36, 52), FitConfig(epochs=2, batch=2), CPU, resume=ckpt)


def test_resume_refuses_a_file_that_is_not_a_checkpoint(scene, tmp_path: Path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        fit(scene, small_config(36, 52), FitConfig(epochs=1), CPU, resume=junk)
    with pytest.raises(CheckpointError):
        fit(scene, small_config(36, 52), FitConfig(epochs=1), CPU, resume=tmp_path / "missing.ckpt")
