"""Tests of ``cnervcodec.anchors``: x264 / x265 / SVT-AV1 reference encodes scored like CNeRV.

An anchor is only a fair comparison point if its rate and its quality are measured the way CNeRV's
own results are, so these tests check:

* rate accounting: the counted bytes are exactly the elementary stream (packets + extradata), and
  ``bpp`` is computed from them;
* no non-video overhead is counted: x264's version SEI is stripped and x265 writes none, while the
  encoder's options line is still recorded in ``settings``;
* the counted bytes decode on their own: written to a raw ``.264``/``.265``/``.obu`` file and read by
  ``video_io.read_video`` they give exactly the anchor's frames, so ``metrics.quality_report`` on
  that file matches ``anchor_quality`` (the issue's "anchor PSNR matches cnerv metrics" check);
* rate/quality behave (a lower CRF costs more bytes and gives higher PSNR) and encodes are
  reproducible with one thread;
* ``anchor_ladder`` extends its CRF list until it covers the requested PSNR / bpp range, stops at
  the codec's CRF limits and at ``max_points``;
* bad input is refused with ``BadInputError`` and a message naming the problem;
* on a real clip (carphone, QCIF) the anchors land at sane quality and rate.

Clips are tiny (6 frames of 64x48) and each shared encode runs once per module, so the file runs in
a few seconds on two cores.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cnervcodec.eval import anchors
from cnervcodec import metrics
from cnervcodec.errors import BadInputError
from cnervcodec.video_io import FrameSelection, read_video

FPS = Fraction(25)
CARPHONE = Path(__file__).parent / "data" / "carphone_qcif.mp4"
SUFFIX = {"x264": ".264", "x265": ".265", "av1": ".obu"}
MID_CRF = {"x264": 27, "x265": 27, "av1": 39}  # a middle rung of each codec's default ladder
AVCOL_RANGE_MPEG = 1  # limited ("tv") range
ANNEX_B_START = (b"\x00\x00\x00\x01", b"\x00\x00\x01")
AV1_TEMPORAL_DELIMITER = b"\x12\x00"  # OBU header (type 2, has_size_field) + size 0


def textured_clip(n_frames: int = 6, height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) uint8: smooth gradients moving between frames plus seeded noise.

    The noise gives the encoder real texture to spend bits on, so CRF changes rate and PSNR a lot.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for t in range(n_frames):
        base = np.stack([128 + 60 * np.sin((x + 3 * t) / 7 + c) + 40 * np.cos((y - 2 * t) / 5 + 2 * c)
                         for c in range(3)])
        frames.append(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).round().astype(np.uint8))
    return torch.from_numpy(np.stack(frames))


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return textured_clip()


@pytest.fixture(scope="module")
def encoded(clip):
    """``encoded(codec, crf)``: the anchor of ``clip`` at that CRF, encoded once per module."""

    @functools.cache
    def encode(codec: str, crf: int) -> anchors.AnchorPoint:
        return anchors.encode_anchor(clip, FPS, codec, crf=crf)

    return encode


@pytest.fixture(scope="module")
def carphone() -> torch.Tensor:
    return read_video(CARPHONE, select=FrameSelection(frames=8)).frames


def yuv_psnr(reference: torch.Tensor, point: anchors.AnchorPoint) -> float:
    return float(metrics.psnr_yuv_db(reference, point.frames_u8).mean())


# ------------------------------------------------------------------------------- rate accounting


@pytest.mark.parametrize("codec", ["x264", "x265", "av1"])
def test_rate_counts_exactly_the_stream(clip, encoded, codec):
    point = encoded(codec, MID_CRF[codec])
    n_frames, _, height, width = clip.shape
    assert point.n_bytes == len(point.bitstream) == sum(point.packet_sizes) + point.settings["extradata_bytes"]
    assert point.n_bytes > 0 and all(size > 0 for size in point.packet_sizes)
    assert math.isclose(point.bpp, point.n_bytes * 8 / (n_frames * height * width), rel_tol=1e-12)
    assert point.frames_u8.shape == clip.shape and point.frames_u8.dtype == torch.uint8
    assert (point.codec, point.crf, point.qp) == (codec, MID_CRF[codec], None)
    assert point.settings["crf"] == MID_CRF[codec] and point.settings["qp"] is None
    assert point.settings["threads"] == 1


@pytest.mark.parametrize("codec", ["x264", "x265", "av1"])
def test_bitstream_is_the_documented_format(encoded, codec):
    """Annex-B for H.264/HEVC (start codes, no length prefixes), low-overhead OBUs for AV1."""
    point = encoded(codec, MID_CRF[codec])
    if codec == "av1":
        assert point.bitstream.startswith(AV1_TEMPORAL_DELIMITER)
    else:
        assert point.bitstream.startswith(ANNEX_B_START)
        assert point.settings["extradata_bytes"] == 0  # parameter sets are in-band, not extradata


def test_x264_version_sei_is_removed_but_recorded(encoded):
    point = encoded("x264", MID_CRF["x264"])
    assert b"x264 - core" not in point.bitstream
    assert point.settings["library_options"].startswith("x264 - core")
    # The removed SEI held at least that text (plus UUID and NAL headers), and nothing else went.
    assert point.settings["sei_bytes_removed"] >= len(point.settings["library_options"]) > 0
    assert point.settings["bitstream_filter"] == anchors.X264_SEI_FILTER


def test_x265_writes_no_info_sei_and_the_probe_reads_it(encoded):
    point = encoded("x265", MID_CRF["x265"])
    assert b"x265 (build" not in point.bitstream
    assert point.settings["library_options"].startswith("x265 (build")
    assert point.settings["sei_bytes_removed"] == 0 and point.settings["bitstream_filter"] is None
    assert point.settings["versions"]["library"].startswith("x265 (build")


# ------------------------------------------------------------------ the counted bytes decode alone


@pytest.mark.parametrize("codec", ["x264", "x265", "av1"])
def test_counted_bytes_decode_alone_and_score_like_cnerv_metrics(clip, encoded, tmp_path, codec):
    """The issue's check: anchor PSNR equals ``cnerv metrics`` on a file holding the counted bytes."""
    if codec == "av1" and "obu" not in av.formats_available:
        pytest.skip("this FFmpeg build has no raw OBU demuxer, so read_video cannot open a .obu file")
    point = encoded(codec, MID_CRF[codec])
    path = tmp_path / f"anchor{SUFFIX[codec]}"
    path.write_bytes(point.bitstream)
    decoded = read_video(path, fps=FPS)
    assert torch.equal(decoded.frames, point.frames_u8)
    range_, matrix, primaries, transfer = decoded.color  # tagged as the module docstring says
    assert (range_, matrix, primaries, transfer) == (AVCOL_RANGE_MPEG,) + (anchors.AVCOL_SMPTE170M,) * 3
    report = metrics.quality_report(clip, decoded.frames)
    quality = anchors.anchor_quality(clip, point)
    assert abs(report.psnr - quality["psnr"]) < 1e-9
    assert abs(report.psnr_yuv - quality["psnr_yuv"]) < 1e-9
    assert abs(report.ms_ssim - quality["ms_ssim"]) < 1e-9
    n_frames, _, height, width = clip.shape
    assert quality["bpp"] == metrics.bpp(path.stat().st_size, n_frames, height, width)


