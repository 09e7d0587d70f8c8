"""The paper's embedding analysis (appendix A.8, Table 21, Figure 13) on fitted ``cnerv fit`` files.

Each method's embedding of a frame is flattened to one vector (CNeRV: (d, n_h, n_w) -> d*n_h*n_w
values; NeRV: its index encoding). Per method: uniformity (mean pairwise distance) over the seen,
unseen and all frames, the mean distance between consecutive frames, and their ratio; between
methods: linear CKA (Kornblith et al. 2019) on the same frames. Everything is computed in float64
on the CPU; files are read as untrusted input (safetensors and JSON only, nothing unpickled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnervcodec.errors import BadInputError, CheckpointError
from cnervcodec.eval.rdplot import pyplot

MAX_FRAMES = 1_000_000
BLOCK_ELEMENTS = 1 << 22  # distances held at once by ``uniformity`` (32 MiB of float64)
DECIMALS = 4


@dataclass(frozen=True, eq=False)
class LabeledEmbeddings:
    """One method's per-frame embeddings, flattened: (n, D) float64 on the CPU, and its training split."""

    label: str
    arch: str
    embeddings: torch.Tensor
    seen: torch.Tensor
    unseen: torch.Tensor


def _flat(emb: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n, D) float64: each frame's embedding as one vector (a 1-D input: one value per frame)."""
    return (emb[:, None] if emb.ndim == 1 else emb.flatten(1)).double()


