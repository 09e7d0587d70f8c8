"""MS-SSIM as pytorch-msssim computes it, at video speed on a CPU.

``metrics`` scores with pytorch-msssim's definition (11-px Gaussian window, sigma 1.5, the five
standard weights, data range 255, zero-padded 2x2 average pooling between scales, ReLU on the
contrast-structure terms, mean over channels of the weighted product). Its ``_ssim`` blurs with a
grouped ``conv2d`` over 3 channels, which oneDNN runs at about 1.5 s per 720p frame on two cores
(measured: 85 % of the time). The same separable "valid" Gaussian done as 11 shifted multiply-adds
along each axis gives the same values to float32 rounding (a test checks 1e-6 against
``pytorch_msssim.ms_ssim``) for a twentieth of the time, provided the work stays cache-sized: the
five maps (X, Y, X², Y², XY) of about a million pixels at a time (one 720p channel, or ~40 QCIF
ones), with the SSIM arithmetic done in place. Pure functions, any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d

PEAK_U8 = 255.0
MS_SSIM_WIN_PX = 11
MS_SSIM_WIN_SIGMA_PX = 1.5
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # finest scale first
MS_SSIM_MAX_SCALES = len(MS_SSIM_WEIGHTS)
SSIM_K = (0.01, 0.03)  # pytorch-msssim's (K1, K2)

# Planes scored together (a 720p frame's three channels, or ~160 QCIF planes), and floats per map in one
# strip of rows (34 rows of those three channels; never under STRIP_MIN_ROWS, so the window's 10 extra
# rows stay a small overhead): sizes at which the work stays cache-sized (see ``_ssim_means``).
GROUP_PIXELS = 1 << 22
STRIP_VALUES = 1 << 17
STRIP_MIN_ROWS = 32


def ms_ssim_scales_for(height: int, width: int) -> int:
    """How many MS-SSIM scales (1..5) a ``height x width`` frame supports with the 11-px window.

    ``k`` scales downsample ``k - 1`` times, and the coarsest scale must still hold the window:
    short side > (11 - 1) * 2**(k - 1), i.e. over 160 px for all five. Returns 0 when not even one
    scale fits (short side under 11 px); ``ms_ssim_per_frame`` then falls back to plain SSIM with a
    smaller window.
    """
    short_side_px = min(height, width)
    for scales in range(MS_SSIM_MAX_SCALES, 0, -1):
        if short_side_px > (MS_SSIM_WIN_PX - 1) * 2 ** (scales - 1):
            return scales
    return 0


def _fallback_win_px(height: int, width: int) -> int:
    """The largest odd window that fits a frame too small for the 11-px one."""
    short_side_px = min(height, width)
    return short_side_px if short_side_px % 2 else short_side_px - 1


def ms_ssim_note(height: int, width: int) -> str:
    """Why MS-SSIM on this frame size is not the standard five-scale value; "" when it is."""
    scales = ms_ssim_scales_for(height, width)
    short_side_px = min(height, width)
    if scales == MS_SSIM_MAX_SCALES:
        return ""
    if scales > 0:
        five_scale_min_px = (MS_SSIM_WIN_PX - 1) * 2 ** (MS_SSIM_MAX_SCALES - 1) + 1
        return f"MS-SSIM over {scales} scales (frame short side {short_side_px} px < {five_scale_min_px})"
    return (
        f"single-scale SSIM with a {_fallback_win_px(height, width)}-px window instead of MS-SSIM "
        f"(frame short side {short_side_px} px < {MS_SSIM_WIN_PX})"
    )


def _scale_weights(scales: int) -> tuple[float, ...]:
    """The first ``scales`` standard weights renormalised to sum to 1 (one scale: just SSIM)."""
    kept = MS_SSIM_WEIGHTS[: max(scales, 1)]
    total = sum(kept)
    return tuple(w / total for w in kept)


def _blur_valid_into(planes: torch.Tensor, taps: list[float], vertical: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``(P, H, W)`` float -> ``out`` ``(P, H - k + 1, W - k + 1)``: the separable window, height then
    width, over "valid" positions only, as pytorch-msssim's ``gaussian_filter`` (a side shorter than the
    window is left unblurred, as there). ``vertical`` holds the first pass; both are reused buffers."""
    src = planes
    for dim, dst in ((-2, vertical), (-1, out)):
        if src.shape[dim] < len(taps):
            dst.copy_(src)
        else:
            torch.mul(src.narrow(dim, 0, dst.shape[dim]), taps[0], out=dst)
            for offset in range(1, len(taps)):
                dst.add_(src.narrow(dim, offset, dst.shape[dim]), alpha=taps[offset])
        src = dst
    return out


