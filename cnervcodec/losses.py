"""Training losses: the paper's L1 + SSIM on RGB, MSE, and the anchors' own metric, YUV 4:2:0 MSE.

``yuv-mse`` is ``(6 MSE_Y + MSE_U + MSE_V) / 8`` on BT.601 limited-range 4:2:0 planes, the weighting
the YUV-PSNR that every RD comparison uses (and that x264/x265 optimise) puts on the planes. The
target planes are the source's own when it is 4:2:0 (``VideoClip.planes``), so the network learns
the very planes it is scored against, through the one conversion its RGB output is scored with.

Frames and planes here are floats in [0, 1] (plane value / 255), batched on the training device.
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim

from cnervcodec.metrics import (
    BT601_LIMITED_MATRIX,
    BT601_LIMITED_OFFSET,
    subsample_chroma_2x2,
)

YUV_WEIGHTS = (6.0 / 8.0, 1.0 / 8.0, 1.0 / 8.0)  # Y, U, V: the YUV-PSNR weighting (JVET CTC)


def l1_ssim_loss(pred: torch.Tensor, target: torch.Tensor, l1_weight: float) -> torch.Tensor:
    """``alpha * L1 + (1 - alpha) * (1 - SSIM)`` on [0, 1] frames; SSIM's window shrinks for tiny frames."""
    l1 = (pred - target).abs().mean()
    win = min(11, min(pred.shape[-2:]) - (1 - min(pred.shape[-2:]) % 2))
    if l1_weight >= 1.0 or win < 3:
        return l1
    similarity = ssim(pred, target, data_range=1.0, size_average=True, win_size=win)
    return l1_weight * l1 + (1.0 - l1_weight) * (1.0 - similarity)


def rgb_to_yuv_full(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) BT.601 limited-range Y, U, V in [0, 1] (value / 255),
    differentiable, chroma not yet subsampled: the matrix ``metrics.rgb_to_yuv420`` uses."""
    matrix = torch.tensor(BT601_LIMITED_MATRIX, dtype=rgb.dtype, device=rgb.device)
    offset = torch.tensor(BT601_LIMITED_OFFSET, dtype=rgb.dtype, device=rgb.device) / 255.0
    return torch.einsum("ij,bjhw->bihw", matrix, rgb) + offset[:, None, None]


def yuv420_from_full(yuv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-size (B, 3, H, W) Y, U, V -> (Y (B, H, W), UV (B, 2, ceil(H/2), ceil(W/2))) by 2x2 chroma means."""
    return yuv[:, 0], subsample_chroma_2x2(yuv[:, 1:])


def yuv_mse_loss(pred_rgb: torch.Tensor, target_y: torch.Tensor, target_uv: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(``(6 MSE_Y + MSE_U + MSE_V) / 8`` of an RGB output against 4:2:0 target planes, the output's Y plane):
    the output goes through the metrics' BT.601 conversion and 2x2 chroma mean first."""
    y, uv = yuv420_from_full(rgb_to_yuv_full(pred_rgb))
    w_y, w_u, w_v = YUV_WEIGHTS
    loss = (w_y * (y - target_y).square().mean() + w_u * (uv[:, 0] - target_uv[:, 0]).square().mean()
            + w_v * (uv[:, 1] - target_uv[:, 1]).square().mean())
    return loss, y
