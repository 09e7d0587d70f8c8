"""Half-precision decode (``decode --half``): a few 8-bit levels from the exact float32 frames, which it
leaves untouched (the default decode stays bit for bit)."""

import json
from fractions import Fraction

import pytest
import torch

from cnervcodec.codec import EncodeSettings, decode, encode, open_stream, render_frames
from cnervcodec.config import CompressionConfig, FitConfig, build_model_config
from cnervcodec.model import half_dtype

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def stream():
    from conftest import moving_scene

    frames = moving_scene(n_frames=4)
    settings = EncodeSettings(model=build_model_config("cnerv", "S", frames.shape[2], frames.shape[3]),
                              fit=FitConfig(epochs=15, batch=2), compression=CompressionConfig())
    return encode(frames, Fraction(25), settings, CPU).data


def test_half_frames_are_within_a_few_levels_of_float32(stream):
    exact = decode(stream)
    half = decode(stream, half=True)
    assert half.dtype == torch.uint8 and half.shape == exact.shape
    diff = (half.int() - exact.int()).abs()
    assert diff.max() <= 6 and diff.float().mean() < 0.5


def test_a_half_decode_leaves_the_streams_decoder_in_float32(stream):
    network = open_stream(stream)
    exact = torch.cat(list(render_frames(network, CPU)))
    half = torch.cat(list(render_frames(network, CPU, half=True, start=1, count=2)))
    assert next(network.decoder.parameters()).dtype == torch.float32
    assert torch.equal(torch.cat(list(render_frames(network, CPU))), exact)
    assert (half.int() - exact[1:3].int()).abs().max() <= 6
    interpolated = torch.cat(list(render_frames(network, CPU, half=True, interpolate=2)))
    assert interpolated.shape[0] == 2 * exact.shape[0]


def test_half_types_per_device():
    assert half_dtype(torch.device("cuda")) == torch.float16
    assert half_dtype(CPU) == torch.bfloat16


def test_cli_decode_half(stream, tmp_path, capsys):
    from conftest import run_cnerv
    from cnervcodec.video_io import read_video

    path = tmp_path / "s.cnrv"
    path.write_bytes(stream)
    out = tmp_path / "s.y4m"
    code, stdout, _ = run_cnerv(capsys, "decode", str(path), "-o", str(out), "--half", "--device", "cpu", "--json")
    report = json.loads(stdout)
    assert code == 0 and report["frames"] == 4 and report["half"] == "bfloat16"
    frames = read_video(out).frames
    assert (frames.int() - decode(stream).int()).abs().max() <= 6
