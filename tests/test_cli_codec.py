"""cnerv encode / decode / info end to end on the shipped clip: real bytes, reported quality, exit codes."""

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cnerv

DATA = Path(__file__).resolve().parent / "data"
CLIP = str(DATA / "carphone_qcif.mp4")
SELECT = ("--frames", "6", "--scale", "88x72")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    out_path = folder / "c.cnrv"
    out = cnerv("encode", CLIP, "-o", str(out_path), *SELECT, "--epochs", "8", "--json", "-q")
    assert out.returncode == 0, out.stderr
    return out_path, json.loads(out.stdout)


def test_encode_json_counts_every_byte(encoded):
    path, report = encoded
    assert set(report) == {"frames", "width", "height", "fps", "bytes", "bpp", "psnr", "psnr_yuv", "ms_ssim",
                           "encode_seconds", "size", "target_bytes", "target_bpp", "video_bytes", "video_bpp",
                           "off_target", "network", "weight_bits", "embed_bits", "fit_seconds", "train_fps",
                           "rate_aware", "lambda", "final_lambda", "step_scales", "file_bytes", "estimated_bytes",
                           "payload_bytes", "estimated_payload_bytes", "estimate_error"}
    assert report["size"] == "auto"  # no --size: rate control at the default operating point
    assert report["bytes"] == path.stat().st_size == report["video_bytes"]  # no audio: the video part is the file
    assert report["bpp"] == pytest.approx(report["bytes"] * 8 / (6 * 72 * 88))
    assert (report["frames"], report["width"], report["height"], report["fps"]) == (6, 88, 72, "30000/1001")


def test_decode_y4m_measures_what_encode_reported(encoded, tmp_path):
    path, report = encoded
    y4m = tmp_path / "c.y4m"
    out = cnerv("decode", str(path), "-o", str(y4m), "--json")
    assert out.returncode == 0, out.stderr
    decoded = json.loads(out.stdout)
    assert decoded["frames"] == 6 and decoded["fps"] == "30000/1001" and decoded["decode_seconds"] > 0
    metrics = cnerv("metrics", CLIP, str(y4m), "--json", *SELECT)
    assert metrics.returncode == 0, metrics.stderr
    measured = json.loads(metrics.stdout)
    assert abs(measured["psnr"] - report["psnr"]) <= 0.05
    assert abs(measured["psnr_yuv"] - report["psnr_yuv"]) <= 0.05


def test_decode_mp4_restores_size_count_and_rate(encoded, tmp_path):
    from cnervcodec.video_io import read_video

    mp4 = tmp_path / "c.mp4"
    assert cnerv("decode", str(encoded[0]), "-o", str(mp4)).returncode == 0
    clip = read_video(mp4)
    assert (clip.n_frames, clip.width, clip.height) == (6, 88, 72)
    assert str(clip.fps) == "30000/1001"


def test_info_byte_split_sums_to_the_file(encoded):
    path, _ = encoded
    out = cnerv("info", str(path), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["bytes"] == path.stat().st_size
    assert sum(info["split_bytes"].values()) == info["bytes"]
    assert [c["type"] for c in info["chunks"]][0] == "HEAD" and info["chunks"][-1]["type"] == "FEND"
    assert all(c["crc_ok"] for c in info["chunks"])
    human = cnerv("info", str(path))
    assert "chunks" in human.stdout and human.returncode == 0


def test_outputs_are_not_overwritten_without_y(encoded, tmp_path):
    path, _ = encoded
    before = path.read_bytes()
    out = cnerv("encode", CLIP, "-o", str(path), *SELECT, "--epochs", "1", "-q")
    assert out.returncode == 1 and "-y" in out.stderr and path.read_bytes() == before
    target = tmp_path / "d.y4m"
    target.write_bytes(b"keep")
    out = cnerv("decode", str(path), "-o", str(target))
    assert out.returncode == 1 and target.read_bytes() == b"keep"
    out = cnerv("decode", str(path), "-o", str(path))
    assert out.returncode == 1 and path.read_bytes() == before


def one_line(out: subprocess.CompletedProcess) -> bool:
    return len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_damaged_files_exit_3_and_unknown_major_exits_4(encoded, tmp_path):
    data = encoded[0].read_bytes()
    cases = {
        "truncated.cnrv": (data[: len(data) // 2], 3),
        "flipped.cnrv": (data[:200] + bytes([data[200] ^ 0x10]) + data[201:], 3),
        "text.cnrv": (data.replace(b"\r\n", b"\n", 1), 3),
        "major.cnrv": (data[:8] + bytes([9]) + data[9:], 4),
    }
    for name, (content, code) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        for command in ("decode", "info"):
            args = [command, str(bad)] + (["-o", str(tmp_path / f"{name}.y4m")] if command == "decode" else [])
            out = cnerv(*args)
            assert out.returncode == code, (name, command, out.stderr)
            assert one_line(out), out.stderr
            assert not (tmp_path / f"{name}.y4m").exists()


def test_missing_cnrv_exits_1(tmp_path):
    out = cnerv("decode", str(tmp_path / "none.cnrv"), "-o", str(tmp_path / "x.y4m"))
    assert out.returncode == 1 and one_line(out)
