"""stream_video yields, frame by frame, exactly what read_video returns, with the same errors."""

from pathlib import Path

import pytest
import torch

from cnervcodec.errors import BadInputError
from cnervcodec.video_io import FrameSelection, read_video
from cnervcodec.video_stream import stream_video

DATA = Path(__file__).parent / "data"
CLIP = DATA / "carphone_qcif.mp4"


@pytest.mark.parametrize("select, scale", [(FrameSelection(frames=5), None),
                                           (FrameSelection(start=3, frames=4, step=7), None),
                                           (FrameSelection(start=2, frames=3, step=2), (88, 72))])
def test_frames_and_planes_are_read_videos(select, scale):
    clip = read_video(CLIP, select=select, scale=scale)
    streamed = list(stream_video(CLIP, select=select, scale=scale, native_planes=True))
    assert len(streamed) == clip.n_frames
    for t, (frame, planes) in enumerate(streamed):
        assert frame.is_contiguous() and torch.equal(frame, clip.frames[t])
        assert all(torch.equal(p, clip_p[t]) for p, clip_p in zip(planes, clip.planes))
    assert all(planes is None for _, planes in stream_video(CLIP, select=select, scale=scale))


def test_errors_are_read_videos(tmp_path):
    for select in (FrameSelection(start=10_000), FrameSelection(frames=10_000)):
        with pytest.raises(BadInputError) as expected:
            read_video(CLIP, select=select)
        with pytest.raises(BadInputError) as got:
            list(stream_video(CLIP, select=select))
        assert str(got.value) == str(expected.value)
    with pytest.raises(BadInputError, match="does not exist"):
        next(stream_video(tmp_path / "missing.mp4"))
    with pytest.raises(BadInputError, match="cannot scale"):
        next(stream_video(CLIP, scale=(1000, 1000)))
