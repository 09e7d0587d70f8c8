"""The per-frame metrics as ``cnervcodec.metrics`` computed them before issue 15 item 6 (a reference).

A straightforward copy of the old code, kept to check that the faster, streaming implementation
gives the same values (to 1e-4) on random and real frames: whole-batch int32 SSE for PSNR, an einsum
for BT.601 RGB -> YUV 4:2:0, and pytorch-msssim's own ``_ssim`` (grouped conv2d) at every scale.
Used by tests/test_metrics.py and benchmarks/metrics_speed.py; nothing in the package imports it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from cnervcodec.metrics import (
    BT601_LIMITED_MATRIX,
    BT601_LIMITED_OFFSET,
    CHROMA_RANGE,
    LUMA_RANGE,
    MS_SSIM_WIN_PX,
    MS_SSIM_WIN_SIGMA_PX,
    PSNR_CAP_DB,
    _fallback_win_px,
    _scale_weights,
    ms_ssim_scales_for,
)


def sse_per_frame(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    diff = ref.to(torch.int32) - dist.to(torch.int32)
    return diff.square().flatten(1).sum(dim=1, dtype=torch.int64)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return (10.0 * torch.log10(255.0**2 / mse)).clamp(max=PSNR_CAP_DB)


def psnr_rgb_db(ref_u8: torch.Tensor, dist_u8: torch.Tensor) -> torch.Tensor:
    n_values = 3 * ref_u8.shape[2] * ref_u8.shape[3]
    return psnr_from_mse(sse_per_frame(ref_u8, dist_u8).to(torch.float64) / n_values)


def rgb_to_yuv420(frames_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rgb = frames_u8.to(torch.float32)
    matrix = torch.tensor(BT601_LIMITED_MATRIX, dtype=torch.float32)
    offset = torch.tensor(BT601_LIMITED_OFFSET, dtype=torch.float32)
    yuv = torch.einsum("ij,tjhw->tihw", matrix, rgb) + offset[:, None, None]
    chroma = yuv[:, 1:]
    pad_w, pad_h = chroma.shape[-1] % 2, chroma.shape[-2] % 2
    if pad_w or pad_h:
        chroma = F.pad(chroma, (0, pad_w, 0, pad_h), mode="replicate")
    chroma = F.avg_pool2d(chroma, kernel_size=2)

    def rounded(values, value_range):
        return torch.floor(values + 0.5).clamp(*value_range).to(torch.uint8)

    return rounded(yuv[:, 0], LUMA_RANGE), rounded(chroma[:, 0], CHROMA_RANGE), rounded(chroma[:, 1], CHROMA_RANGE)


def psnr_yuv_db(ref_u8: torch.Tensor, dist_u8: torch.Tensor, planes=None) -> torch.Tensor:
    ref_planes = rgb_to_yuv420(ref_u8) if planes is None else planes
    psnr_y, psnr_u, psnr_v = (psnr_from_mse(sse_per_frame(r, d).to(torch.float64) / r[0].numel())
                              for r, d in zip(ref_planes, rgb_to_yuv420(dist_u8)))
    return (6.0 * psnr_y + psnr_u + psnr_v) / 8.0


def ms_ssim_batch(ref: torch.Tensor, dist: torch.Tensor, weights: tuple[float, ...], win_px: int) -> torch.Tensor:
    win = _fspecial_gauss_1d(win_px, MS_SSIM_WIN_SIGMA_PX).repeat(ref.shape[1], 1, 1, 1)
    terms = []
    for scale in range(len(weights)):
        ssim_per_channel, cs_per_channel = _ssim(ref, dist, data_range=255.0, win=win, size_average=False)
        if scale < len(weights) - 1:
            terms.append(torch.relu(cs_per_channel))
            padding = [side % 2 for side in ref.shape[2:]]
            ref = F.avg_pool2d(ref, kernel_size=2, padding=padding)
            dist = F.avg_pool2d(dist, kernel_size=2, padding=padding)
    terms.append(torch.relu(ssim_per_channel))
    stacked = torch.stack(terms)
    weights_t = stacked.new_tensor(weights).view(-1, 1, 1)
    return torch.prod(stacked**weights_t, dim=0).mean(dim=1)


def ms_ssim_per_frame(ref_u8: torch.Tensor, dist_u8: torch.Tensor, batch: int = 8) -> torch.Tensor:
    height, width = ref_u8.shape[2:]
    scales = ms_ssim_scales_for(height, width)
    win_px = MS_SSIM_WIN_PX if scales > 0 else _fallback_win_px(height, width)
    weights = _scale_weights(scales)
    values = [ms_ssim_batch(ref_u8[s : s + batch].float(), dist_u8[s : s + batch].float(), weights, win_px)
              for s in range(0, ref_u8.shape[0], batch)]
    return torch.cat(values).to(torch.float64)


def per_frame_values(ref_u8: torch.Tensor, dist_u8: torch.Tensor, planes=None, batch: int = 8) -> dict[str, torch.Tensor]:
    """The three per-frame lists of the old ``quality_report``, ``batch`` frames at a time."""
    out: dict[str, list[torch.Tensor]] = {"psnr": [], "psnr_yuv": [], "ms_ssim": []}
    for s in range(0, ref_u8.shape[0], batch):
        ref, dist = ref_u8[s : s + batch], dist_u8[s : s + batch]
        chunk_planes = None if planes is None else tuple(p[s : s + batch] for p in planes)
        out["psnr"].append(psnr_rgb_db(ref, dist))
        out["psnr_yuv"].append(psnr_yuv_db(ref, dist, chunk_planes))
        out["ms_ssim"].append(ms_ssim_per_frame(ref, dist, batch))
    return {key: torch.cat(values) for key, values in out.items()}
