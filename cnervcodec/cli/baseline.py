"""``cnerv fit --arch`` for the paper's baselines (``cnervcodec.baselines``): size matching, the fit, its file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnervcodec.cli.common import ProgressLine, StopFlag, under_torchrun
from cnervcodec.config import FitConfig, parse_grid


def fit_baseline_command(clip, arch: str, size: str, grid: str, embed_dim: int | None, fit_config: FitConfig,
                         device, output: Path | None, quiet: bool) -> dict[str, Any]:
    """Fit ``clip`` with baseline ``arch`` matched to CNeRV at ``size``; write ``output`` (.safetensors) if
    given; return the report."""
    from cnervcodec.baselines.networks import matched_config
    from cnervcodec.baselines.report import fit_baseline_clip, save_baseline

    if under_torchrun():
        raise click.UsageError(f"--arch {arch} fits in one process: run it without torchrun")
    if output is not None and output.suffix != ".safetensors":
        raise click.UsageError(f"--arch {arch} writes its fit as .safetensors, not {output.suffix or 'no extension'}")
    config, _ = matched_config(arch, size, clip.height, clip.width, grid=parse_grid(grid, clip.height, clip.width),
                               embed_dim=embed_dim)
    progress = None if quiet else ProgressLine(config.arch)
    try:
        with StopFlag() as stop:
            fit, report = fit_baseline_clip(clip, config, fit_config, device, progress=progress, should_stop=stop,
                                            size=size)
    finally:
        if progress is not None:
            progress.close()
    if output is not None:
        report["model"] = str(output)
        save_baseline(output, fit, report, device)
    return report
