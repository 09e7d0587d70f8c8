"""Metrics against hand-computed values: PSNR formula, BT.601 colours, MS-SSIM scales, bpp, report."""

import json
import math
import warnings

import pytest
import pytorch_msssim
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnervcodec.errors import BadInputError
from cnervcodec.metrics import (
    PSNR_CAP_DB,
    _ms_ssim_batch,
    _scale_weights,
    QualityReport,
    bpp,
    ms_ssim_note,
    ms_ssim_per_frame,
    ms_ssim_scales_for,
    psnr_rgb_db,
    psnr_yuv_db,
    quality_report,
    rgb_to_yuv420,
)

PAIR_FUNCTIONS = [psnr_rgb_db, psnr_yuv_db, ms_ssim_per_frame, quality_report]


def textured(n_frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) uint8: smooth gradients plus mild noise, so SSIM has structure to compare."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    frames = []
    for t in range(n_frames):
        base = torch.stack([torch.sin(6 * xs + 4 * ys + c + t) for c in range(3)]) * 90 + 128
        frames.append(base + torch.randn(3, height, width, generator=gen) * 8)
    return torch.stack(frames).round().clamp(0, 255).to(torch.uint8)


def solid(rgb: tuple[int, int, int], n_frames: int = 1, height: int = 4, width: int = 4) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(n_frames, 3, height, width).clone()


def add_noise(frames_u8: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noisy = frames_u8.float() + torch.randn(frames_u8.shape, generator=gen) * sigma
    return noisy.round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------------------ PSNR


def test_psnr_of_plus_minus_one_everywhere_is_48_13_db():
    ref = textured(3, 16, 20).clamp(1, 254)
    signs = torch.where(torch.arange(ref.numel()).view(ref.shape) % 2 == 0, 1, -1)
    dist = (ref.to(torch.int16) + signs).to(torch.uint8)  # MSE exactly 1
    psnr = psnr_rgb_db(ref, dist)
    assert psnr.shape == (3,) and psnr.dtype == torch.float64 and psnr.device.type == "cpu"
    assert torch.allclose(psnr, torch.full((3,), 10 * math.log10(255**2), dtype=torch.float64))
    assert psnr[0].item() == pytest.approx(48.1308, abs=1e-4)


def test_psnr_uses_mse_over_all_three_channels():
    ref = solid((100, 100, 100), n_frames=2)
    dist = ref.clone()
    dist[1, 0] += 3  # frame 1: red off by 3, green and blue exact -> MSE = 9 / 3
    psnr = psnr_rgb_db(ref, dist)
    assert psnr[0].item() == PSNR_CAP_DB
    assert psnr[1].item() == pytest.approx(10 * math.log10(255**2 / 3))


def test_identical_frames_hit_the_100_db_cap():
    frames = textured(2, 8, 8)
    assert psnr_rgb_db(frames, frames).tolist() == [100.0, 100.0]
    assert psnr_yuv_db(frames, frames).tolist() == [100.0, 100.0]


def test_psnr_does_not_depend_on_batch():
    ref = textured(5, 12, 10)
    dist = add_noise(ref, 6)
    assert torch.equal(psnr_rgb_db(ref, dist, batch=2), psnr_rgb_db(ref, dist, batch=8))
    assert torch.equal(psnr_yuv_db(ref, dist, batch=1), psnr_yuv_db(ref, dist, batch=8))


@pytest.mark.parametrize("fn", PAIR_FUNCTIONS)
def test_mismatched_frame_counts_are_refused(fn):
    with pytest.raises(BadInputError, match="^reference has 3 frames, distorted has 2$"):
        fn(textured(3, 8, 8), textured(2, 8, 8))


@pytest.mark.parametrize("fn", PAIR_FUNCTIONS)
def test_mismatched_frame_sizes_are_refused(fn):
    with pytest.raises(BadInputError) as info:
        fn(textured(2, 144, 176), textured(2, 144, 160))
    message = str(info.value)
    assert "176x144" in message and "160x144" in message and "\n" not in message


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8, dtype=torch.uint8)],
)
def test_wrong_dtype_or_layout_is_refused(bad):
    with pytest.raises(BadInputError):
        psnr_rgb_db(bad, bad)


