"""Tests for video_out: exact Y4M and PNG, H.264 quality and frame rates, odd sizes, safe writes.

Frames are made in code at a few dozen pixels a side, so the whole file runs in seconds; one test
also round-trips frames of the real clip in tests/data.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from cnervcodec.format.records import AudioPacket, AudioTrack
from cnervcodec.errors import BadInputError
from cnervcodec.video_io import FrameSelection, read_video
from cnervcodec.video_out import check_can_write, open_video_writer, png_frame_path, rgb_to_yuv444p16_full

DATA = Path(__file__).resolve().parent / "data"
RATES = [Fraction(25), Fraction(30000, 1001), Fraction(25, 2)]


def random_frames(n_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T, 3, H, W) uint8 noise: every level in every channel, the hardest case for exactness."""
    return np.random.default_rng(seed).integers(0, 256, (n_frames, 3, height, width), dtype=np.uint8)


def gradient_frames(n_frames: int, height: int, width: int) -> np.ndarray:
    """(T, 3, H, W) uint8 smooth colour gradients drifting a little from frame to frame."""
    ys = np.linspace(0, 1, height)[:, None]
    xs = np.linspace(0, 1, width)[None, :]
    frames = [
        np.stack([(0.5 + 0.4 * np.sin(3 * xs + 2 * ys + channel + 0.1 * t)) * 255 for channel in range(3)])
        for t in range(n_frames)
    ]
    return np.stack(frames).round().astype(np.uint8)


def write(path: Path, frames: np.ndarray, fps: Fraction = Fraction(25), **kwargs) -> tuple[str, ...]:
    with open_video_writer(path, width=frames.shape[3], height=frames.shape[2], fps=fps, **kwargs) as writer:
        writer.write(frames)
    return writer.notes


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def dummy_audio() -> AudioTrack:
    """A track that is never decoded: enough for the outputs that drop audio."""
    packet = AudioPacket(pts=0, dts=0, duration=1024, is_keyframe=True, data=b"\x00" * 8)
    return AudioTrack(codec="aac", sample_rate=48000, channels=2, layout="stereo", sample_format="fltp",
                      time_base=Fraction(1, 48000), bit_rate=128000, extradata=b"\x11\x90", packets=(packet,))


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".tmp-" in name)


# ---------------------------------------------------------------------------------------------
# Y4M: exact


def test_y4m_round_trip_is_bit_exact_at_odd_size(tmp_path):
    frames = random_frames(3, 29, 37)
    notes = write(tmp_path / "out.y4m", frames, fps=Fraction(30000, 1001))
    clip = read_video(tmp_path / "out.y4m")
    assert torch.equal(clip.frames, torch.from_numpy(frames))
    assert clip.fps == Fraction(30000, 1001) and notes == ()


def test_y4m_is_16_bit_full_range_444(tmp_path):
    write(tmp_path / "out.y4m", random_frames(1, 4, 6))
    header = (tmp_path / "out.y4m").read_bytes().split(b"\n", 1)[0]
    assert b" C444p16 " in header and header.endswith(b"XCOLORRANGE=FULL")


def test_y4m_exact_for_many_colours(tmp_path):
    """A quarter of a million random colours in one frame (the conversion was checked on all 2**24)."""
    frames = random_frames(1, 512, 512, seed=7)
    write(tmp_path / "many.y4m", frames)
    assert torch.equal(read_video(tmp_path / "many.y4m").frames, torch.from_numpy(frames))


def test_y4m_exact_on_real_clip(tmp_path):
    clip = read_video(DATA / "carphone_qcif.mp4", select=FrameSelection(frames=4, step=7))
    write(tmp_path / "carphone.y4m", clip.frames.numpy(), fps=clip.fps)
    back = read_video(tmp_path / "carphone.y4m")
    assert torch.equal(back.frames, clip.frames) and back.fps == clip.fps


