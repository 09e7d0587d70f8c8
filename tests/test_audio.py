"""Tests for audio: reading a track as packets, trimming it, muxing it back, re-encoding for MP4.

Clips with a 440 Hz tone are written in code (AAC in MP4, PCM in MKV), 2 s long at a few pixels,
so each test takes a fraction of a second; one test uses the real Big Buck Bunny clip when present.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cnervcodec import audio
from cnervcodec.audio import mux_audio_stream, read_audio_track, track_seconds
from cnervcodec.errors import BadInputError
from cnervcodec.video_io import FrameSelection, read_video
from cnervcodec.video_out import open_video_writer

SAMPLE_RATE = 48000
SECONDS = 2
FPS = 25
BIG_BUCK_BUNNY = Path(__file__).resolve().parents[2] / "shared" / "clips" / "bigbuckbunny_720p.mp4"


def write_clip(path: Path, audio_codec: str | None, container_format: str | None = None) -> Path:
    """A 2 s clip: 32x32 H.264 at 25 fps plus, unless ``audio_codec`` is None, a stereo tone."""
    with av.open(str(path), "w", format=container_format) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = None
        if audio_codec is not None:
            sound = container.add_stream(audio_codec, rate=SAMPLE_RATE)
            sound.layout = "stereo"
        for index in range(SECONDS * FPS):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 4 * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SECONDS * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
            for start in range(0, tone.size, 1000):
                chunk = np.repeat(tone[None, start:start + 1000], 2, axis=0)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = SAMPLE_RATE, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio_clips")
    return {
        "aac": write_clip(folder / "aac.mp4", "aac"),
        "pcm": write_clip(folder / "pcm.mkv", "pcm_s16le", "matroska"),
        "silent": write_clip(folder / "silent.mp4", None),
    }


def write_with_audio(path: Path, track, n_frames: int = SECONDS * FPS) -> tuple[str, ...]:
    with open_video_writer(path, width=32, height=32, fps=Fraction(FPS), audio=track) as writer:
        for index in range(n_frames):
            writer.write(np.full((1, 3, 32, 32), index, np.uint8))
    return writer.notes


def audio_stream_facts(path: Path) -> tuple[str, int, str, float]:
    """(codec, sample rate, layout, seconds) of a file's first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        return ctx.codec.canonical_name, ctx.sample_rate, ctx.layout.name, seconds


# ---------------------------------------------------------------------------------------------
# Reading


def test_reads_aac_track_as_packets(clips):
    track = read_audio_track(clips["aac"])
    assert (track.codec, track.sample_rate, track.channels, track.layout) == ("aac", SAMPLE_RATE, 2, "stereo")
    assert track.sample_format == "fltp" and track.time_base == Fraction(1, SAMPLE_RATE)
    assert track.extradata and track.bit_rate > 0
    assert track.packets[0].pts == 0
    assert all(b.pts == a.pts + a.duration for a, b in zip(track.packets, track.packets[1:]))
    assert abs(track_seconds(track) - SECONDS) <= Fraction(1024, SAMPLE_RATE)


def test_file_without_audio_gives_none(clips):
    assert read_audio_track(clips["silent"]) is None


