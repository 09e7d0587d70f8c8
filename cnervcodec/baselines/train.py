"""Fitting a baseline: the same recipe as CNeRV's fit (``FitConfig``: Adam, warm-up + cosine, batches of
seen frames, ``--holdout``), in a loop of its own because a baseline trains end to end from pixels.

The image loss is CNeRV's (``l1-ssim`` by default, or ``mse``) for the autoencoders. Pixel-wise INRs
see a random set of pixels per step, where SSIM has no windows, so they minimise the MSE of those
pixels (MLF's and SIREN's loss). ``yuv-mse`` is CNeRV's codec loss and is not offered here. Nothing
is checkpointed: a baseline fit is a measurement, rerun rather than resumed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from cnervcodec.baselines.config import AUTOENCODERS, BaselineConfig
from cnervcodec.baselines.networks import build_baseline
from cnervcodec.config import FitConfig
from cnervcodec.embedding import pad_replicate, padded_floats
from cnervcodec.errors import BadInputError
from cnervcodec.fit import FitInterrupted, FitProgress, holdout_split, lr_at
from cnervcodec.frame_store import materialize
from cnervcodec.losses import l1_ssim_loss
from cnervcodec.model import to_u8

PROGRESS_INTERVAL_S = 0.5


@dataclass
class BaselineFit:
    """A fitted baseline with what it was fitted on, and how long it took."""

    network: nn.Module
    config: BaselineConfig
    fit_config: FitConfig
    frames: torch.Tensor  # (T, 3, H, W) uint8 on the CPU: the clip
    seen: torch.Tensor
    unseen: torch.Tensor
    fit_seconds: float
    train_frames: int
    steps: int
    codes: torch.Tensor | None = field(default=None, repr=False)  # ``baseline_codes``, once computed

    @property
    def train_fps(self) -> float:
        return self.train_frames / self.fit_seconds if self.fit_seconds > 0 else 0.0


def seeded_baseline(config: BaselineConfig, seed: int) -> nn.Module:
    """The network with weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_baseline(config)


def batch_loss(network: nn.Module, batch_u8: torch.Tensor, fit_config: FitConfig, device: torch.device,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-frame MSE of what was predicted) for one batch of uint8 frames."""
    config = network.config
    target = batch_u8.to(device).float().div_(255.0)
    inputs = pad_replicate(target, config.geometry.padded_size)  # CNeRV's padding; the encoder makes a new tensor
    if config.arch in AUTOENCODERS:
        pred, extra = network.train_forward(inputs, generator)
        pred = pred.float()
        if fit_config.loss == "mse":
            loss = (pred - target).square().mean()
        else:
            loss = l1_ssim_loss(pred, target, fit_config.l1_weight)
        return loss + extra, (pred.detach() - target).square().mean(dim=(1, 2, 3))
    pred, pixels = network.train_forward(inputs, generator)
    target_pixels = target.flatten(2)[:, :, pixels].transpose(1, 2)  # (B, P, 3)
    error = (pred.float() - target_pixels).square()
    return error.mean(), error.detach().mean(dim=(1, 2))


def fit_baseline(frames_u8, config: BaselineConfig, fit_config: FitConfig, device: torch.device,
                 progress: Callable[[FitProgress], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> BaselineFit:
    """Fit a fresh baseline to ``frames_u8`` (T, 3, H, W) uint8 (a tensor or a frame store)."""
    if fit_config.loss == "yuv-mse":
        raise BadInputError("--loss yuv-mse is CNeRV's codec loss; a baseline fits l1-ssim or mse")
    if fit_config.fit_every > 1 or fit_config.rate_lambda > 0:
        raise BadInputError("a baseline fits with --holdout only (no --fit-every, no rate term)")
    frames = materialize(frames_u8)
    network = seeded_baseline(config, fit_config.seed).to(device)
    seen, unseen = holdout_split(frames.shape[0], fit_config.holdout)
    optimizer = torch.optim.Adam(network.parameters(), lr=fit_config.lr)
    generator = torch.Generator().manual_seed(fit_config.seed)
    steps_per_epoch = math.ceil(len(seen) / fit_config.batch)
    total_steps = fit_config.epochs * steps_per_epoch
    network.train()
    start = last_report = time.monotonic()
    step = train_frames = 0
    for epoch in range(1, fit_config.epochs + 1):
        order = seen[torch.randperm(len(seen), generator=generator)]
        # summed on the device and read only when reported: no host sync on every step (CUDA)
        loss_sum, psnr_sum = torch.zeros((), device=device), torch.zeros((), device=device)
        for position in range(steps_per_epoch):
            if should_stop():
                raise FitInterrupted("fit interrupted (a baseline fit keeps no checkpoint)", None)
            indices = order[position * fit_config.batch : (position + 1) * fit_config.batch]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, fit_config)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, mse = batch_loss(network, frames[indices], fit_config, device, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            train_frames += len(indices)
            loss_sum += loss.detach().float()
            psnr_sum += (-10.0 * torch.log10(mse.clamp_min(1e-10))).mean()
            now = time.monotonic()
            if progress is not None and (position == steps_per_epoch - 1 or now - last_report >= PROGRESS_INTERVAL_S):
                last_report = now
                rate = train_frames / max(1e-9, now - start)
                progress(FitProgress(epoch=epoch, epochs=fit_config.epochs, step=step, total_steps=total_steps,
                                     loss=loss_sum.item() / (position + 1), psnr_db=psnr_sum.item() / (position + 1),
                                     frames_per_s=rate, eta_s=(total_steps - step) * fit_config.batch / rate))
    network.eval()
    return BaselineFit(network=network, config=config, fit_config=fit_config, frames=frames, seen=seen,
                       unseen=unseen, fit_seconds=time.monotonic() - start, train_frames=train_frames, steps=step)


@torch.no_grad()
def baseline_codes(fit: BaselineFit, device: torch.device, batch: int = 8) -> torch.Tensor:
    """Every frame's code (the embedding, ConvVAE's mean), float32 on the CPU: (T, c, rows, cols); computed
    once per fit (the report's frames, the file and the analysis all use them)."""
    if fit.codes is None:
        padded = fit.config.geometry.padded_size
        fit.codes = torch.cat([fit.network.encode(padded_floats(fit.frames[i : i + batch], padded, device)).float().cpu()
                               for i in range(0, fit.frames.shape[0], batch)])
    return fit.codes


@torch.no_grad()
def baseline_render(fit: BaselineFit, device: torch.device, batch: int = 8) -> torch.Tensor:
    """Every frame rebuilt from its own code: (T, 3, H, W) uint8 on the CPU (unseen frames included:
    the encoder codes them from their pixels, as CNeRV's does)."""
    codes = baseline_codes(fit, device, batch)
    return torch.cat([to_u8(fit.network.decode(codes[i : i + batch].to(device)).float()).cpu()
                      for i in range(0, codes.shape[0], batch)])
