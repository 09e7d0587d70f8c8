"""The Python API (``cnervcodec.__init__``): the README's example runs as written, doctest style, and
each function does what it says, including random access and bad input."""

import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import cnervcodec
from cnervcodec.errors import BadInputError, CorruptContainerError

ROOT = Path(__file__).resolve().parents[1]


def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(readme_python_block(), "README.md", "exec"), namespace)
    data, frames, scores, header = namespace["data"], namespace["frames"], namespace["scores"], namespace["header"]
    assert isinstance(data, bytes) and data.startswith(b"\x89CNV")
    assert frames.shape == (4, 3, 144, 176) and frames.dtype == torch.uint8
    assert header["bytes"] == len(data) and header["frames"] == 4
    assert scores["psnr"] > 10 and len(scores["per_frame_psnr"]) == 4
    assert f"{len(data)} bytes" in capsys.readouterr().out


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import cnervcodec, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'av')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stderr


@pytest.fixture(scope="module")
def stream():
    from conftest import moving_scene

    frames = moving_scene(n_frames=5, height=32, width=48)
    return frames, cnervcodec.encode(frames, 25, epochs=3, device="cpu")


def test_decode_random_access_and_the_full_decode_agree(stream):
    _, data = stream
    full = cnervcodec.decode(data, device="cpu")
    assert full.shape == (5, 3, 32, 48)
    assert torch.equal(cnervcodec.decode(data, start=3, frames=1, device="cpu"), full[3:4])
    assert torch.equal(cnervcodec.decode(data, start=1, device="cpu"), full[1:])
    with pytest.raises(BadInputError, match="--start 5"):
        cnervcodec.decode(data, start=5)


def test_encode_settings_reach_the_file(stream):
    frames, data = stream
    smaller = cnervcodec.encode(frames, Fraction(25), bits=4, embed_bits=4, epochs=1, device="cpu")
    info = cnervcodec.info(smaller)
    assert (info["weight_bits"], info["embed_bits"], info["fps"]) == (4, 4, "25")
    assert len(smaller) < len(data)
    with pytest.raises(BadInputError, match="preset"):
        cnervcodec.encode(frames, 25, preset="ultra")


def test_bad_bytes_are_the_formats_error():
    with pytest.raises(CorruptContainerError):
        cnervcodec.decode(b"not a stream")
    with pytest.raises(CorruptContainerError):
        cnervcodec.info(b"\x89CNV\r\n\x1a\n\x01\x00")
