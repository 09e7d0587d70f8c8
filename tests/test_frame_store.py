"""Long clips in bounded memory: the on-disk frame store, spilling reads, and fits that stream from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnervcodec.config import FitConfig, build_model_config
from cnervcodec.fit import fit, fitted_embeddings
from cnervcodec.fit_inputs import StreamedInputs, frames_fingerprint
from cnervcodec.embedding import network_inputs
from cnervcodec.frame_store import FrameFile, FrameView, SpillingStack, batches, is_store, materialize, take
from cnervcodec.stream_scoring import score_sample
from cnervcodec.video_frames import FrameStack
from cnervcodec.video_io import FrameSelection, read_video
from tests.conftest import cnerv, moving_scene

CLIP = Path(__file__).parent / "data" / "carphone_qcif.mp4"


def _store(frames: torch.Tensor, directory=None) -> FrameFile:
    store = FrameFile(frames.shape[1:], directory)
    for start in range(0, frames.shape[0], 3):
        store.append(frames[start : start + 3])
    return store


def test_frame_file_reads_back_what_was_written_by_int_slice_and_index(tmp_path: Path) -> None:
    frames = moving_scene(10)
    store = _store(frames, tmp_path)
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing is left behind
    assert store.shape == frames.shape and len(store) == 10 and store.dtype == torch.uint8 and store.dim() == 4
    assert torch.equal(store[3], frames[3]) and torch.equal(store[-1], frames[-1])
    assert torch.equal(store[2:7], frames[2:7]) and torch.equal(store[1:9:3], frames[1:9:3])
    index = torch.tensor([9, 0, 4, 4])
    assert torch.equal(store[index], frames[index])
    assert store[5:5].shape == (0, 3, 36, 52)
    with pytest.raises(IndexError):
        store[10]
    with pytest.raises(IndexError):
        store[torch.tensor([0, 11])]
    with pytest.raises(ValueError):
        store.append(torch.zeros(3, 5, 5, dtype=torch.uint8))


def test_take_is_lazy_for_a_store_and_plain_indexing_for_a_tensor() -> None:
    frames = moving_scene(8)
    store = _store(frames)
    index = torch.tensor([1, 5, 6])
    view = take(store, index)
    assert isinstance(view, FrameView) and is_store(view) and view.shape == (3, 3, 36, 52)
    assert torch.equal(view[0:3], frames[index]) and torch.equal(view[2], frames[6])
    assert torch.equal(take(frames, index), frames[index])
    assert torch.equal(materialize(store), frames)
    assert torch.equal(torch.cat([b for _, b in batches(store, 3)]), frames)


def test_spilling_stack_moves_to_disk_past_its_budget() -> None:
    frames = moving_scene(6)
    small = SpillingStack(FrameStack(6), memory_bytes=10**9)
    spilled = SpillingStack(FrameStack(6), memory_bytes=3 * frames[0].numel())
    for frame in frames:
        small.append(frame)
        spilled.append(frame)
    assert isinstance(small.result(), torch.Tensor)
    assert isinstance(spilled.result(), FrameFile) and torch.equal(spilled.result()[0:6], frames)


def test_read_video_streams_frames_and_planes_unchanged() -> None:
    select = FrameSelection(frames=20)
    held = read_video(CLIP, select=select)
    streamed = read_video(CLIP, select=select, memory_bytes=0)
    assert isinstance(held.frames, torch.Tensor) and is_store(streamed.frames)
    assert torch.equal(materialize(streamed.frames), held.frames)
    assert all(is_store(p) and torch.equal(materialize(p), q) for p, q in zip(streamed.planes, held.planes))
    assert frames_fingerprint(streamed.frames) == frames_fingerprint(held.frames)


def test_streamed_projections_equal_the_cached_ones() -> None:
    frames = moving_scene(37, 48, 64)
    model = build_model_config("cnerv", "S", 48, 64)
    cached = network_inputs("cnerv", model.embedding, model.padded_size, frames)
    streamed = StreamedInputs(_store(frames), model.embedding, model.padded_size, torch.device("cpu"))
    assert streamed.shape == cached.shape
    index = torch.tensor([36, 0, 17, 16, 15])
    assert torch.equal(streamed[index], cached[index]) and torch.equal(streamed[3:30], cached[3:30])


@pytest.mark.parametrize("fit_every", [1, 3])
def test_a_fit_on_a_store_is_the_fit_in_memory(fit_every: int) -> None:
    frames = moving_scene(12)
    model = build_model_config("cnerv", "S", 36, 52)
    config = FitConfig(epochs=2, fit_every=fit_every)
    held = fit(frames, model, config, torch.device("cpu"))
    streamed = fit(_store(frames), model, config, torch.device("cpu"))
    assert all(torch.equal(p, q) for p, q in zip(held.network.parameters(), streamed.network.parameters()))
    assert torch.equal(fitted_embeddings(held), fitted_embeddings(streamed))


def test_rate_search_samples_long_clips_only() -> None:
    assert score_sample(256) is None
    sample = score_sample(20_000)
    assert len(sample) == 256 and int(sample[0]) == 0 and int(sample[-1]) == 19_999
    assert torch.equal(sample, sample.unique())


def test_streamed_encode_writes_the_same_file(tmp_path: Path) -> None:
    args = ["encode", str(CLIP), "--frames", "8", "--preset", "fast", "--json", "-q"]
    held = cnerv(*args, "-o", str(tmp_path / "held.cnrv"))
    streamed = cnerv(*args, "-o", str(tmp_path / "streamed.cnrv"), "--memory-mb", "0", "--cache-dir",
                     str(tmp_path / "cache"))
    assert held.returncode == 0 and streamed.returncode == 0, held.stderr + streamed.stderr
    assert (tmp_path / "held.cnrv").read_bytes() == (tmp_path / "streamed.cnrv").read_bytes()
    assert json.loads(held.stdout)["psnr_yuv"] == json.loads(streamed.stdout)["psnr_yuv"]
    assert list((tmp_path / "cache").iterdir()) == []  # the cache is gone with the command