def test_empty_clip_has_no_report():
    empty = torch.zeros(0, 3, 8, 8, dtype=torch.uint8)
    assert psnr_rgb_db(empty, empty).shape == (0,)
    with pytest.raises(BadInputError, match="no frames"):
        quality_report(empty, empty)


# ------------------------------------------------------------------------------------------- YUV


@pytest.mark.parametrize(
    "rgb, yuv",
    [
        ((255, 255, 255), (235, 128, 128)),
        ((0, 0, 0), (16, 128, 128)),
        ((128, 128, 128), (126, 128, 128)),  # 16 + 219 * 128 / 255 = 125.93
        ((255, 0, 0), (81, 90, 240)),  # 16 + 65.481; 128 - 37.797; 128 + 112
        ((0, 255, 0), (145, 54, 34)),  # 16 + 128.553; 128 - 74.203; 128 - 93.786
        ((0, 0, 255), (41, 240, 110)),  # 16 + 24.966; 128 + 112; 128 - 18.214
    ],
)
def test_yuv_of_solid_colours_matches_bt601_limited_range(rgb, yuv):
    y, u, v = rgb_to_yuv420(solid(rgb, n_frames=2, height=4, width=6))
    assert y.dtype == u.dtype == v.dtype == torch.uint8
    assert y.shape == (2, 4, 6) and u.shape == v.shape == (2, 2, 3)
    assert (y == yuv[0]).all() and (u == yuv[1]).all() and (v == yuv[2]).all()


def test_chroma_is_the_2x2_average_rounded_once():
    frame = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    frame[0, 0, :, 0] = 255  # left column red
    frame[0, 2, :, 1] = 255  # right column blue
    _, u, v = rgb_to_yuv420(frame)
    assert u.item() == round((90.203 + 240.0) / 2)  # 165.10
    assert v.item() == round((240.0 + 109.786) / 2)  # 174.89


def test_odd_sizes_replicate_the_last_column_before_averaging():
    frame = torch.zeros(1, 3, 1, 3, dtype=torch.uint8)
    frame[0, 0, 0, :2] = 255  # red, red, blue
    frame[0, 2, 0, 2] = 255
    y, u, v = rgb_to_yuv420(frame)
    assert y.shape == (1, 1, 3) and u.shape == (1, 1, 2)
    assert u[0, 0].tolist() == [90, 240]  # blue edge averaged with itself, not with zeros
    assert v[0, 0].tolist() == [240, 110]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_yuv_planes_stay_in_legal_range(height, width, seed):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (2, 3, height, width), generator=gen, dtype=torch.uint8)
    y, u, v = rgb_to_yuv420(frames)
    assert u.shape == v.shape == (2, (height + 1) // 2, (width + 1) // 2)
    assert 16 <= y.min() and y.max() <= 235
    assert 16 <= min(u.min(), v.min()) and max(u.max(), v.max()) <= 240


def plane_psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).square().mean().item()
    return min(100.0, 10 * math.log10(255**2 / mse)) if mse else 100.0


def test_psnr_yuv_weights_luma_6_and_each_chroma_1():
    ref = solid((128, 128, 128), height=4, width=4)  # Y 126, U 128, V 128
    dist = solid((150, 120, 110), height=4, width=4)  # Y 125.78 -> 126, U 119, V 142: chroma only
    (y_ref, u_ref, v_ref), (y_dist, u_dist, v_dist) = rgb_to_yuv420(ref), rgb_to_yuv420(dist)
    assert torch.equal(y_ref, y_dist) and (u_ref != u_dist).all() and (v_ref != v_dist).all()
    expected = (6 * 100.0 + 10 * math.log10(255**2 / 9**2) + 10 * math.log10(255**2 / 14**2)) / 8
    assert psnr_yuv_db(ref, dist).item() == pytest.approx(expected)


def test_psnr_yuv_matches_the_formula_on_noisy_frames():
    ref = textured(2, 9, 13)
    dist = add_noise(ref, 10)
    ref_planes, dist_planes = rgb_to_yuv420(ref), rgb_to_yuv420(dist)
    for t, value in enumerate(psnr_yuv_db(ref, dist).tolist()):
        y, u, v = (plane_psnr_db(r[t], d[t]) for r, d in zip(ref_planes, dist_planes))
        assert value == pytest.approx((6 * y + u + v) / 8)


