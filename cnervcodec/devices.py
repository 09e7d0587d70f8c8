"""Which torch device work runs on: ``auto`` takes CUDA when present, and the CPU path uses every core it may."""

from __future__ import annotations

import os

import torch

from cnervcodec.errors import BadInputError

DEVICE_NAMES = ("auto", "cpu", "cuda")


def pick_device(name: str | torch.device) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` (or a ``torch.device``) as a device; on the CPU, torch gets one
    thread per core this process may run on (``sched_getaffinity``, not the machine's count)."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICE_NAMES:
        raise BadInputError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores))
    return device
