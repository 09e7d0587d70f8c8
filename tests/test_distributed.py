"""Distributed fitting: DDP through torchrun, two gloo processes on this CPU (issue 15 item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnervcodec import distributed
from cnervcodec.codec import decode

CLIP = Path(__file__).parent / "data" / "carphone_qcif.mp4"
ENCODE = ["encode", str(CLIP), "--frames", "12", "--preset", "fast", "--device", "cpu", "--json", "-q", "-y",
          "--seed", "3"]


def _cnerv(args: list[str], ranks: int, cwd: Path) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    command = (launcher if ranks > 1 else [sys.executable]) + ["-m", "cnervcodec", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_two_gloo_ranks_write_one_valid_file_close_to_one_process(tmp_path: Path) -> None:
    two = _cnerv(ENCODE + ["-o", "two.cnrv"], 2, tmp_path)
    one = _cnerv(ENCODE + ["-o", "one.cnrv"], 1, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.cnrv", "two.cnrv"]  # rank 1 wrote nothing
    data = (tmp_path / "two.cnrv").read_bytes()
    assert len(data) == two["bytes"]
    assert decode(data).shape == (12, 3, 144, 176)
    assert two["train_fps"] > 0
    assert abs(two["psnr_yuv"] - one["psnr_yuv"]) < 0.3


def test_fit_checkpoint_and_resume_under_two_ranks(tmp_path: Path) -> None:
    """A checkpoint written mid-fit by rank 0, resumed by both ranks, ends where the uninterrupted fit ended."""
    args = ["fit", str(CLIP), "--frames", "8", "--size", "S", "--epochs", "40", "--device", "cpu", "--json", "-q"]
    first = _cnerv(args + ["--checkpoint", "run.ckpt", "--checkpoint-every", "1"], 2, tmp_path)
    assert (tmp_path / "run.ckpt").is_file()
    resumed = _cnerv(args + ["--resume", "run.ckpt"], 2, tmp_path)
    assert resumed["seen"]["psnr"] == pytest.approx(first["seen"]["psnr"], abs=1e-6)


@pytest.mark.parametrize("batch,world", [(2, 2), (3, 2), (1, 2), (5, 3)])
def test_batch_shares_weigh_to_the_batch_mean(monkeypatch: pytest.MonkeyPatch, batch: int, world: int) -> None:
    indices = torch.arange(10, 10 + batch)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    shares = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        shares.append(distributed.batch_share(indices))
    used = torch.cat([share for share, weight in shares if weight > 0])
    assert sorted(used.tolist()) == indices.tolist()  # every frame once
    values = torch.rand(100, dtype=torch.float64)  # a per-frame loss: DDP averages the ranks' weighted means
    averaged = sum(weight * values[share].mean() for share, weight in shares) / world
    assert float(averaged) == pytest.approx(float(values[indices].mean()))


def test_one_process_is_untouched() -> None:
    indices = torch.arange(4)
    share, weight = distributed.batch_share(indices)
    assert share is indices and weight == 1.0
    assert not distributed.active() and distributed.is_main()
