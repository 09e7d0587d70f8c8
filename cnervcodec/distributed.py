"""Fitting on several processes: PyTorch DDP, launched by ``torchrun`` (one process per GPU or CPU share).

``torchrun --nproc-per-node N -m cnervcodec encode ...`` starts N copies of the command with
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and a rendezvous in the environment (multi-node through
torchrun's own ``--nnodes`` / ``--rdzv-*`` options). ``start`` joins the process group (NCCL on GPUs,
gloo on CPUs); nothing here launches processes.

Every rank builds the same network from the same seed and draws the same shuffled order; each optimizer
step's batch is split across the ranks (rank r takes frames r, r + N, ...), and each rank's loss is
weighted by its share of the batch so that DDP's averaged gradient is the gradient of the whole batch's
mean loss: the same total steps, and the same optimization as one process up to float rounding.
Only rank 0 writes files and prints.
"""

from __future__ import annotations

import inspect
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher) with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def start(device: torch.device) -> torch.device:
    """Join the process group when launched (idempotent) and return this rank's device: its own GPU
    (``cuda:LOCAL_RANK``), or the CPU with this rank's share of the cores."""
    if not launched():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        torch.set_num_threads(max(1, torch.get_num_threads() // local_size))
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def finish() -> None:
    if active():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The rank that writes outputs, checkpoints and progress (the only one without DDP)."""
    return rank() == 0


def batch_share(indices: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(this rank's frames of the batch ``indices``, its loss weight): world * share / batch, so that the
    mean of the ranks' weighted losses is the batch's mean loss. A rank left without a frame (a short
    last batch) runs the first frame with weight 0, because every rank must take part in each step."""
    n_ranks = world_size()
    if n_ranks == 1:
        return indices, 1.0
    share = indices[rank() :: n_ranks]
    if len(share) == 0:
        return indices[:1], 0.0
    return share, n_ranks * len(share) / len(indices)


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over the ranks (``value`` itself, untouched, with one process)."""
    if not active():
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total


class TrainStep(nn.Module):
    """The network and a rate-aware fit's learned steps as one module whose forward is a training
    prediction: DDP must see every trainable parameter used inside one forward call."""

    def __init__(self, network: nn.Module, rate) -> None:
        super().__init__()
        self.network = network
        self.steps = rate.steps if rate is not None else None
        self._rate = rate

    def forward(self, inputs, indices: torch.Tensor, n_frames: int, progress: float, use_amp: bool):
        """(prediction, weight bits, embedding bits): both rates 0 without a rate-aware fit."""
        if self._rate is not None:
            return self._rate.forward(self.network, inputs, indices, n_frames, progress, use_amp)
        with torch.autocast(indices.device.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = self.network(self.network.latent_for(inputs[indices]))
        zero = torch.zeros((), device=indices.device)
        return pred, zero, zero


def train_step_module(network: nn.Module, rate, device: torch.device) -> nn.Module:
    """``TrainStep``, wrapped in DDP when the process group is up. Buffers are not broadcast: every rank
    measured the same encoder statistics from the same frames."""
    module = TrainStep(network, rate)
    if not active():
        return module
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None, **sync)