def test_yuv444p16_extremes():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]]], np.uint8)
    yuv = rgb_to_yuv444p16_full(rgb)
    assert yuv[0, 0].tolist() == [0, 32768, 32768]
    assert yuv[0, 1].tolist() == [255 * 256, 32768, 32768]
    assert yuv[0, 3, 1] == 32768 + 127.5 * 256  # pure blue: Cb at its top


# ---------------------------------------------------------------------------------------------
# H.264 in MP4 / MKV


@pytest.mark.parametrize("fps", RATES, ids=str)
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_h264_round_trip(tmp_path, ext, fps):
    frames = gradient_frames(5, 48, 64)
    notes = write(tmp_path / f"out.{ext}", frames, fps=fps)
    clip = read_video(tmp_path / f"out.{ext}")
    assert clip.n_frames == 5 and (clip.width, clip.height) == (64, 48)
    assert clip.fps == fps and type(clip.fps) is Fraction
    assert psnr_db(clip.frames.numpy(), frames) > 40
    assert notes == ()


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_h264_is_tagged_bt601_limited(tmp_path, ext):
    write(tmp_path / f"out.{ext}", gradient_frames(2, 16, 16))
    with av.open(str(tmp_path / f"out.{ext}")) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        assert (stream.name, ctx.format.name) == ("h264", "yuv420p")
        assert (int(ctx.color_range), int(ctx.colorspace), int(ctx.color_primaries), int(ctx.color_trc)) == (1, 6, 6, 6)


def test_odd_size_mp4_keeps_its_size(tmp_path):
    frames = gradient_frames(3, 29, 37)
    notes = write(tmp_path / "odd.mp4", frames)
    clip = read_video(tmp_path / "odd.mp4")
    assert (clip.n_frames, clip.height, clip.width) == (3, 29, 37)
    assert psnr_db(clip.frames.numpy(), frames) > 40
    assert len(notes) == 1 and "4:4:4" in notes[0]


def test_crf_overrides_quality(tmp_path):
    texture = random_frames(3, 48, 64)[:, :1] // 8  # grey noise: luma detail that 4:2:0 keeps
    frames = gradient_frames(3, 48, 64) // 2 + texture
    write(tmp_path / "fine.mp4", frames)
    write(tmp_path / "coarse.mp4", frames, crf=40)
    fine, coarse = (read_video(tmp_path / f"{name}.mp4").frames.numpy() for name in ("fine", "coarse"))
    assert psnr_db(fine, frames) > psnr_db(coarse, frames) + 5
    assert (tmp_path / "coarse.mp4").stat().st_size < (tmp_path / "fine.mp4").stat().st_size


@pytest.mark.parametrize("crf", [-1, 52, 1.5])
def test_bad_crf(tmp_path, crf):
    with pytest.raises(BadInputError, match="CRF"):
        open_video_writer(tmp_path / "out.mp4", width=16, height=16, fps=Fraction(25), crf=crf)
    assert os.listdir(tmp_path) == []


def test_mkv_notes_a_rate_it_cannot_state(tmp_path):
    notes = write(tmp_path / "out.mkv", gradient_frames(3, 16, 16), fps=Fraction(60000, 1001))
    assert any("cannot state 60000/1001 fps exactly" in note for note in notes)
    assert write(tmp_path / "out.mp4", gradient_frames(3, 16, 16), fps=Fraction(60000, 1001)) == ()


def test_streams_batches_from_tensors(tmp_path):
    frames = torch.from_numpy(gradient_frames(7, 16, 24))
    with open_video_writer(tmp_path / "out.mkv", width=24, height=16, fps=Fraction(25)) as writer:
        for start in range(0, 7, 3):
            writer.write(frames[start:start + 3])
        assert writer.frames_written == 7
        assert not (tmp_path / "out.mkv").exists()  # only the temporary file exists until close
    assert read_video(tmp_path / "out.mkv").n_frames == 7


# ---------------------------------------------------------------------------------------------
# PNG patterns


