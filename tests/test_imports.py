"""The module layout's import rules (docs/architecture), checked by parsing the source."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnervcodec"

# module -> top-level packages or cnervcodec modules it must not import
FORBIDDEN = {
    "config": {"torch", "av", "click", "numpy"},
    "errors": {"torch", "av", "click", "numpy", "cnervcodec"},
    "video_io": {"cnervcodec.model", "cnervcodec.fit", "cnervcodec.metrics", "cnervcodec.embedding", "click"},
    "embedding": {"av", "click", "cnervcodec.fit", "cnervcodec.video_io"},
    "model": {"cnervcodec.fit", "cnervcodec.entropy", "cnervcodec.container", "av", "click"},
    "fit": {"av", "click", "cnervcodec.video_io", "cnervcodec.cli"},
    "metrics": {"av", "click", "cnervcodec.model", "cnervcodec.fit"},
    "checkpoint": {"av", "click", "cnervcodec.fit"},
    "experiment": {"av", "click", "cnervcodec.cli"},
    "prune": {"av", "click", "numpy", "cnervcodec.entropy", "cnervcodec.container"},
    "quantize": {"torch", "av", "click", "cnervcodec.entropy"},
    "entropy": {"torch", "av", "click", "cnervcodec.container", "cnervcodec.model"},
    "container": {"torch", "constriction", "av", "click", "cnervcodec.model", "cnervcodec.codec"},
    "codec": {"av", "click", "cnervcodec.video_io", "cnervcodec.cli", "cnervcodec.video_out"},
    "info": {"torch", "av", "click", "constriction"},
    "video_out": {"cnervcodec.model", "cnervcodec.fit", "cnervcodec.codec", "click"},
    "bdrate": {"torch", "av", "click", "scipy", "cnervcodec.model", "cnervcodec.codec"},
    "anchors": {"cnervcodec.model", "cnervcodec.fit", "cnervcodec.codec", "click"},
    "rdcompare": {"click", "av", "cnervcodec.video_io", "cnervcodec.cli"},
    "atomic": {"torch", "av", "click", "numpy"},
    "modelfile": {"torch", "av", "click", "constriction", "cnervcodec.codec", "cnervcodec.model"},
    "reuse": {"av", "click", "cnervcodec.video_io", "cnervcodec.cli"},
    "audio": {"torch", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.codec", "click"},
}


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def violates(name: str, rule: str) -> bool:
    return name == rule or name.startswith(rule + ".")


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_respects_its_import_rules(module):
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.fail(f"{path} is missing")
    bad = sorted(n for n in imported_names(path) for rule in FORBIDDEN[module] if violates(n, rule))
    assert not bad, f"{module} imports {bad}"


def test_no_pickle_anywhere():
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "torch.load(" not in text, path.name


def test_library_modules_do_not_print():
    for path in PACKAGE.glob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]
        assert not calls, f"{path.name} calls print()"