# --------------------------------------------------------------------- rate/quality, determinism


def test_lower_crf_costs_more_bytes_and_gives_higher_psnr(clip, encoded):
    fine, coarse = encoded("x264", 20), encoded("x264", 40)
    assert fine.n_bytes > coarse.n_bytes
    assert yuv_psnr(clip, fine) > yuv_psnr(clip, coarse)


# x264 is not bit-exact run to run on this machine (PyAV 18.1.0's libx264, threads=1, frame-threading or
# not, FFmpeg's or numpy's frame buffers: 2 to 4 different streams in 16 encodes of the same frames, a few
# bytes apart; measured 2026-12-03). Kept as a non-strict xfail so that the day it is fixed it shows as
# XPASS; x265 and SVT-AV1 stay strict.
X264_NOT_BIT_EXACT = pytest.mark.xfail(reason="libx264 output varies run to run on this machine", strict=False)


@pytest.mark.parametrize("codec", [pytest.param("x264", marks=X264_NOT_BIT_EXACT), "x265", "av1"])
def test_same_encode_twice_gives_the_same_bytes(clip, encoded, codec):
    again = anchors.encode_anchor(clip, FPS, codec, crf=MID_CRF[codec], threads=1)
    first = encoded(codec, MID_CRF[codec])
    assert again.bitstream == first.bitstream
    assert torch.equal(again.frames_u8, first.frames_u8)