# --------------------------------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize(
    "height, width, scales",
    [(144, 176, 4), (240, 320, 5), (161, 300, 5), (160, 300, 4), (20, 20, 1), (21, 300, 2), (11, 11, 1),
     (10, 50, 0), (1, 1, 0)],
)
def test_ms_ssim_scales_for(height, width, scales):
    assert ms_ssim_scales_for(height, width) == scales


@pytest.mark.parametrize("height, width, scales", [(144, 176, 4), (64, 64, 3), (20, 20, 1), (8, 12, 0), (1, 5, 0)])
def test_ms_ssim_of_identical_frames_is_one_at_any_size(height, width, scales):
    frames = textured(2, height, width)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. pytorch-msssim's "Skipping Gaussian Smoothing"
        values, used = ms_ssim_per_frame(frames, frames)
    assert used == scales and values.shape == (2,) and values.dtype == torch.float64
    assert torch.allclose(values, torch.ones(2, dtype=torch.float64), atol=1e-6)


def test_ms_ssim_decreases_with_noise():
    ref = textured(2, 64, 80)
    scores = [ms_ssim_per_frame(ref, add_noise(ref, sigma))[0].mean().item() for sigma in (2, 8, 25, 60)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    assert scores[-1] < 0.9


def test_five_scales_match_pytorch_msssim():
    ref = textured(3, 168, 176)
    dist = add_noise(ref, 12)
    values, scales = ms_ssim_per_frame(ref, dist, batch=2)
    expected = pytorch_msssim.ms_ssim(ref.float(), dist.float(), data_range=255, size_average=False)
    assert scales == 5
    assert torch.allclose(values.float(), expected, atol=1e-6)


def test_fewer_scales_use_renormalised_leading_weights():
    """On a frame big enough for the library, our 3-scale value is its value with those weights."""
    ref = textured(2, 168, 176)
    dist = add_noise(ref, 12)
    weights = [0.0448, 0.2856, 0.3001]
    expected = pytorch_msssim.ms_ssim(
        ref.float(), dist.float(), data_range=255, size_average=False, weights=[w / sum(weights) for w in weights]
    )
    ours = _ms_ssim_batch(ref.float(), dist.float(), _scale_weights(3), 11)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_ms_ssim_does_not_depend_on_batch():
    ref = textured(5, 24, 30)
    dist = add_noise(ref, 10)
    assert torch.allclose(ms_ssim_per_frame(ref, dist, batch=2)[0], ms_ssim_per_frame(ref, dist, batch=5)[0])


def test_ms_ssim_notes():
    assert ms_ssim_note(240, 320) == ""
    assert ms_ssim_note(144, 176) == "MS-SSIM over 4 scales (frame short side 144 px < 161)"
    assert "SSIM with a 7-px window" in ms_ssim_note(8, 7)


# ------------------------------------------------------------------------------- bpp and reports


def test_bpp_formula():
    assert bpp(1000, 10, 144, 176) == pytest.approx(8000 / (10 * 144 * 176))
    assert bpp(0, 1, 1, 1) == 0.0
    with pytest.raises(BadInputError):
        bpp(1000, 0, 144, 176)


PER_FRAME_KEYS = {"per_frame_psnr", "per_frame_psnr_yuv", "per_frame_ms_ssim"}
SUMMARY_KEYS = {"frames", "psnr", "psnr_yuv", "ms_ssim", "ms_ssim_scales", "note"}


def test_quality_report_means_and_dict():
    ref = textured(3, 144, 176)
    dist = add_noise(ref, 5)
    report = quality_report(ref, dist)
    assert isinstance(report, QualityReport) and report.frames == 3 and report.ms_ssim_scales == 4
    assert report.psnr == pytest.approx(sum(report.per_frame_psnr) / 3)
    assert report.psnr_yuv == pytest.approx(sum(report.per_frame_psnr_yuv) / 3)
    assert report.ms_ssim == pytest.approx(sum(report.per_frame_ms_ssim) / 3)
    assert report.note == "MS-SSIM over 4 scales (frame short side 144 px < 161)"
    full, summary = report.to_dict(), report.to_dict(per_frame=False)
    assert set(full) == SUMMARY_KEYS | PER_FRAME_KEYS and set(summary) == SUMMARY_KEYS
    assert len(full["per_frame_psnr"]) == 3 and isinstance(full["psnr"], float)


def test_report_of_identical_frames_is_valid_json():
    frames = textured(2, 16, 16)
    report = quality_report(frames, frames)
    assert report.psnr == report.psnr_yuv == 100.0
    json.dumps(report.to_dict(), allow_nan=False)


# ------------------------------------------------- the fast, streaming metrics vs the previous code

from pathlib import Path  # noqa: E402

import metrics_reference as reference  # noqa: E402

from cnervcodec import frame_store  # noqa: E402
from cnervcodec.metrics import QualityAccumulator, _frame_yuv420, subset_quality  # noqa: E402
from cnervcodec.video_io import FrameSelection, read_video  # noqa: E402

DATA = Path(__file__).parent / "data"


def assert_matches_reference(ref: torch.Tensor, dist: torch.Tensor, planes=None, atol: float = 1e-4) -> None:
    """quality_report's per-frame values equal the previous implementation's (PSNRs to the bit)."""
    report = quality_report(ref, dist, planes=planes)
    old = reference.per_frame_values(ref, dist, planes)
    new = {"psnr": report.per_frame_psnr, "psnr_yuv": report.per_frame_psnr_yuv, "ms_ssim": report.per_frame_ms_ssim}
    for key, values in new.items():
        assert torch.allclose(torch.tensor(values, dtype=torch.float64), old[key], rtol=0, atol=atol), key
    assert report.per_frame_psnr == old["psnr"].tolist()
    assert report.per_frame_psnr_yuv == old["psnr_yuv"].tolist()


@pytest.mark.parametrize("height, width", [(168, 176), (144, 176), (45, 61), (21, 30), (9, 7), (2, 3)])
def test_values_match_the_previous_implementation_on_random_frames(height, width):
    gen = torch.Generator().manual_seed(height * width)
    ref = torch.randint(0, 256, (3, 3, height, width), generator=gen, dtype=torch.uint8)
    assert_matches_reference(ref, add_noise(ref, 20))
    assert_matches_reference(textured(2, height, width), add_noise(textured(2, height, width), 6))


def test_values_match_the_previous_implementation_on_real_frames():
    clip = read_video(DATA / "carphone_qcif.mp4", select=FrameSelection(frames=6, step=5))
    dist = read_video(DATA / "carphone_qcif.mp4", select=FrameSelection(start=1, frames=6, step=5)).frames
    assert_matches_reference(clip.frames, dist)
    assert_matches_reference(clip.frames, dist, planes=clip.planes)
    assert_matches_reference(clip.frames, add_noise(clip.frames, 3), planes=clip.planes)


def test_ms_ssim_matches_the_previous_implementation_on_a_720p_frame():
    """A five-scale frame as large as the benchmark's: strips and cache-sized groups change nothing."""
    ref = textured(1, 720, 1280)
    dist = add_noise(ref, 10)
    values, scales = ms_ssim_per_frame(ref, dist)
    assert scales == 5
    assert torch.allclose(values, reference.ms_ssim_per_frame(ref, dist), rtol=0, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_frame_yuv_is_rgb_to_yuv420_bit_for_bit(height, width, seed):
    frames = torch.randint(0, 256, (2, 3, height, width), generator=torch.Generator().manual_seed(seed),
                           dtype=torch.uint8)
    expected = rgb_to_yuv420(frames)
    for t in range(2):
        assert all(torch.equal(e[t], got) for e, got in zip(expected, _frame_yuv420(frames[t])))


def to_store(frames: torch.Tensor) -> frame_store.FrameFile:
    store = frame_store.FrameFile(frames.shape[1:])
    store.append(frames)
    return store


class SliceOnly:
    """A tensor-like clip that records every read and allows only contiguous slices of <= ``batch`` frames."""

    def __init__(self, frames: torch.Tensor, batch: int) -> None:
        self.frames, self.batch, self.reads = frames, batch, []
        self.shape, self.dtype = frames.shape, frames.dtype

    def dim(self) -> int:
        return self.frames.dim()

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, key):
        assert isinstance(key, slice) and key.step in (None, 1), key
        assert key.stop - key.start <= self.batch, key
        self.reads.append((key.start, key.stop))
        return self.frames[key]


def test_a_frame_file_gives_exactly_the_tensors_report():
    clip = read_video(DATA / "carphone_qcif.mp4", select=FrameSelection(frames=11))
    dist = add_noise(clip.frames, 4)
    planes = tuple(to_store(p) for p in clip.planes)
    assert quality_report(to_store(clip.frames), to_store(dist), batch=4, planes=planes) == \
        quality_report(clip.frames, dist, batch=4, planes=clip.planes)
    subsets = {"seen": torch.tensor([0, 1, 2, 4, 5, 7]), "unseen": torch.tensor([3, 6, 9]), "none": torch.tensor([], dtype=torch.long)}
    assert subset_quality(to_store(clip.frames), to_store(dist), subsets) == subset_quality(clip.frames, dist, subsets)


def test_frames_are_read_only_as_slices_of_a_batch(monkeypatch):
    ref = textured(7, 24, 30)
    dist = add_noise(ref, 5)
    monkeypatch.setattr(frame_store, "is_frames", lambda x: isinstance(x, (torch.Tensor, SliceOnly)))
    spies = SliceOnly(ref, 3), SliceOnly(dist, 3)
    planes = tuple(SliceOnly(p, 3) for p in rgb_to_yuv420(ref))
    assert quality_report(*spies, batch=3, planes=planes) == quality_report(ref, dist, batch=3, planes=rgb_to_yuv420(ref))
    assert spies[0].reads == spies[1].reads == planes[0].reads == [(0, 3), (3, 6), (6, 7)]


def test_accumulator_on_threads_gives_quality_reports_values():
    ref = textured(5, 40, 50)
    dist = add_noise(ref, 8)
    accumulator = QualityAccumulator(workers=2)
    for start in (0, 2, 4):
        accumulator.add(ref[start : start + 2], dist[start : start + 2])
    assert accumulator.report() == quality_report(ref, dist)
    with pytest.raises(BadInputError, match="no frames"):
        QualityAccumulator().report()
    grown = QualityAccumulator()
    grown.add(ref[:1], dist[:1])
    with pytest.raises(BadInputError, match="change size"):
        grown.add(textured(1, 20, 20), textured(1, 20, 20))


def test_cnerv_metrics_streams_the_same_report_as_quality_report(capsys):
    from conftest import run_cnerv

    code, out, err = run_cnerv(capsys, "metrics", str(DATA / "carphone_qcif.mp4"), str(DATA / "carphone_qcif.mp4"),
                               "--start", "3", "--frames", "9", "--step", "3", "--json")
    assert code == 0, err
    data = json.loads(out)
    ref = read_video(DATA / "carphone_qcif.mp4", select=FrameSelection(start=3, frames=9, step=3)).frames
    expected = quality_report(ref, ref).to_dict()
    assert data == {"reference": str(DATA / "carphone_qcif.mp4"), "distorted": str(DATA / "carphone_qcif.mp4"),
                    **expected, "notes": [expected["note"]]}


def test_cnerv_metrics_scores_a_distorted_clip_like_quality_report(capsys, tmp_path):
    from conftest import run_cnerv, write_y4m

    ref = read_video(DATA / "carphone_qcif.mp4", select=FrameSelection(frames=10)).frames
    dist = add_noise(ref, 7)
    write_y4m(tmp_path / "ref.y4m", ref, 176, 144)
    write_y4m(tmp_path / "dist.y4m", dist, 176, 144)
    threads = torch.get_num_threads()
    code, out, err = run_cnerv(capsys, "metrics", str(tmp_path / "ref.y4m"), str(tmp_path / "dist.y4m"), "--json")
    assert code == 0, err
    assert torch.get_num_threads() == threads  # restored after scoring on worker threads
    data = json.loads(out)
    expected = quality_report(read_video(tmp_path / "ref.y4m").frames, read_video(tmp_path / "dist.y4m").frames)
    assert data["per_frame_ms_ssim"] == expected.per_frame_ms_ssim and data["psnr_yuv"] == expected.psnr_yuv
    write_y4m(tmp_path / "short.y4m", dist[:7], 176, 144)
    code, out, err = run_cnerv(capsys, "metrics", str(tmp_path / "ref.y4m"), str(tmp_path / "short.y4m"))
    assert code == 1 and err.strip() == "cnerv: error: reference has 10 frames, distorted has 7", err
