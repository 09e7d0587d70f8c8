"""Fitting a network to a clip: loss, Adam, warm-up + cosine schedule, the loop, checkpoints.

The loop minimizes ``alpha * L1 + (1 - alpha) * (1 - SSIM)`` (NeRV's loss, alpha = 0.7) over the
training frames in shuffled batches. Everything it needs from outside comes in as arguments: the
frames, the configs, a device, a progress callback, a ``should_stop`` poll (the CLI sets it on
Ctrl-C) and a checkpoint policy. It never prints and never touches global RNGs: initialization runs
under a forked, locally seeded RNG and shuffling uses its own ``torch.Generator``.

A checkpoint holds the weights, Adam's moments, the generator state, the current epoch's
permutation and position, so a resumed fit takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnervcodec import distributed
from cnervcodec.config import FitConfig, ModelConfig
from cnervcodec.errors import CheckpointError, CnervError
from cnervcodec.fit_inputs import clip_frames, clip_inputs, frame_targets, frames_fingerprint, input_chunks
from cnervcodec.frame_store import materialize
from cnervcodec.losses import l1_ssim_loss, yuv_mse_loss
from cnervcodec.metrics import rgb_to_yuv420
from cnervcodec.model import VideoNetwork
from cnervcodec.rate_training import RateState, lambda_at
from cnervcodec.safetensors_files import load_checkpoint, save_checkpoint

# yuv-mse sees chroma only through 2x2 means, so an RGB output may put any chroma pattern inside a
# block that averages right: invisible to YUV-PSNR, and a checkerboard in RGB (.y4m, PNG) outputs.
# A small RGB MSE term pins the within-block detail (measured: losses.py, docs/method.md).
RGB_ANCHOR_WEIGHT = 1.0
Planes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # uint8 Y (T, H, W), U and V (T, ceil(H/2), ceil(W/2))


class FitInterrupted(CnervError):
    """The fit was stopped on request; ``checkpoint`` is where its state was saved (or None)."""

    exit_code = 130

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class FitProgress:
    """One progress report: where the loop is and how fast it goes."""

    epoch: int  # 1-based epoch in progress
    epochs: int
    step: int  # optimizer steps done so far (all runs of a resumed fit)
    total_steps: int
    loss: float  # mean loss over the epoch so far
    psnr_db: float  # mean training-batch PSNR over the epoch so far
    frames_per_s: float
    eta_s: float


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where to save checkpoints (None: never) and how often, in seconds of wall time."""

    path: Path | None = None
    interval_s: float = 120.0


@dataclass
class FitResult:
    """The fitted network with what it was fitted on, and how long it took."""

    network: VideoNetwork
    config: FitConfig  # the recipe actually used (from the checkpoint when resumed)
    inputs: torch.Tensor  # network inputs of every frame (raw projections or times), on the fit device
    seen: torch.Tensor  # frame indices used for training
    unseen: torch.Tensor  # held-out frame indices
    fit_seconds: float  # wall time of the training loop, summed over resumed runs
    train_frames: int  # frame passes through the training step, summed over resumed runs
    steps: int
    # Rate-aware fits: each coded tensor's learned step (EMBEDDINGS: the embeddings'), and lambda at the end
    quant_steps: dict[str, float] | None = None
    rate_lambda: float | None = None
    embeddings: torch.Tensor | None = field(default=None, repr=False)  # ``fitted_embeddings``, once computed

    @property
    def train_fps(self) -> float:
        return self.train_frames / self.fit_seconds if self.fit_seconds > 0 else 0.0


