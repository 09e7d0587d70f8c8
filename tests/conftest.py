"""Shared fixtures: small synthetic clips generated in code, so tests need no external data."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch


def moving_scene(n_frames: int = 10, height: int = 36, width: int = 52, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames: a smooth colour background with a bright disc moving across it.

    Neighbouring frames are similar (like real video) but not identical, so a fit has to learn
    content and the mean frame is a poor reconstruction.
    """
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    phase = torch.rand(3, generator=gen) * 2 * math.pi
    frames = []
    for t in range(n_frames):
        s = t / max(1, n_frames - 1)
        bg = torch.stack([0.5 + 0.4 * torch.sin(3 * xs + 2 * ys + phase[c] + 2 * s) for c in range(3)])
        cy, cx = 0.3 + 0.4 * s, 0.2 + 0.6 * s
        disc = (((ys - cy) * height) ** 2 + ((xs - cx) * width) ** 2 < (0.18 * height) ** 2).float()
        frame = bg * (1 - disc) + disc * torch.tensor([0.95, 0.9, 0.2])[:, None, None]
        frames.append((frame.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.stack(frames)


@pytest.fixture
def scene() -> torch.Tensor:
    return moving_scene()


def cnerv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m cnervcodec ARGS`` in a fresh process: exit status, stdout and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "cnervcodec", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def frame(kind: str | bytes, payload: bytes) -> bytes:
    """One chunk, framed by hand (length, type, payload, CRC-32): files the writer would never make."""
    body = (kind.encode() if isinstance(kind, str) else kind) + payload
    return struct.pack("<I", len(payload)) + body + struct.pack("<I", zlib.crc32(body))


def split_file(data: bytes) -> list[tuple[str, bytes]]:
    """The (type, payload) chunks after the 10-byte preamble of a .cnrv or .cnrvm file."""
    chunks, pos = [], 10
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        chunks.append((data[pos + 4 : pos + 8].decode(), data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def run_cnerv(capsys, *args: str) -> tuple[int, str, str]:
    """``cnerv ARGS`` in this process (no interpreter start per call): (exit status, stdout, stderr)."""
    from cnervcodec.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def write_y4m(path: Path, frames_u8, width: int, height: int) -> None:
    """8-bit 4:4:4 Y4M from (T, 3, H, W) RGB (BT.601 limited range), written by hand."""
    rgb = np.asarray(frames_u8, dtype=np.float64)
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C444\n".encode())
        for r, g, b in rgb:
            y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
            u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
            v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
            handle.write(b"FRAME\n")
            for plane in (y, u, v):
                handle.write(np.clip(np.round(plane), 0, 255).astype(np.uint8).tobytes())
