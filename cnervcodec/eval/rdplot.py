"""Rate-distortion plots as PNG (matplotlib, Agg backend, imported only when a plot is asked for).

matplotlib is an optional extra (``pip install 'cnervcodec[plot]'``): a missing install is a clear
one-line error, not an ImportError.
"""

from __future__ import annotations

from pathlib import Path

from cnervcodec.atomic import atomic_path
from cnervcodec.errors import BadInputError


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install 'cnervcodec[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def require_matplotlib() -> None:
    """Fail before a long run, not after it, when ``--plot`` cannot be honoured."""
    pyplot()


def plot_rd(
    curves: dict[str, list[tuple[float, float]]],
    path: Path,
    *,
    title: str,
    y_label: str = "PSNR YUV 4:2:0 6:1:1 (dB)",
    x_label: str = "rate (bpp: file bytes x 8 / (frames x W x H))",
) -> None:
    """One line with markers per curve (legend text = the dict key), written atomically to ``path``."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    try:
        for label, points in curves.items():
            ordered = sorted(points)
            axes.plot([r for r, _ in ordered], [d for _, d in ordered], marker="o", label=label)
        axes.set_xscale("log")
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.set_title(title, fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        with atomic_path(Path(path)) as temp:
            figure.savefig(temp, format="png")
    finally:
        plt.close(figure)