def _ssim_means(ref: torch.Tensor, dist: torch.Tensor, taps: list[float], luminance: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Mean SSIM and contrast-structure maps per plane, ``(M,)`` float32 each, of float32 planes
    ``(M, H, W)`` (or uint8 ones): pytorch-msssim's ``_ssim`` formula operation for operation, over
    strips of rows. ``luminance=False`` skips the SSIM map (None), which MS-SSIM uses at its
    coarsest scale only.

    A strip's five maps (X, Y, X², Y², XY) are built, blurred and reduced in buffers reused from strip
    to strip: ~``STRIP_VALUES`` floats per map stay in the CPU's cache across the ~50 operations a strip
    takes, where whole planes made each of them a trip to memory (measured 4x slower).
    """
    n_planes, height, width = ref.shape
    halo = len(taps) - 1 if height >= len(taps) else 0  # the window's extra input rows
    out_h = height - halo
    out_w = width - len(taps) + 1 if width >= len(taps) else width
    rows = min(out_h, max(STRIP_MIN_ROWS, STRIP_VALUES // (n_planes * width)))
    c1, c2 = ((k * PEAK_U8) ** 2 for k in SSIM_K)

    def buffer(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=torch.float32, device=ref.device)

    maps_buf, vertical_buf = buffer(5, n_planes, rows + halo, width), buffer(5 * n_planes, rows, width)
    blurred_buf, squares_buf = buffer(5, n_planes, rows, out_w), buffer(2, n_planes, rows, out_w)
    sums = torch.zeros((2, n_planes), dtype=torch.float64, device=ref.device)
    for top in range(0, out_h, rows):
        n_rows = min(rows, out_h - top)
        maps = maps_buf[:, :, : n_rows + halo]
        x, y = maps[0], maps[1]
        x.copy_(ref[:, top : top + n_rows + halo])
        y.copy_(dist[:, top : top + n_rows + halo])
        torch.mul(x, x, out=maps[2])
        torch.mul(y, y, out=maps[3])
        torch.mul(x, y, out=maps[4])
        blurred = blurred_buf[:, :, :n_rows]
        _blur_valid_into(maps.flatten(0, 1), taps, vertical_buf[:, :n_rows], blurred.flatten(0, 1))
        mu1, mu2, sigma1_sq, sigma2_sq, sigma12 = blurred.unbind(0)
        mu1_sq, mu2_sq = squares_buf[:, :, :n_rows].unbind(0)
        torch.mul(mu1, mu1, out=mu1_sq)
        torch.mul(mu2, mu2, out=mu2_sq)
        mu1_mu2 = mu1.mul_(mu2)
        sigma1_sq.sub_(mu1_sq)
        sigma2_sq.sub_(mu2_sq)
        sigma12.sub_(mu1_mu2)
        cs_map = sigma12.mul_(2).add_(c2).div_(sigma1_sq.add_(sigma2_sq).add_(c2))
        sums[1] += cs_map.sum(dim=(-2, -1), dtype=torch.float64)
        if luminance:
            ssim_map = mu1_mu2.mul_(2).add_(c1).div_(mu1_sq.add_(mu2_sq).add_(c1)).mul_(cs_map)
            sums[0] += ssim_map.sum(dim=(-2, -1), dtype=torch.float64)
    means = (sums / (out_h * out_w)).to(torch.float32)
    return (means[0] if luminance else None), means[1]


def _avg_pool_2x2(planes: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(planes, 2, padding=[H % 2, W % 2])`` (zeros padded, counted) on ``(M, H, W)``
    float32 (or uint8, read as float32), summed in the kernel's order (row by row) so the values are
    the same; ~4x faster on a CPU."""
    pad_h, pad_w = planes.shape[-2] % 2, planes.shape[-1] % 2
    if pad_h or pad_w:  # an odd side is padded on both ends, but no window reaches the far pad
        planes = F.pad(planes, (pad_w, 0, pad_h, 0))

    def as_float(view: torch.Tensor) -> torch.Tensor:
        return view if view.dtype == torch.float32 else view.to(torch.float32)

    top, bottom = planes[..., 0::2, :], planes[..., 1::2, :]
    pooled = as_float(top[..., 0::2]) + as_float(top[..., 1::2])
    return pooled.add_(as_float(bottom[..., 0::2])).add_(as_float(bottom[..., 1::2])).div_(4)


def _ms_ssim_planes(ref: torch.Tensor, dist: torch.Tensor, weights: tuple[float, ...], taps: list[float]) -> torch.Tensor:
    """MS-SSIM of single-channel planes ``(M, H, W)`` (uint8 or float32, values 0..255) -> ``(M,)``.
    The finest scale reads the planes as they are (strips are converted as they are copied)."""
    if ref.dtype != torch.uint8:
        ref, dist = ref.to(torch.float32), dist.to(torch.float32)
    terms = []
    for scale in range(len(weights)):
        ssim, cs = _ssim_means(ref, dist, taps, luminance=scale == len(weights) - 1)
        if scale == len(weights) - 1:
            terms.append(torch.relu(ssim))
            break
        terms.append(torch.relu(cs))
        ref, dist = _avg_pool_2x2(ref.to(torch.float32)), _avg_pool_2x2(dist.to(torch.float32))
    stacked = torch.stack(terms)  # (scales, M)
    return torch.prod(stacked ** stacked.new_tensor(weights).view(-1, 1), dim=0)


def _ms_ssim_batch(ref: torch.Tensor, dist: torch.Tensor, weights: tuple[float, ...], win_px: int) -> torch.Tensor:
    """MS-SSIM of ``(N, C, H, W)`` batches in 0..255 (float, or uint8) -> ``(N,)`` float32, the mean over
    channels, as pytorch-msssim computes it; planes go through ``_ms_ssim_planes`` in cache-sized groups."""
    n_frames, n_channels, height, width = ref.shape
    taps = _fspecial_gauss_1d(win_px, MS_SSIM_WIN_SIGMA_PX).flatten().tolist()
    ref_planes, dist_planes = ref.reshape(-1, height, width), dist.reshape(-1, height, width)
    group = max(1, GROUP_PIXELS // (height * width))
    values = [_ms_ssim_planes(ref_planes[start : start + group], dist_planes[start : start + group], weights, taps)
              for start in range(0, ref_planes.shape[0], group)]
    per_plane = torch.cat(values) if values else torch.zeros(0, device=ref.device)
    return per_plane.view(n_frames, n_channels).mean(dim=1)
