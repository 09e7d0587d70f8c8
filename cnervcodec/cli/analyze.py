"""``cnerv analyze``: the paper's embedding analysis (appendix A.8, Table 21) of several fits of one clip.

Reads ``cnerv fit -o X.safetensors`` files (CNeRV, NeRV and the paper's baselines), calls
``eval.embedding_analysis`` and prints a table, JSON, and optionally a CKA heatmap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnervcodec.atomic import check_writable
from cnervcodec.cli.common import emit

EPILOG = """\b
Examples:
  cnerv fit clip.mp4 --holdout 5 -o cnerv.safetensors
  cnerv fit clip.mp4 --holdout 5 --arch nerv -o nerv.safetensors
  cnerv analyze cnerv.safetensors nerv.safetensors
  cnerv analyze cnerv.safetensors nerv.safetensors --label CNeRV --label NeRV --json
  cnerv analyze *.safetensors --plot cka.png -y

\b
Uniformity: the mean Euclidean distance between all pairs of a method's per-frame embeddings (each
flattened to one vector), over its seen, unseen and all frames. Neighbour: the mean distance between
frames t and t+1; normalized: neighbour / uniformity (all). CKA: linear centred kernel alignment
between two methods' embeddings of the same frames (1: the same up to rotation and scale).
"""


def _cell(value: float | None, width: int = 8) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.4f}"


def format_analysis(r: dict[str, Any]) -> str:
    """The report as a table (one row per method) and the CKA matrix below it."""
    label_width = max(8, *(len(m["label"]) for m in r["methods"]))
    header = (f"{'method':<{label_width}} {'arch':<12} {'frames':>6} {'dim':>7}  {'unif.seen':>9} {'unseen':>8} "
              f"{'all':>8}  {'neighbour':>9} {'normalized':>10}")
    lines = ["embeddings (uniformity: mean pairwise distance; neighbour: mean distance of frames t, t+1)", header]
    for m in r["methods"]:
        lines.append(f"{m['label']:<{label_width}} {m['arch']:<12} {m['frames']:>6} {m['dim']:>7}  "
                     f"{_cell(m['uniformity_seen'], 9)} {_cell(m['uniformity_unseen'])} {_cell(m['uniformity_all'])}  "
                     f"{_cell(m['neighbour_distance'], 9)} {_cell(m['normalized_distance'], 10)}")
    labels = r["cka"]["labels"]
    column = max(7, *(len(label) for label in labels))
    lines += ["", "linear CKA", " " * label_width + "".join(f" {label:>{column}}" for label in labels)]
    for label, row in zip(labels, r["cka"]["matrix"]):
        lines.append(f"{label:<{label_width}}" + "".join(f" {_cell(v, column)}" for v in row))
    return "\n".join(lines)


@click.command("analyze", epilog=EPILOG)
@click.argument("paths", metavar="FIT.safetensors...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, metavar="NAME",
              help="A name for each file, in order (repeat once per file) [default: the file names].")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CKA matrix as a heatmap PNG (needs matplotlib).")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an existing --plot file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def analyze_command(paths: tuple[Path, ...], labels: tuple[str, ...], plot: Path | None, overwrite: bool,
                    as_json: bool) -> None:
    """Compare the per-frame embeddings of fits of the same clip: uniformity, neighbour distance, CKA.

    Each FIT is a float file written by cnerv fit -o X.safetensors (CNeRV's content-adaptive embeddings,
    NeRV's index encoding) or a paper baseline's file; all must cover the same frames. Seen and unseen
    frames follow each fit's own --holdout.
    """
    from cnervcodec.eval.embedding_analysis import analyze, load_embeddings, plot_cka
    from cnervcodec.eval.rdplot import require_matplotlib

    if labels and len(labels) != len(paths):
        raise click.UsageError(f"give one --label per file: {len(labels)} labels for {len(paths)} files")
    if plot is not None:
        check_writable(plot, overwrite, paths)
        require_matplotlib()
    names = labels or tuple(path.stem for path in paths)
    report = analyze([load_embeddings(path, name) for path, name in zip(paths, names)])
    if plot is not None:
        plot_cka(report["cka"], plot)
        report["plot"] = str(plot)
    emit(report, as_json, format_analysis)