def holdout_split(n_frames: int, holdout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seen and unseen frame indices: with ``holdout`` K, frame i is unseen when i % K == K // 2.

    The middle of each group of K is held out so every unseen frame has seen neighbours on both
    sides (the paper holds out 1 frame in every 5).
    """
    indices = torch.arange(n_frames)
    if holdout < 2:
        return indices, indices[:0]
    unseen_mask = indices % holdout == holdout // 2
    seen = indices[~unseen_mask]
    if len(seen) == 0:
        seen, unseen_mask = indices, torch.zeros_like(unseen_mask)
    return seen, indices[unseen_mask]


def fit_every_split(n_frames: int, fit_every: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seen and unseen frame indices with ``fit_every`` K: frames 0, K, 2K, ... are seen, the rest unseen.

    Starting at frame 0 means a clip of any length has a seen frame; an epoch costs 1/K of a full
    one, and CNeRV's content-adaptive encoder still embeds the unseen frames in one forward pass.
    """
    indices = torch.arange(n_frames)
    seen_mask = indices % max(1, fit_every) == 0
    return indices[seen_mask], indices[~seen_mask]


def training_split(n_frames: int, config: FitConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The (seen, unseen) frame indices ``config`` trains on: by ``fit_every`` or ``holdout`` (never both)."""
    if config.fit_every > 1:
        return fit_every_split(n_frames, config.fit_every)
    return holdout_split(n_frames, config.holdout)


def lr_at(step: int, total_steps: int, config: FitConfig) -> float:
    """Linear warm-up over ``warmup_frac`` of the steps, then cosine decay to ``lr * min_lr_frac``."""
    warmup_steps = int(config.warmup_frac * total_steps)
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    floor = config.lr * config.min_lr_frac
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def target_planes(frames_u8: torch.Tensor, planes: Planes | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y (T, H, W), UV (T, 2, h, w)) uint8 targets of a plane loss: the source's own 4:2:0 planes when
    given, else the metrics' BT.601 conversion of the RGB frames (what an RGB source is scored on)."""
    y, u, v = planes if planes is not None else rgb_to_yuv420(frames_u8)
    return y.to(frames_u8.device), torch.stack((u, v), dim=1).to(frames_u8.device)


def seeded_network(config: ModelConfig, seed: int) -> VideoNetwork:
    """Build the network with weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoNetwork(config)


class _Trainer:
    """The mutable state of one fit; ``run`` drives it. Private: callers use ``fit``."""

    def __init__(self, frames_u8: torch.Tensor, network: VideoNetwork, config: FitConfig, device: torch.device,
                 planes: Planes | None = None) -> None:
        self.config = config
        self.device = device
        self.use_amp = device.type == "cuda"
        self.frames = clip_frames(frames_u8, device)  # (T, 3, H, W) uint8 on the device, or a store
        self.planes = target_planes(materialize(self.frames).to(device), planes) if config.loss == "yuv-mse" else None
        self.network = network.to(device).to(memory_format=torch.channels_last)
        model_config = network.config
        self.inputs = clip_inputs(model_config.arch, model_config.embedding, model_config.padded_size, self.frames, device)
        self.seen, self.unseen = training_split(frames_u8.shape[0], config)
        self.steps_per_epoch = math.ceil(len(self.seen) / config.batch)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.rate = (RateState(self.network.decoder, config.rate_lambda, config.seed, device)
                     if config.rate_lambda > 0 and network.encoder is not None else None)
        self.optimizer = torch.optim.Adam(self.trainable(), lr=config.lr)
        self.step_module = distributed.train_step_module(self.network, self.rate, device)
        self.n_pixels = frames_u8.shape[0] * model_config.height * model_config.width  # of the whole clip: R's bpp
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.position = 0  # step within the current epoch
        self.permutation: torch.Tensor | None = None
        self.elapsed_s = 0.0
        self.train_frames = 0
        self.after_step: Callable[[], None] | None = None  # e.g. re-apply pruning masks

    def prepare_encoder(self) -> None:
        """Measure the CNeRV encoder's input standardization on the training frames (fresh fits only)."""
        seen = self.seen.to(self.device)
        if self.network.encoder is not None:
            self.network.encoder.set_statistics(lambda: input_chunks(self.inputs, seen))
        if self.rate is not None:
            with torch.no_grad():
                embeddings = torch.cat([self.network.encoder(raw) for raw in input_chunks(self.inputs, seen)])
            self.rate.start_embedding_step(embeddings)

    def trainable(self) -> list[torch.nn.Parameter]:
        """What Adam updates: the network, then the learned steps of a rate-aware fit."""
        extra = list(self.rate.steps.parameters()) if self.rate is not None else []
        return list(self.network.parameters()) + extra

    def optimizer_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for index, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
        return tensors

    def save(self, path: Path, fingerprint: str) -> None:
        if not distributed.is_main():  # one writer: every rank holds the same state
            return
        extra = {"rng": self.generator.get_state()}
        if self.permutation is not None:
            extra["permutation"] = self.permutation
        if self.rate is not None:
            extra |= self.rate.checkpoint_tensors()
        state = {
            "step": self.step,
            "position": self.position,
            "elapsed_s": self.elapsed_s,
            "train_frames": self.train_frames,
            "fingerprint": fingerprint,
        }
        save_checkpoint(path, self.network, self.optimizer_tensors(), extra, self.config, state)

    def restore(self, tensors: dict[str, torch.Tensor], state: dict, fingerprint: str, path: Path) -> None:
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(f"{path}: checkpoint was made on other frames; pass the same input and options")
        try:
            self.step = int(state["step"])
            self.position = int(state["position"])
            self.elapsed_s = float(state["elapsed_s"])
            self.train_frames = int(state["train_frames"])
            self.generator.set_state(tensors["rng"])
            if self.rate is not None:
                self.rate.restore(tensors)
            optimizer_state = self._optimizer_state_from(tensors)
            self.optimizer.load_state_dict({"state": optimizer_state, "param_groups": self.optimizer.state_dict()["param_groups"]})
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{path}: incomplete training state ({exc})") from None
        if self.position > 0:
            if "permutation" not in tensors:
                raise CheckpointError(f"{path}: checkpoint stopped mid-epoch but holds no frame order")
            permutation = tensors["permutation"].long()
            if sorted(permutation.tolist()) != sorted(self.seen.tolist()):
                raise CheckpointError(f"{path}: stored frame order does not match the clip")
            self.permutation = permutation
        if not 0 <= self.step <= self.total_steps:
            raise CheckpointError(f"{path}: step {self.step} is outside this fit's {self.total_steps} steps")

    def _optimizer_state_from(self, tensors: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
        state: dict[int, dict[str, torch.Tensor]] = {}
        params = self.trainable()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                slot = int(index)
                if not 0 <= slot < len(params):
                    raise ValueError(f"optimizer slot {slot} out of range")
                state.setdefault(slot, {})[name] = value.to(self.device) if name != "step" else value
        return state

    def batch_indices(self) -> torch.Tensor:
        if self.permutation is None or self.position == 0:
            self.permutation = self.seen[torch.randperm(len(self.seen), generator=self.generator)]
        batch = self.config.batch
        return self.permutation[self.position * batch : (self.position + 1) * batch]

    def train_step(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on frames ``indices``: returns (loss, batch MSE) as device tensors."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.total_steps, self.config)
        share, weight = distributed.batch_share(indices)  # the whole batch with one process
        device_indices = share.to(self.device)
        pred, weight_bits, embed_bits = self.step_module(self.inputs, device_indices, self.frames.shape[0],
                                                         self.step / self.total_steps, self.use_amp)
        loss, mse = self.loss(pred.float(), device_indices)
        loss = loss * weight
        if self.rate is not None:
            rate_bits = weight_bits + weight * embed_bits
            loss = loss + lambda_at(self.step, self.total_steps, self.rate.rate_lambda) * rate_bits / self.n_pixels
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.rate is not None and self.config.rate_target_bits > 0:
            embed_estimate = distributed.all_sum(embed_bits.detach() * (weight / distributed.world_size()))
            self.rate.follow(self.step, self.total_steps, float(weight_bits.detach() + embed_estimate),
                             self.config.rate_target_bits)
        if self.after_step is not None:
            self.after_step()
        self.step += 1
        self.position = (self.position + 1) % self.steps_per_epoch
        self.train_frames += len(indices)
        return loss.detach(), mse

    def loss(self, pred: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-frame MSE for the progress PSNR: RGB, or Y for the plane loss) of a batch."""
        if self.planes is not None:
            target_y = self.planes[0][indices].float().div_(255.0)
            target_uv = self.planes[1][indices].float().div_(255.0)
            loss, luma = yuv_mse_loss(pred, target_y, target_uv)
            target = frame_targets(self.frames, indices, self.device).float().div_(255.0).contiguous(
                memory_format=torch.channels_last)
            loss = loss + RGB_ANCHOR_WEIGHT * (pred - target).square().mean()
            return loss, (luma.detach() - target_y).square().mean(dim=(1, 2))
        target = frame_targets(self.frames, indices, self.device).float().div_(255.0).contiguous(
            memory_format=torch.channels_last)
        if self.config.loss == "mse":
            loss = (pred - target).square().mean()
        else:
            loss = l1_ssim_loss(pred, target, self.config.l1_weight)
        return loss, (pred.detach() - target).square().mean(dim=(1, 2, 3))


def fit(
    frames_u8: torch.Tensor,
    model_config: ModelConfig,
    fit_config: FitConfig,
    device: torch.device,
    progress: Callable[[FitProgress], None] | None = None,
    checkpoint: CheckpointPolicy = CheckpointPolicy(),
    resume: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    planes: Planes | None = None,
) -> FitResult:
    """Fit a fresh network to ``frames_u8`` (T, 3, H, W) uint8, or continue the checkpoint ``resume``.

    When resuming, the network and fit configs come from the checkpoint (``model_config`` and
    ``fit_config`` are ignored). Raises ``FitInterrupted`` when ``should_stop`` turns true, after
    saving a checkpoint if the policy names a path. ``planes``: the source's own 4:2:0 planes, the
    targets of a plane loss (``yuv-mse`` or a YUV head); without them the frames' conversion is used.
    """
    fingerprint = frames_fingerprint(frames_u8)
    if resume is not None:
        network, fit_config, tensors, state = load_checkpoint(resume)
        if (network.config.height, network.config.width) != tuple(frames_u8.shape[-2:]):
            raise CheckpointError(f"{resume}: checkpoint is for {network.config.width}x{network.config.height} frames")
        trainer = _Trainer(frames_u8, network, fit_config, device, planes)
        trainer.restore(tensors, state, fingerprint, Path(resume))
    else:
        trainer = _Trainer(frames_u8, seeded_network(model_config, fit_config.seed), fit_config, device, planes)
        trainer.prepare_encoder()
    _run(trainer, progress, checkpoint, fingerprint, should_stop)
    return _result(trainer)


def _result(trainer: _Trainer) -> FitResult:
    trainer.network.eval()
    return FitResult(
        network=trainer.network,
        config=trainer.config,
        inputs=trainer.inputs,
        seen=trainer.seen,
        unseen=trainer.unseen,
        fit_seconds=trainer.elapsed_s,
        train_frames=trainer.train_frames,
        steps=trainer.step,
        quant_steps=trainer.rate.steps.values() if trainer.rate is not None else None,
        rate_lambda=trainer.rate.rate_lambda if trainer.rate is not None else None,
    )


def fine_tune(
    frames_u8: torch.Tensor,
    network: VideoNetwork,
    fit_config: FitConfig,
    device: torch.device,
    after_step: Callable[[], None],
    progress: Callable[[FitProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    planes: Planes | None = None,
    quant_steps: dict[str, float] | None = None,
) -> FitResult:
    """Continue training an already fitted ``network`` (its encoder statistics kept), calling
    ``after_step`` after every optimizer step: pruning holds its masks this way. It trains on the
    frames ``fit_config`` selects, so a recipe derived from the fit's own config keeps its split;
    a rate-aware recipe continues from the fit's learned ``quant_steps``."""
    trainer = _Trainer(frames_u8, network, fit_config, device, planes)
    if trainer.rate is not None and quant_steps is not None:
        trainer.rate.steps.load_values(quant_steps)
    trainer.after_step = after_step
    after_step()
    _run(trainer, progress, CheckpointPolicy(), frames_fingerprint(frames_u8), should_stop)
    return _result(trainer)


def _run(
    trainer: _Trainer,
    progress: Callable[[FitProgress], None] | None,
    checkpoint: CheckpointPolicy,
    fingerprint: str,
    should_stop: Callable[[], bool],
) -> None:
    """The training loop proper: steps until done, reporting and checkpointing on wall-clock timers."""
    trainer.network.train()
    run_start = time.monotonic()
    elapsed_before = trainer.elapsed_s
    last_report = last_save = run_start
    frames_this_run = 0
    loss_sum = torch.zeros((), device=trainer.device)
    psnr_sum = torch.zeros((), device=trainer.device)
    n_batches = n_frames = 0
    while trainer.step < trainer.total_steps:
        if should_stop():
            trainer.elapsed_s = elapsed_before + time.monotonic() - run_start
            if checkpoint.path is not None:
                trainer.save(checkpoint.path, fingerprint)
            raise FitInterrupted("fit interrupted", checkpoint.path)
        if trainer.position == 0:
            loss_sum.zero_(), psnr_sum.zero_()
            n_batches = n_frames = 0
        indices = trainer.batch_indices()
        loss, mse = trainer.train_step(indices)
        loss_sum += loss
        psnr_sum += (-10.0 * torch.log10(mse.clamp_min(1e-10))).sum()
        n_batches += 1
        n_frames += len(mse)  # this rank's frames of the batch
        frames_this_run += len(indices)
        now = time.monotonic()
        trainer.elapsed_s = elapsed_before + now - run_start
        end_of_epoch = trainer.position == 0
        if progress is not None and (end_of_epoch or now - last_report >= 0.5):
            last_report = now
            rate = frames_this_run / max(1e-9, now - run_start)
            remaining = (trainer.total_steps - trainer.step) * trainer.config.batch
            epoch = (trainer.step - 1) // trainer.steps_per_epoch + 1
            progress(
                FitProgress(
                    epoch=epoch,
                    epochs=trainer.config.epochs,
                    step=trainer.step,
                    total_steps=trainer.total_steps,
                    loss=loss_sum.item() / n_batches,
                    psnr_db=psnr_sum.item() / n_frames,
                    frames_per_s=rate,
                    eta_s=remaining / rate if rate > 0 else float("inf"),
                )
            )
        if checkpoint.path is not None and now - last_save >= checkpoint.interval_s:
            trainer.save(checkpoint.path, fingerprint)
            last_save = now


@torch.no_grad()
def fitted_embeddings(result: FitResult, batch: int = 64) -> torch.Tensor | None:
    """Every frame's embedding (T, d, n_h, n_w), float32 on the CPU, from the fitted encoder (None for NeRV);
    computed once per result (a rate search codes one fit many times; a long clip streams from disk)."""
    encoder, inputs = result.network.encoder, result.inputs
    if encoder is not None and result.embeddings is None:
        result.embeddings = torch.cat([encoder(inputs[i : i + batch]).float().cpu() for i in range(0, len(inputs), batch)])
    return result.embeddings