# ------------------------------------------------------------------------------------ the ladder


def by_crf(points: list[anchors.AnchorPoint]) -> list[anchors.AnchorPoint]:
    return sorted(points, key=lambda point: point.crf)


def assert_ladder_shape(points: list[anchors.AnchorPoint], start: int, max_points: int) -> None:
    """Sorted by rate, grown from ``start`` in steps of ``CRF_STEP`` (clamped to x264's 0..51)."""
    sizes = [point.n_bytes for point in points]
    assert sizes == sorted(sizes)
    crfs = [point.crf for point in points]
    assert len(set(crfs)) == len(crfs) and 1 < len(points) <= max_points
    spec = anchors.CODECS["x264"]
    assert all((crf - start) % anchors.CRF_STEP == 0 or crf in (spec.min_crf, spec.max_crf) for crf in crfs)


def test_ladder_grows_until_it_covers_the_psnr_range(clip):
    lo, hi, max_points = 30.0, 40.0, 12
    points = anchors.anchor_ladder(clip, FPS, "x264", crfs=[30], cover_psnr_db=(lo, hi), max_points=max_points)
    assert_ladder_shape(points, 30, max_points)
    assert len(points) < max_points  # so only coverage (or a CRF limit) can have stopped it
    ordered = by_crf(points)
    psnrs = [yuv_psnr(clip, point) for point in ordered]
    assert min(psnrs) <= lo or ordered[-1].crf == anchors.CODECS["x264"].max_crf
    assert max(psnrs) >= hi or ordered[0].crf == anchors.CODECS["x264"].min_crf
    # No overshoot: the rung next to each end did not already cover its side of the range.
    assert psnrs[-2] > lo and psnrs[1] < hi


def test_ladder_grows_until_it_covers_the_bpp_range(clip):
    lo, hi, max_points = 0.12, 1.5, 12
    points = anchors.anchor_ladder(clip, FPS, "x264", crfs=[30], cover_bpp=(lo, hi), max_points=max_points)
    assert_ladder_shape(points, 30, max_points)
    assert len(points) < max_points
    ordered = by_crf(points)
    assert min(p.bpp for p in points) <= lo or ordered[-1].crf == anchors.CODECS["x264"].max_crf
    assert max(p.bpp for p in points) >= hi or ordered[0].crf == anchors.CODECS["x264"].min_crf
    assert ordered[-2].bpp > lo and ordered[1].bpp < hi


def test_ladder_stops_at_the_codec_crf_limits(clip):
    """A range no encode can cover: the ladder runs to CRF 0 and CRF 51 and stops there."""
    points = anchors.anchor_ladder(clip, FPS, "x264", crfs=[20, 30], cover_psnr_db=(0.0, 1000.0), max_points=20)
    assert_ladder_shape(points, 20, 20)
    # Down from 20 and up from 30 in steps of 5, the top clamped to 51: 25 is never needed.
    assert sorted(p.crf for p in points) == [0, 5, 10, 15, 20, 30, 35, 40, 45, 50, 51]


def test_ladder_stops_at_max_points(clip):
    points = anchors.anchor_ladder(clip, FPS, "x264", crfs=[30], cover_psnr_db=(0.0, 1000.0), max_points=4)
    assert len(points) == 4
    assert_ladder_shape(points, 30, 4)
    # Round 1 adds 25 and 35; round 2 adds 20 (higher quality first), then the cap is reached.
    assert sorted(p.crf for p in points) == [20, 25, 30, 35]


# ---------------------------------------------------------------------------------------- errors


def _frames(n_frames: int = 2, height: int = 48, width: int = 64) -> torch.Tensor:
    return torch.zeros((n_frames, 3, height, width), dtype=torch.uint8)


