"""Rate control (``--bpp`` / ``--kbps``), the size family, yuv-mse, and scoring on the source's own planes."""

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from conftest import cnerv

from cnervcodec.errors import BadInputError
from cnervcodec.losses import rgb_to_yuv_full, yuv_mse_loss
from cnervcodec.metrics import psnr_yuv_db, rgb_to_yuv420
from cnervcodec.ratecontrol import (
    RATE_TOLERANCE,
    coding_candidates,
    family_config,
    predicted_bytes,
    solve,
    target_from_bpp,
    target_from_kbps,
)
from cnervcodec.video_io import FrameSelection, read_video

DATA = Path(__file__).resolve().parent / "data"
CLIP = str(DATA / "carphone_qcif.mp4")


def test_family_grows_with_width_and_keeps_the_stem_small():
    counts = [family_config(c, 144, 176).decoder_param_count() for c in range(4, 64)]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    model = family_config(24, 144, 176)
    stem = sum(v.numel() for v in [torch.empty(s) for n, s in model.decoder_tensor_shapes() if n.startswith("stem")])
    assert stem < 0.25 * model.decoder_param_count()  # the S preset's stem is 64 % of its decoder
    assert model.embedding.grid == (3, 3)


def test_solver_picks_bigger_networks_for_more_bits_and_fits_the_prediction():
    models = [solve(target_from_bpp(b, 120, 144, 176), 120, 144, 176) for b in (0.02, 0.04, 0.08, 0.16)]
    params = [m.decoder_param_count() for m in models]
    assert params == sorted(params) and len(set(params)) == 4
    for b, m in zip((0.02, 0.04, 0.08, 0.16), models):
        assert predicted_bytes(m, 120, 6, 5) <= target_from_bpp(b, 120, 144, 176).bytes


def test_targets_in_bytes():
    assert target_from_bpp(0.04, 120, 144, 176).bytes == round(0.04 * 120 * 144 * 176 / 8)
    t = target_from_kbps(100, 120, Fraction(30000, 1001), 144, 176)
    assert t.bytes == round(100_000 / 8 * 120 / (30000 / 1001))
    with pytest.raises(BadInputError):
        target_from_bpp(0, 10, 10, 10)
    with pytest.raises(BadInputError, match="smallest network"):
        solve(target_from_bpp(0.0001, 5, 72, 88), 5, 72, 88)
    assert solve(target_from_bpp(0.0001, 5, 72, 88), 5, 72, 88, strict=False).widths[0] == 4


def test_pinned_weight_bits_are_the_only_weight_depth_searched():
    assert {c.weight_bits for c in coding_candidates(8)} == {8}
    assert {c.weight_bits for c in coding_candidates(None)} == {4, 5, 6, 7, 8}


@pytest.mark.parametrize("bpp", [0.8, 1.6])
def test_encode_bpp_lands_within_tolerance_of_the_written_file(tmp_path, bpp):
    out = tmp_path / "r.cnrv"
    res = cnerv("encode", CLIP, "-o", str(out), "--frames", "6", "--scale", "88x72", "--epochs", "6",
                "--bpp", str(bpp), "--json", "-q")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    target = bpp * 6 * 72 * 88 / 8
    assert report["bytes"] == out.stat().st_size
    assert abs(out.stat().st_size - target) <= RATE_TOLERANCE * target
    assert report["target_bytes"] == round(target)


def test_bits_pin_the_weight_depth_under_rate_control(tmp_path):
    res = cnerv("encode", CLIP, "-o", str(tmp_path / "b.cnrv"), "--frames", "6", "--scale", "88x72", "--epochs", "3",
                "--bpp", "0.8", "--bits", "8", "--rate-aware", "off", "--json", "-q")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["weight_bits"] == 8


@pytest.mark.parametrize("args,message", [
    (("--bpp", "0.1", "--size", "S"), "--size fixes the network"),
    (("--bpp", "0.1", "--kbps", "20"), "pass one"),
    (("--embed-dim", "8"), "add --size"),
])
def test_rate_options_that_conflict_are_refused(tmp_path, args, message):
    res = cnerv("encode", CLIP, "-o", str(tmp_path / "x.cnrv"), "--frames", "2", *args)
    assert res.returncode == 2 and message in res.stderr
    assert not (tmp_path / "x.cnrv").exists()


def test_a_rate_below_the_smallest_network_is_one_line_error(tmp_path):
    res = cnerv("encode", CLIP, "-o", str(tmp_path / "x.cnrv"), "--frames", "2", "--scale", "88x72", "--bpp", "0.001")
    assert res.returncode == 1 and "smallest network" in res.stderr and "Traceback" not in res.stderr


def test_clip_keeps_its_own_planes_and_metrics_score_on_them():
    clip = read_video(CLIP, select=FrameSelection(frames=4))
    y, u, v = clip.planes
    assert y.shape == (4, 144, 176) and u.shape == v.shape == (4, 72, 88) and y.dtype == torch.uint8
    converted = rgb_to_yuv420(clip.frames)
    assert all((a.float() - b.float()).abs().mean() < 1.0 for a, b in zip(converted, clip.planes))
    assert not all(torch.equal(a, b) for a, b in zip(converted, clip.planes))  # the round trip is not the source
    same = psnr_yuv_db(clip.frames, clip.frames, planes=tuple(converted))
    assert torch.all(same == 100.0)
    against_source = psnr_yuv_db(clip.frames, clip.frames, planes=clip.planes)
    assert torch.all(against_source < 100.0)  # even a perfect RGB copy is scored on what the source holds
    with pytest.raises(BadInputError, match="planes"):
        psnr_yuv_db(clip.frames, clip.frames, planes=(y, u[:, :10], v))


def test_scaled_clip_planes_are_scaled_too():
    clip = read_video(CLIP, select=FrameSelection(frames=2), scale=(88, 72))
    assert [tuple(p.shape) for p in clip.planes] == [(2, 72, 88), (2, 36, 44), (2, 36, 44)]


def test_yuv_mse_loss_is_the_metric_weighting_and_differentiable():
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 16, 16, requires_grad=True)
    y, u, v = rgb_to_yuv420((rgb.detach() * 255).round().to(torch.uint8))
    target_uv = torch.stack((u, v), 1).float() / 255
    loss, luma = yuv_mse_loss(rgb, y.float() / 255, target_uv)
    assert loss.item() < 1e-5  # only rounding separates the output from its own planes
    assert torch.allclose(luma, rgb_to_yuv_full(rgb)[:, 0])
    shifted, _ = yuv_mse_loss(rgb, y.float() / 255 + 0.1, target_uv)
    assert shifted.item() == pytest.approx(0.75 * 0.01, rel=0.02)  # Y weighs 6/8
    shifted.backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all()