def uniformity(emb: torch.Tensor) -> float:
    """Mean Euclidean distance over all pairs i < j of the rows of ``emb`` (n, D); nan when n < 2.

    The paper cites Wang & Isola's hypersphere uniformity, but its figures (NeRV 3.97) and its text
    ("average distance between all embeddings") are a plain mean pairwise distance of unnormalized
    embeddings, which is what this is. Rows are taken in blocks so that memory stays bounded for
    long clips; distances are computed directly, not through ||a||^2 + ||b||^2 - 2ab, whose cancellation
    blurs the small distances between near-identical embeddings.
    """
    emb = _flat(emb)
    n = len(emb)
    if n < 2:
        return math.nan
    rows = max(1, min(n, BLOCK_ELEMENTS // n))
    total = 0.0
    for start in range(0, n, rows):
        block = torch.cdist(emb[start : start + rows], emb[start:], compute_mode="donot_use_mm_for_euclid_dist")
        total += torch.triu(block, diagonal=1).sum().item()  # local column > local row: pairs j > i only
    return total / (n * (n - 1) / 2)


def neighbour_distance(emb: torch.Tensor) -> float:
    """Mean Euclidean distance between the embeddings of frames t and t+1, in clip order; nan when n < 2."""
    emb = _flat(emb)
    if len(emb) < 2:
        return math.nan
    return torch.linalg.vector_norm(emb[1:] - emb[:-1], dim=1).mean().item()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two methods' embeddings (n, p) and (n, q) of the same n frames; nan when either is constant.

    Equal to HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, L = Y Y^T (the (n-1)^-2 factors
    cancel). With centred columns it is ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) in feature space, or
    tr(K L) / (||K||_F ||L||_F) with the centred Gram matrices; whichever needs the smaller matrices is used
    (a few long embeddings: the n x n Gram matrices; many frames of short ones: feature space).
    """
    x, y = _flat(x), _flat(y)
    if len(x) != len(y):
        raise BadInputError(f"CKA needs the same frames: {len(x)} and {len(y)} embeddings")
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    n, p, q = len(x), x.shape[1], y.shape[1]
    if 2 * n * n < p * q + p * p + q * q:
        gram_x, gram_y = x @ x.T, y @ y.T
        cross, norm_x, norm_y = (gram_x * gram_y).sum(), gram_x.norm(), gram_y.norm()
    else:
        cross, norm_x, norm_y = (y.T @ x).square().sum(), (x.T @ x).norm(), (y.T @ y).norm()
    denominator = (norm_x * norm_y).item()
    return cross.item() / denominator if denominator > 0 else math.nan


def cka_matrix(embeddings: list[torch.Tensor]) -> list[list[float]]:
    """Linear CKA of every pair of methods: symmetric, ones on the diagonal (nan for a constant embedding)."""
    size = len(embeddings)
    matrix = [[math.nan] * size for _ in range(size)]
    for i in range(size):
        for j in range(i, size):
            matrix[i][j] = matrix[j][i] = linear_cka(embeddings[i], embeddings[j])
    return matrix


def _rounded(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, DECIMALS)


def embedding_measures(emb: torch.Tensor, seen: torch.Tensor, unseen: torch.Tensor) -> dict[str, float | None]:
    """Table 21's columns for one method: uniformity over seen / unseen / all frames, neighbour distance
    over the whole clip, and neighbour / uniformity_all; None where a value is undefined (fewer than two
    frames in a set, e.g. no unseen frames, or all embeddings equal)."""
    emb = _flat(emb)
    spread, neighbour = uniformity(emb), neighbour_distance(emb)
    normalized = neighbour / spread if math.isfinite(spread) and spread > 0 else math.nan
    return {"uniformity_seen": _rounded(uniformity(emb[seen])), "uniformity_unseen": _rounded(uniformity(emb[unseen])),
            "uniformity_all": _rounded(spread), "neighbour_distance": _rounded(neighbour),
            "normalized_distance": _rounded(normalized)}


def analyze(items: list[LabeledEmbeddings]) -> dict[str, Any]:
    """Every method's measures and the CKA matrix between them; the methods must embed the same frames."""
    if not items:
        raise BadInputError("no embeddings to analyze")
    counts = {item.label: len(item.embeddings) for item in items}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{label} {n}" for label, n in counts.items())
        raise BadInputError(f"the fits embed different numbers of frames ({listed}): CKA compares the same frames")
    methods = [{"label": item.label, "arch": item.arch, "frames": len(item.embeddings),
                "dim": item.embeddings.shape[1], "seen_frames": len(item.seen), "unseen_frames": len(item.unseen),
                **embedding_measures(item.embeddings, item.seen, item.unseen)} for item in items]
    matrix = cka_matrix([item.embeddings for item in items])
    return {"methods": methods,
            "cka": {"labels": [item.label for item in items], "matrix": [[_rounded(v) for v in row] for row in matrix]}}


def _file_format(path: Path) -> str | None:
    """The ``format`` of a safetensors file's metadata; None when it cannot be read as one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return (handle.metadata() or {}).get("format")
    except Exception:  # unreadable: read_safetensors says why, in its own words
        return None


def _fit_fields(path: Path, info: Any) -> tuple[str, int, dict[str, Any]]:
    """(arch, frame count T, fit config dict) from a file's ``info``, each checked."""
    fit = info.get("fit") if isinstance(info, dict) else None
    fit_config = info.get("fit_config") if isinstance(info, dict) else None
    frames = fit.get("input", {}).get("frames") if isinstance(fit, dict) and isinstance(fit.get("input"), dict) else None
    arch = fit.get("arch") if isinstance(fit, dict) else None
    if not isinstance(arch, str) or not isinstance(fit_config, dict) or type(frames) is not int:
        raise CheckpointError(f"{path}: no fit info (arch, frames, fit config): not a file written by cnerv fit -o")
    if not 1 <= frames <= MAX_FRAMES:
        raise CheckpointError(f"{path}: frame count {frames} is not between 1 and {MAX_FRAMES}")
    return arch, frames, fit_config


def _split(path: Path, n_frames: int, fit_config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fit's seen and unseen frames: by ``fit_every`` when above 1, else by ``holdout``."""
    from cnervcodec.fit import fit_every_split, holdout_split

    holdout, fit_every = fit_config.get("holdout", 0), fit_config.get("fit_every", 1)
    if type(holdout) is not int or type(fit_every) is not int or holdout < 0 or fit_every < 1:
        raise CheckpointError(f"{path}: bad holdout {holdout!r} or fit_every {fit_every!r} in the fit config")
    return fit_every_split(n_frames, fit_every) if fit_every > 1 else holdout_split(n_frames, holdout)


def _nerv_embeddings(path: Path, config_data: Any, n_frames: int) -> torch.Tensor:
    """NeRV's embedding of each frame: its index encoding, from the file's model config."""
    from cnervcodec.config import ModelConfig
    from cnervcodec.embedding import frame_times, index_encoding

    try:
        config = ModelConfig.from_dict(config_data)
    except (BadInputError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config ({' '.join(str(exc).split())})") from None
    return index_encoding(frame_times(torch.arange(n_frames), n_frames), config.nerv_pe_freqs, config.nerv_pe_base)


def load_embeddings(path: str | Path, label: str | None = None) -> LabeledEmbeddings:
    """One fit's per-frame embeddings from a ``cnerv fit -o X.safetensors`` model or baseline file."""
    from cnervcodec.safetensors_files import BASELINE_FORMAT, MODEL_FORMAT, read_safetensors

    path = Path(path)
    file_format = _file_format(path)
    if file_format not in (MODEL_FORMAT, BASELINE_FORMAT):
        if file_format is None:
            read_safetensors(path, MODEL_FORMAT)  # raises the reason: missing, too large, not safetensors
        raise CheckpointError(f"{path}: a {file_format!r} file, not a fitted model or baseline (cnerv fit -o X.safetensors)")
    tensors, meta = read_safetensors(path, file_format)
    arch, n_frames, fit_config = _fit_fields(path, meta.get("info"))
    embeddings = tensors.get("embeddings")
    if embeddings is None and file_format == MODEL_FORMAT and arch == "nerv":
        embeddings = _nerv_embeddings(path, meta.get("model_config"), n_frames)
    if embeddings is None:
        raise CheckpointError(f"{path}: holds no embeddings tensor")
    if embeddings.ndim < 2 or len(embeddings) != n_frames or embeddings.numel() == 0:
        raise CheckpointError(f"{path}: embeddings have shape {tuple(embeddings.shape)}, expected ({n_frames}, ...)")
    if not embeddings.is_floating_point() or not torch.isfinite(embeddings).all():
        raise CheckpointError(f"{path}: embeddings are not finite floating-point values")
    seen, unseen = _split(path, n_frames, fit_config)
    return LabeledEmbeddings(label=label or path.stem, arch=arch, embeddings=embeddings.reshape(n_frames, -1).double(),
                             seen=seen, unseen=unseen)


def plot_cka(cka: dict[str, Any], path: Path, title: str = "linear CKA between embeddings") -> None:
    """``analyze``'s CKA matrix as a heatmap PNG (the paper's Figure 13), written atomically."""
    from cnervcodec.atomic import atomic_path

    plt = pyplot()
    labels, matrix = cka["labels"], [[math.nan if v is None else v for v in row] for row in cka["matrix"]]
    side = 2.5 + 0.7 * len(labels)
    figure, axes = plt.subplots(figsize=(side + 1.0, side))
    try:
        image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axes.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                text = "n/a" if math.isnan(value) else f"{value:.2f}"
                axes.text(j, i, text, ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
        figure.colorbar(image, ax=axes)
        axes.set_title(title, fontsize=10)
        figure.tight_layout()
        with atomic_path(Path(path)) as temp:
            figure.savefig(temp, format="png")
    finally:
        plt.close(figure)