def test_unreadable_file_is_bad_input(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(BadInputError, match="junk.mp4"):
        read_audio_track(tmp_path / "junk.mp4")


def test_trim_keeps_the_packets_overlapping_the_range(clips):
    whole = read_audio_track(clips["aac"])
    # Frames 10..34 of the 25 fps video (start 10, 25 frames): 0.4 s to 1.4 s.
    trimmed = read_audio_track(clips["aac"], start_seconds=Fraction(10, FPS), duration_seconds=Fraction(25, FPS))
    start_tick, end_tick = 0.4 * SAMPLE_RATE, 1.4 * SAMPLE_RATE
    expected = [p for p in whole.packets if p.pts + p.duration > start_tick and p.pts < end_tick]
    assert [p.data for p in trimmed.packets] == [p.data for p in expected]
    assert trimmed.packets[0].pts == 0
    assert 1 <= track_seconds(trimmed) <= 1 + Fraction(2 * 1024, SAMPLE_RATE)


def test_cutting_a_carried_track_keeps_what_reading_that_range_keeps(clips):
    """``decode --start K --frames N`` cuts the stream's audio by the rule the encoder read it by."""
    whole = read_audio_track(clips["aac"])
    start_s, duration_s = Fraction(10, FPS), Fraction(25, FPS)
    cut = audio.cut_track(whole, start_s, duration_s)
    read = read_audio_track(clips["aac"], start_seconds=start_s, duration_seconds=duration_s)
    assert [p.data for p in cut.packets] == [p.data for p in read.packets]
    assert [p.pts for p in cut.packets] == [p.pts - read.packets[0].pts for p in read.packets]
    assert cut.packets[0].pts == 0 and cut.codec == whole.codec
    assert audio.cut_track(whole, Fraction(SECONDS + 1), Fraction(1)) is None
    assert audio.cut_track(None, Fraction(0), Fraction(1)) is None


def test_range_past_the_audio_gives_none(clips):
    assert read_audio_track(clips["aac"], start_seconds=Fraction(SECONDS + 1)) is None


def test_oversized_audio_is_refused(clips, monkeypatch):
    monkeypatch.setattr(audio, "MAX_AUDIO_BYTES", 1000)
    with pytest.raises(BadInputError, match="MiB"):
        read_audio_track(clips["aac"])


# ---------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_aac_is_copied_unchanged(clips, tmp_path, ext):
    track = read_audio_track(clips["aac"])
    assert write_with_audio(tmp_path / f"out.{ext}", track) == ()
    codec, rate, layout, seconds = audio_stream_facts(tmp_path / f"out.{ext}")
    assert (codec, rate, layout) == ("aac", SAMPLE_RATE, "stereo")
    assert abs(seconds - SECONDS) < 0.05
    back = read_audio_track(tmp_path / f"out.{ext}")
    assert [p.data for p in back.packets] == [p.data for p in track.packets]
    assert read_video(tmp_path / f"out.{ext}").n_frames == SECONDS * FPS


def test_pcm_into_mp4_is_reencoded_with_a_note(clips, tmp_path):
    track = read_audio_track(clips["pcm"])
    assert track.codec == "pcm_s16le"
    notes = write_with_audio(tmp_path / "out.mp4", track)
    assert notes == ("audio pcm_s16le cannot go into MP4: re-encoded to AAC 128 kb/s; use .mkv to keep it unchanged",)
    codec, rate, layout, seconds = audio_stream_facts(tmp_path / "out.mp4")
    assert (codec, rate, layout) == ("aac", SAMPLE_RATE, "stereo")
    assert abs(seconds - SECONDS) < 0.05
    with av.open(str(tmp_path / "out.mp4")) as container:
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
    assert 0.25 < np.abs(samples[:, 4096:-4096]).max() < 0.35  # the tone survived, at its level


def test_pcm_into_mkv_is_copied_unchanged(clips, tmp_path):
    track = read_audio_track(clips["pcm"])
    assert write_with_audio(tmp_path / "out.mkv", track) == ()
    back = read_audio_track(tmp_path / "out.mkv")
    assert back.codec == "pcm_s16le" and back.sample_rate == SAMPLE_RATE and back.channels == 2
    assert [p.data for p in back.packets] == [p.data for p in track.packets]


def test_mux_audio_stream_alone(clips, tmp_path):
    track = read_audio_track(clips["aac"])
    with av.open(str(tmp_path / "sound.mkv"), "w", format="matroska") as container:
        assert mux_audio_stream(container, track, container_format="matroska") is None
    assert [p.data for p in read_audio_track(tmp_path / "sound.mkv").packets] == [p.data for p in track.packets]


@pytest.mark.skipif(not BIG_BUCK_BUNNY.is_file(), reason="shared clips folder absent")
def test_big_buck_bunny_audio_survives(tmp_path):
    n_frames = 10
    clip = read_video(BIG_BUCK_BUNNY, select=FrameSelection(start=25, frames=n_frames), scale=(160, 90))
    track = read_audio_track(BIG_BUCK_BUNNY, start_seconds=Fraction(25) / clip.source_fps,
                             duration_seconds=n_frames / clip.source_fps)
    assert (track.codec, track.channels, track.sample_rate) == ("aac", 6, 48000)
    with open_video_writer(tmp_path / "bbb.mp4", width=160, height=90, fps=clip.fps, audio=track) as writer:
        writer.write(clip.frames)
    assert writer.notes == ()
    codec, rate, layout, seconds = audio_stream_facts(tmp_path / "bbb.mp4")
    assert (codec, rate, layout) == ("aac", 48000, "5.1")
    assert 0.4 <= seconds <= 0.4 + 2 * 1024 / 48000
    assert read_video(tmp_path / "bbb.mp4").n_frames == n_frames
