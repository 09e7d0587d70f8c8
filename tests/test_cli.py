"""End-to-end checks of the cnerv command: JSON output, one-line errors, exit codes, -y."""

import json
from pathlib import Path

from conftest import cnerv

DATA = Path(__file__).resolve().parent / "data"


def test_fit_json_on_the_shipped_clip(tmp_path):
    model = tmp_path / "m.safetensors"
    out = cnerv("fit", str(DATA / "carphone_qcif.mp4"), "--frames", "10", "--scale", "88x72", "--epochs", "3",
                "--holdout", "5", "--json", "-q", "-o", str(model))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in ("arch", "params", "epochs", "fit_seconds", "train_fps", "seen", "unseen"):
        assert key in report
    assert report["seen"]["frames"] == 8 and report["unseen"]["frames"] == 2
    assert set(report["seen"]) >= {"frames", "psnr", "psnr_yuv", "ms_ssim"}
    assert model.exists() and not Path(str(model) + ".ckpt").exists()
    again = cnerv("fit", str(DATA / "carphone_qcif.mp4"), "--frames", "4", "--epochs", "1", "-q", "-o", str(model))
    assert again.returncode == 1 and "-y" in again.stderr


def test_fit_without_holdout_reports_null_unseen():
    out = cnerv("fit", str(DATA / "carphone_qcif.mp4"), "--frames", "4", "--scale", "44x36", "--epochs", "1", "--json", "-q")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["unseen"] is None


def test_bad_inputs_give_one_line_and_exit_1(tmp_path):
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(b"not a video" * 10)
    cases = [
        ("fit", str(tmp_path / "missing.mp4")),
        ("fit", str(garbage)),
        ("fit", str(DATA / "carphone_qcif.mp4"), "--scale", "abc"),
        ("fit", str(DATA / "carphone_qcif.mp4"), "--start", "500"),
        ("fit", str(DATA / "carphone_qcif.mp4"), "--fps", "zero"),
        ("metrics", str(DATA / "carphone_qcif.mp4"), str(tmp_path / "missing.y4m")),
    ]
    for args in cases:
        out = cnerv(*args)
        assert out.returncode == 1, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr


def test_usage_error_exits_2():
    assert cnerv("fit").returncode == 2
    assert cnerv("fit", "x.mp4", "--arch", "vit").returncode == 2


def test_metrics_identical_clip(tmp_path):
    clip = str(DATA / "carphone_qcif.mp4")
    out = cnerv("metrics", clip, clip, "--frames", "3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["frames"] == 3 and data["psnr"] == 100.0 and len(data["per_frame_psnr"]) == 3


def test_help_lists_sizes_and_examples():
    out = cnerv("fit", "--help")
    assert out.returncode == 0 and "Examples" in out.stdout and "params at 176x144" in out.stdout