BAD_INPUTS = {
    "unknown codec": (lambda: anchors.encode_anchor(_frames(), FPS, "vp7", crf=30), r"unknown anchor codec 'vp7'"),
    "crf and qp": (lambda: anchors.encode_anchor(_frames(), FPS, "x264", crf=30, qp=30), r"exactly one of crf and qp"),
    "neither crf nor qp": (lambda: anchors.encode_anchor(_frames(), FPS, "x264"), r"exactly one of crf and qp"),
    "x264 crf 52": (lambda: anchors.encode_anchor(_frames(), FPS, "x264", crf=52), r"crf 52.*0 to 51"),
    "av1 crf 0": (lambda: anchors.encode_anchor(_frames(), FPS, "av1", crf=0), r"av1 crf 0.*1 to 63"),
    "bool crf": (lambda: anchors.encode_anchor(_frames(), FPS, "x264", crf=True), r"crf True"),
    "odd width": (lambda: anchors.encode_anchor(_frames(width=65), FPS, "x264", crf=30), r"even sides.*65x48"),
    "float frames": (lambda: anchors.encode_anchor(_frames().float(), FPS, "x264", crf=30), r"uint8.*float32"),
    "zero frames": (lambda: anchors.encode_anchor(_frames(n_frames=0), FPS, "x264", crf=30), r"at least one frame"),
    "bad preset": (lambda: anchors.encode_anchor(_frames(), FPS, "x264", crf=30, preset="warp"), r"preset 'warp'"),
    "fps 0": (lambda: anchors.encode_anchor(_frames(), 0, "x264", crf=30), r"frame rate 0"),
    "threads -1": (lambda: anchors.encode_anchor(_frames(), FPS, "x264", crf=30, threads=-1), r"thread count -1"),
    "psnr range lo > hi": (lambda: anchors.anchor_ladder(_frames(), FPS, "x264", cover_psnr_db=(40.0, 30.0)),
                           r"PSNR range.*low <= high"),
    "bpp range lo > hi": (lambda: anchors.anchor_ladder(_frames(), FPS, "x264", cover_bpp=(1.0, 0.1)),
                          r"rate range.*low <= high"),
    "empty crf list": (lambda: anchors.anchor_ladder(_frames(), FPS, "x264", crfs=[]), r"at least one CRF"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_with_a_useful_message(case):
    call, message = BAD_INPUTS[case]
    with pytest.raises(BadInputError, match=message):
        call()


@pytest.mark.parametrize("fps", [float("inf"), Fraction(1, 10**12), 10**9], ids=["inf", "1e-12", "1e9"])
def test_unusable_frame_rate_is_bad_input_not_a_crash(fps):
    with pytest.raises(BadInputError, match="frame rate"):
        anchors.encode_anchor(_frames(), fps, "x264", crf=30)


def test_float_frame_rate_is_rounded_to_a_rational_ffmpeg_can_hold():
    point = anchors.encode_anchor(_frames(), 29.97, "x264", crf=30)
    assert point.n_bytes > 0 and point.frames_u8.shape[0] == _frames().shape[0]


# --------------------------------------------------------------------------------------- quality


def test_anchor_quality_reports_rate_and_distortion(clip, encoded):
    point = encoded("x264", 20)
    quality = anchors.anchor_quality(clip, point)
    assert {"codec", "crf", "qp", "bytes", "bpp", "psnr", "psnr_yuv", "ms_ssim"} <= quality.keys()
    assert (quality["codec"], quality["crf"], quality["qp"]) == ("x264", 20, None)
    assert quality["bytes"] == point.n_bytes and quality["bpp"] == point.bpp
    assert math.isfinite(quality["psnr_yuv"]) and quality["psnr_yuv"] > 20
    assert math.isfinite(quality["psnr"]) and 0 < quality["ms_ssim"] <= 1


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_real_clip_anchor_has_sane_quality_and_rate(carphone, codec):
    point = anchors.encode_anchor(carphone, Fraction(30000, 1001), codec, crf=27)
    quality = anchors.anchor_quality(carphone, point)
    assert math.isfinite(quality["psnr"]) and quality["psnr"] > 30
    assert math.isfinite(quality["psnr_yuv"]) and quality["psnr_yuv"] > 30
    assert 0 < quality["bpp"] < 2