def test_png_pattern_writes_exact_numbered_files(tmp_path):
    frames = random_frames(3, 5, 7)
    write(tmp_path / "f_%04d.png", frames)
    assert sorted(os.listdir(tmp_path)) == ["f_0001.png", "f_0002.png", "f_0003.png"]
    for index, frame in enumerate(frames):
        image = np.asarray(Image.open(tmp_path / f"f_{index + 1:04d}.png"))
        assert image.shape == (5, 7, 3) and np.array_equal(image, frame.transpose(1, 2, 0))


def test_png_frame_path():
    assert png_frame_path("out/frame_%05d.png", 1) == Path("out/frame_00001.png")
    assert png_frame_path("x%d.png", 123) == Path("x123.png")


# ---------------------------------------------------------------------------------------------
# Audio on outputs that cannot hold it


@pytest.mark.parametrize("name, note", [("out.y4m", "y4m holds no audio: audio dropped"),
                                        ("f%03d.png", "PNG images hold no audio: audio dropped")])
def test_audio_dropped_with_a_note(tmp_path, name, note):
    assert write(tmp_path / name, random_frames(1, 4, 4), audio=dummy_audio()) == (note,)


# ---------------------------------------------------------------------------------------------
# Output safety


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "out.y4m", "f_%03d.png"])
def test_failure_mid_write_leaves_target_untouched(tmp_path, name):
    target = png_frame_path(tmp_path / name, 1) if "%" in name else tmp_path / name
    target.write_bytes(b"precious")
    with pytest.raises(RuntimeError, match="boom"):
        with open_video_writer(tmp_path / name, width=16, height=16, fps=Fraction(25)) as writer:
            writer.write(gradient_frames(3, 16, 16))
            raise RuntimeError("boom")
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == [target.name]


def test_shape_mismatch_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="16, 24"):
        with open_video_writer(tmp_path / "out.mp4", width=24, height=16, fps=Fraction(25)) as writer:
            writer.write(random_frames(1, 16, 24))
            writer.write(random_frames(1, 16, 23))
    with pytest.raises(ValueError, match="uint8"):
        with open_video_writer(tmp_path / "out.y4m", width=4, height=4, fps=Fraction(25)) as writer:
            writer.write(np.zeros((1, 3, 4, 4), np.float32))
    assert os.listdir(tmp_path) == []


def test_closing_without_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        with open_video_writer(tmp_path / "out.mp4", width=16, height=16, fps=Fraction(25)):
            pass
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["out.avi", "out", "frames_%05d.jpg", "out.MOV"])
def test_unsupported_output(tmp_path, name):
    with pytest.raises(BadInputError, match=r"\.mp4, \.mkv, \.y4m, or a PNG pattern"):
        open_video_writer(tmp_path / name, width=16, height=16, fps=Fraction(25))
    with pytest.raises(BadInputError, match="must be"):
        check_can_write(tmp_path / name, True, [])


def test_extension_is_case_insensitive(tmp_path):
    write(tmp_path / "OUT.MKV", gradient_frames(1, 16, 16))
    assert read_video(tmp_path / "OUT.MKV").n_frames == 1


def test_check_can_write(tmp_path):
    source = tmp_path / "in.mp4"
    source.write_bytes(b"video")
    check_can_write(tmp_path / "new.mkv", False, [source])
    with pytest.raises(BadInputError, match=r"in.mp4 exists: pass -y to overwrite it"):
        check_can_write(source, False, [])
    check_can_write(source, True, [])
    with pytest.raises(BadInputError, match="over the input"):
        check_can_write(source, True, [str(source)])
    (tmp_path / "link.mp4").symlink_to(source)
    with pytest.raises(BadInputError, match="over the input"):
        check_can_write(tmp_path / "link.mp4", True, [source])
    with pytest.raises(BadInputError, match="does not exist"):
        check_can_write(tmp_path / "missing" / "out.mp4", True, [])
    (tmp_path / "f_001.png").write_bytes(b"png")
    with pytest.raises(BadInputError, match="f_001.png exists"):
        check_can_write(tmp_path / "f_%03d.png", False, [])
    check_can_write(tmp_path / "g_%03d.png", False, [])
