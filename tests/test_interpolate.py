"""Frame-rate up-conversion from interpolated embeddings: the blends, then ``cnerv decode --interpolate``."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import run_cnerv

from cnervcodec.config import INTERPOLATION_MODES, MAX_INTERPOLATE
from cnervcodec.codec import EncodeSettings, decoding_network, encode, render_frames
from cnervcodec.interpolate import between_embeddings, check_interpolation, interpolate_embeddings
from cnervcodec.tensor_coding import compress_tensor
from cnervcodec.model import render_latents
from cnervcodec.config import CompressionConfig, EmbeddingConfig, FitConfig, ModelConfig
from cnervcodec.format.stream import Container, StreamHeader, read_container, write_container
from cnervcodec.errors import BadInputError

CPU = torch.device("cpu")
FPS = Fraction(30000, 1001)


def unit_pair() -> torch.Tensor:
    """(2, 2, 1, 1): frame 0 is the x axis, frame 1 the y axis (one block of d = 2)."""
    embeddings = torch.zeros(2, 2, 1, 1)
    embeddings[0, 0] = embeddings[1, 1] = 1.0
    return embeddings


# ---------------------------------------------------------------------------------------------
# The blends


@pytest.mark.parametrize("mode", INTERPOLATION_MODES)
@pytest.mark.parametrize("n", [1, 2, 3, 16])
def test_shape_coded_frames_exact_and_last_frame_held(mode, n):
    embeddings = torch.randn(5, 6, 2, 3, generator=torch.Generator().manual_seed(n))
    out = interpolate_embeddings(embeddings, n, mode)
    assert out.shape == (5 * n, 6, 2, 3) and out.dtype == embeddings.dtype
    # a = 0 of each pair and a = 1 of the pair before are the coded embedding itself, bit for bit
    assert torch.equal(out[::n], embeddings)
    assert all(torch.equal(row, embeddings[-1]) for row in out[4 * n :])


def test_linear_is_the_weighted_mean():
    embeddings = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    out = interpolate_embeddings(embeddings, 2, "linear")
    torch.testing.assert_close(out[1], (embeddings[0] + embeddings[1]) / 2)
    torch.testing.assert_close(out[3], (embeddings[1] + embeddings[2]) / 2)
    thirds = interpolate_embeddings(embeddings, 3, "linear")
    torch.testing.assert_close(thirds[2], embeddings[0] / 3 + embeddings[1] * 2 / 3)


def test_slerp_of_orthogonal_unit_vectors_stays_on_the_circle():
    mid = interpolate_embeddings(unit_pair(), 2, "slerp")[1, :, 0, 0]
    assert mid.norm().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(mid, torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    thirds = interpolate_embeddings(unit_pair(), 3, "slerp")[:3, :, 0, 0]
    angles_deg = [math.degrees(math.atan2(v[1].item(), v[0].item())) for v in thirds]
    assert angles_deg == pytest.approx([0.0, 30.0, 60.0], abs=1e-4)
    assert torch.allclose(thirds.norm(dim=1), torch.ones(3))
    linear_mid = interpolate_embeddings(unit_pair(), 2, "linear")[1, :, 0, 0]
    assert linear_mid.norm().item() == pytest.approx(math.sqrt(0.5), abs=1e-6)  # what slerp avoids


def test_slerp_blends_each_block_over_d_with_a_linear_norm():
    embeddings = torch.zeros(2, 3, 1, 2)  # two blocks, d = 3
    embeddings[0, :, 0, 0] = torch.tensor([2.0, 0, 0])
    embeddings[1, :, 0, 0] = torch.tensor([0, 4.0, 0])
    embeddings[0, :, 0, 1] = torch.tensor([0, 0, 1.0])
    embeddings[1, :, 0, 1] = torch.tensor([1.0, 0, 0])
    mid = interpolate_embeddings(embeddings, 2, "slerp")[1]
    torch.testing.assert_close(mid[:, 0, 0], 3.0 * torch.tensor([math.sqrt(0.5), math.sqrt(0.5), 0]))
    torch.testing.assert_close(mid[:, 0, 1], torch.tensor([math.sqrt(0.5), 0, math.sqrt(0.5)]))


@pytest.mark.parametrize("factor", [2.5, -1.5])  # parallel and opposite
def test_slerp_of_parallel_vectors_is_linear(factor):
    embeddings = torch.randn(2, 8, 2, 3, generator=torch.Generator().manual_seed(1))
    embeddings[1] = factor * embeddings[0]
    slerp = interpolate_embeddings(embeddings, 4, "slerp")
    assert torch.equal(slerp, interpolate_embeddings(embeddings, 4, "linear"))


def test_slerp_with_zero_vectors_is_finite_and_linear_there():
    embeddings = torch.randn(3, 8, 2, 2, generator=torch.Generator().manual_seed(2))
    embeddings[1] = 0.0  # whole frame zero
    embeddings[2, :, 0, 0] = 0.0  # one block zero in both of the last two frames
    slerp = interpolate_embeddings(embeddings, 5, "slerp")
    assert torch.isfinite(slerp).all()
    torch.testing.assert_close(slerp, interpolate_embeddings(embeddings, 5, "linear"))


@pytest.mark.parametrize("n", [0, -1, MAX_INTERPOLATE + 1, 2.0, True, "2"])
def test_bad_factor_is_refused(n):
    with pytest.raises(BadInputError, match="interpolation factor"):
        interpolate_embeddings(torch.zeros(2, 2, 1, 1), n, "linear")


def test_bad_mode_and_nerv_streams_are_refused():
    with pytest.raises(BadInputError, match="linear or slerp"):
        interpolate_embeddings(torch.zeros(2, 2, 1, 1), 2, "cubic")
    with pytest.raises(BadInputError, match="nerv stream"):
        check_interpolation(2, "linear", "nerv")
    check_interpolation(1, "linear", "nerv")  # off: nothing to refuse


def test_cli_limits_are_the_codec_limits():
    from cnervcodec.cli.codec import decode_command

    options = {p.name: p for p in decode_command.params}
    assert options["interpolate"].type.max == MAX_INTERPOLATE
    assert tuple(options["interp"].type.choices) == INTERPOLATION_MODES


# ---------------------------------------------------------------------------------------------
# Rendering and the CLI, on a tiny clip fitted for a few epochs


def tiny_settings(height: int, width: int, arch: str = "cnerv") -> EncodeSettings:
    model = ModelConfig(arch=arch, height=height, width=width, embedding=EmbeddingConfig(grid=(2, 2), dim=8),
                        widths=(16, 12, 8, 8, 8), nerv_hidden=4 if arch == "nerv" else 0)
    return EncodeSettings(model=model, fit=FitConfig(epochs=3), compression=CompressionConfig(weight_bits=6))


@pytest.fixture(scope="module")
def cnrv(tmp_path_factory):
    from conftest import moving_scene

    frames = moving_scene(n_frames=5, height=32, width=48)
    result = encode(frames, FPS, tiny_settings(32, 48), CPU)
    path = tmp_path_factory.mktemp("interp") / "tiny.cnrv"
    path.write_bytes(result.data)
    return path


@pytest.mark.parametrize("mode", INTERPOLATION_MODES)
def test_streamed_render_matches_the_whole_sequence(cnrv, mode):
    """Batches of 2 coded frames: the blends cross batch edges; coded frames equal the plain decode."""
    network = decoding_network(read_container(cnrv.read_bytes()))
    plain = torch.cat(list(render_frames(network, CPU, batch=2)))
    pieces = list(render_frames(network, CPU, batch=2, interpolate=3, mode=mode))
    assert [p.shape[0] for p in pieces] == [3] * 5
    streamed = torch.cat(pieces)
    assert torch.equal(streamed[::3], plain)
    whole = torch.cat(list(render_latents(network.decoder, interpolate_embeddings(network.latents, 3, mode), 32, 48,
                                          CPU, batch=4)))
    # Same latents, other batches: float results may differ by a rounding level at most.
    assert (streamed.short() - whole.short()).abs().max() <= 1


def test_decode_interpolate_2_doubles_frames_and_rate(cnrv, tmp_path, capsys):
    from cnervcodec.video_io import read_video

    plain_path, double_path = tmp_path / "plain.y4m", tmp_path / "double.y4m"
    assert run_cnerv(capsys, "decode", str(cnrv), "-o", str(plain_path))[0] == 0
    code, out, err = run_cnerv(capsys, "decode", str(cnrv), "-o", str(double_path), "--interpolate", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["frames"], report["source_frames"], report["interpolate"]) == (10, 5, 2)
    assert report["fps"] == "60000/1001" and report["decode_seconds"] > 0
    plain, double = read_video(plain_path), read_video(double_path)
    assert double.n_frames == 10 and double.fps == 2 * FPS == 2 * plain.fps
    assert torch.equal(double.frames[::2], plain.frames)  # coded frames: the plain decode, bit for bit
    assert torch.equal(double.frames[-1], plain.frames[-1])  # the last frame held
    assert not torch.equal(double.frames[1], double.frames[0])  # a real in-between frame

    code, out, _ = run_cnerv(capsys, "decode", str(cnrv), "-o", str(tmp_path / "d2.y4m"), "--interpolate", "2")
    assert code == 0 and "held" in out and "5 coded frames x 2" in out


def test_decode_interpolate_3_slerp(cnrv, tmp_path, capsys):
    from cnervcodec.video_io import read_video

    output = tmp_path / "triple.y4m"
    code, out, err = run_cnerv(capsys, "decode", str(cnrv), "-o", str(output), "--interpolate", "3",
                               "--interp", "slerp", "--batch", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["interp"] == "slerp"
    clip = read_video(output)
    assert clip.n_frames == 15 and clip.fps == 3 * FPS
    assert torch.equal(clip.frames[-3], clip.frames[-1]) and torch.equal(clip.frames[-2], clip.frames[-1])


@pytest.mark.parametrize("args", [["--interpolate", "0"], ["--interpolate", str(MAX_INTERPOLATE + 1)],
                                  ["--interpolate", "2", "--interp", "cubic"]])
def test_bad_interpolate_options_are_usage_errors(cnrv, tmp_path, capsys, args):
    output = tmp_path / "x.y4m"
    code, _, err = run_cnerv(capsys, "decode", str(cnrv), "-o", str(output), *args)
    assert code == 2 and "--interp" in err and not output.exists()


def test_nerv_stream_refuses_interpolation(tmp_path, capsys):
    from cnervcodec.model import Decoder, bitstream_tensors

    settings = tiny_settings(32, 48, arch="nerv")
    records = tuple(compress_tensor(t.detach().numpy(), 6, 0) for _, t in bitstream_tensors(Decoder(settings.model)))
    header = StreamHeader(model=settings.model, n_frames=3, fps=FPS)
    path = tmp_path / "nerv.cnrv"
    path.write_bytes(write_container(Container(header=header, decoder=records, embeddings=None)))
    output = tmp_path / "n.y4m"
    code, _, err = run_cnerv(capsys, "decode", str(path), "-o", str(output), "--interpolate", "2")
    assert code == 1 and "cannot interpolate a nerv stream" in err and not output.exists()
    code, _, err = run_cnerv(capsys, "decode", str(path), "-o", str(output))  # a valid stream, not a corrupt one
    assert code == 1 and "holds a NeRV network" in err and not output.exists()


def test_between_embeddings_is_the_in_between_rows():
    embeddings = torch.randn(4, 3, 1, 2, generator=torch.Generator().manual_seed(3))
    between = between_embeddings(embeddings, 4, "slerp")
    assert between.shape == (3, 3, 3, 1, 2)
    whole = interpolate_embeddings(embeddings, 4, "slerp").view(4, 4, 3, 1, 2)
    assert torch.equal(whole[:-1, 1:], between)
    np.testing.assert_array_equal(whole[:, 0].numpy(), embeddings.numpy())


# ---------------------------------------------------------------------------------------------
# Random access from the command line: decode --start K --frames N


def test_decode_a_frame_range_gives_exactly_those_frames(cnrv, tmp_path, capsys):
    from cnervcodec.video_io import read_video

    full_path, part_path, tail_path = tmp_path / "full.y4m", tmp_path / "part.y4m", tmp_path / "tail.y4m"
    assert run_cnerv(capsys, "decode", str(cnrv), "-o", str(full_path))[0] == 0
    code, out, err = run_cnerv(capsys, "decode", str(cnrv), "-o", str(part_path), "--start", "1", "--frames", "3",
                               "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["frames"], report["start"], report["stream_frames"]) == (3, 1, 5)
    full, part = read_video(full_path), read_video(part_path)
    assert part.fps == full.fps == FPS
    assert torch.equal(part.frames, full.frames[1:4])
    code, out, _ = run_cnerv(capsys, "decode", str(cnrv), "-o", str(tail_path), "--start", "4")
    assert code == 0 and "frames 4..4 of 5" in out
    assert torch.equal(read_video(tail_path).frames, full.frames[4:])


@pytest.mark.parametrize("args, message", [(["--start", "5"], "--start 5 is outside"),
                                           (["--start", "2", "--frames", "4"], "runs past")])
def test_a_range_past_the_end_is_refused(cnrv, tmp_path, capsys, args, message):
    output = tmp_path / "x.y4m"
    code, _, err = run_cnerv(capsys, "decode", str(cnrv), "-o", str(output), *args)
    assert code == 1 and message in err and not output.exists()


def test_a_range_can_be_interpolated(cnrv, tmp_path, capsys):
    from cnervcodec.video_io import read_video

    full_path, part_path = tmp_path / "full.y4m", tmp_path / "part.y4m"
    assert run_cnerv(capsys, "decode", str(cnrv), "-o", str(full_path), "--interpolate", "2")[0] == 0
    code, out, err = run_cnerv(capsys, "decode", str(cnrv), "-o", str(part_path), "--interpolate", "2",
                               "--start", "1", "--frames", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["frames"] == 4
    full, part = read_video(full_path), read_video(part_path)
    assert torch.equal(part.frames[::2], full.frames[2:6:2])  # coded frames 1 and 2, bit for bit
    assert (part.frames.short() - full.frames[2:6].short()).abs().max() <= 1  # the blends towards 2 and 3
