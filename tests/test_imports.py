"""The module layout's rules (docs/modules.md), checked by parsing the source: what each module may
import, directly or through other modules of the package; no import cycles; no module over 450 lines;
the byte-only ``cnerv info`` loads no torch; only ``codec`` turns frames into a ``.cnrv``'s bytes."""

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cnervcodec"
MAX_MODULE_LINES = 450

# module (or package prefix ending in ".") -> what it must not reach: third-party top-level packages or
# cnervcodec modules / subpackages, through any chain of the package's own imports.
FORBIDDEN = {
    "cnervcodec.errors": {"torch", "numpy", "av", "click", "cnervcodec.config"},
    "cnervcodec.config": {"torch", "numpy", "av", "click"},
    "cnervcodec.rate": {"torch", "numpy", "av", "click"},
    "cnervcodec.atomic": {"torch", "numpy", "av", "click"},
    "cnervcodec.format.": {"torch", "av", "click", "pytorch_msssim", "cnervcodec.model", "cnervcodec.codec",
                           "cnervcodec.cli", "cnervcodec.eval"},
    "cnervcodec.quantize": {"torch", "av", "click", "cnervcodec.format.entropy"},
    "cnervcodec.embedding": {"av", "click", "cnervcodec.fit", "cnervcodec.video_io", "cnervcodec.format"},
    "cnervcodec.model": {"av", "click", "cnervcodec.fit", "cnervcodec.format", "cnervcodec.codec"},
    "cnervcodec.fit": {"av", "click", "cnervcodec.video_io", "cnervcodec.format", "cnervcodec.codec"},
    "cnervcodec.prune": {"av", "click", "numpy", "cnervcodec.format", "cnervcodec.codec"},
    "cnervcodec.fit_report": {"av", "click", "cnervcodec.format", "cnervcodec.codec"},
    "cnervcodec.safetensors_files": {"av", "click", "cnervcodec.fit", "cnervcodec.format"},
    "cnervcodec.metrics": {"av", "click", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.format"},
    "cnervcodec.tensor_coding": {"av", "click", "cnervcodec.fit", "cnervcodec.codec", "cnervcodec.format.stream"},
    "cnervcodec.interpolate": {"av", "click", "cnervcodec.fit", "cnervcodec.format", "cnervcodec.codec"},
    "cnervcodec.flops": {"av", "click", "cnervcodec.fit", "cnervcodec.format", "cnervcodec.codec"},
    "cnervcodec.trained_model": {"av", "click", "cnervcodec.codec", "cnervcodec.video_io"},
    "cnervcodec.codec": {"av", "click", "cnervcodec.video_io", "cnervcodec.video_out", "cnervcodec.audio"},
    "cnervcodec.video_frames": {"click", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.metrics",
                                "cnervcodec.format"},
    "cnervcodec.video_io": {"click", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.metrics",
                            "cnervcodec.embedding", "cnervcodec.codec"},
    "cnervcodec.video_out": {"click", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.codec"},
    "cnervcodec.audio": {"torch", "click", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.codec"},
    "cnervcodec.eval.bdrate": {"torch", "av", "click", "scipy", "cnervcodec.model", "cnervcodec.codec"},
    "cnervcodec.eval.curves": {"torch", "av", "click", "scipy", "cnervcodec.model", "cnervcodec.codec"},
    "cnervcodec.eval.anchors": {"click", "cnervcodec.model", "cnervcodec.fit", "cnervcodec.codec"},
    "cnervcodec.eval.": {"click", "scipy"},
    "cnervcodec.baselines.config": {"torch", "numpy", "av", "click"},
    "cnervcodec.baselines.": {"av", "click", "cnervcodec.codec", "cnervcodec.format", "cnervcodec.video_io"},
}
# Every module outside these places must not reach them: the CLI is imported by nothing else, and
# evaluation is apart from the codec core.
ONLY_FROM = {"cnervcodec.cli": ("cnervcodec.cli", "cnervcodec.__main__"),
             "cnervcodec.eval": ("cnervcodec.eval", "cnervcodec.cli", "cnervcodec.__main__")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


@cache
def imports(name: str) -> tuple[tuple[str, bool], ...]:
    """(imported module, at module level) for every import statement of a module of the package;
    ``from pkg import x`` names the submodule ``pkg.x`` when there is one. Imports inside functions
    run when the function does; ``if TYPE_CHECKING:`` blocks never run."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, at_top: bool) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, at_top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules()]
            found.extend((sub, at_top) for sub in subs or [node.module])
        inside = at_top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(modules()[name].read_text()), True)
    return tuple(found)


def own_edges(name: str, module_level_only: bool = False) -> set[str]:
    """The package's modules that importing ``name`` (or calling into it) runs, parents included.

    A package's ``__init__`` counts only its module-level imports: entering it as a parent runs just
    those, and the API's imports inside its functions run only when a user calls them.
    """
    only_top = module_level_only or is_package(name)
    edges = set()
    for imported, at_top in imports(name):
        if only_top and not at_top:
            continue
        parts = imported.split(".")
        edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules()}
    edges.discard(name)
    return edges


def reached(name: str, module_level_only: bool = False) -> set[str]:
    """Every package module reachable from ``name`` through the package's own imports."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for nxt in own_edges(current, module_level_only) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def external(name: str) -> set[str]:
    return {imported.split(".")[0] for imported, _ in imports(name) if not imported.startswith("cnervcodec")}


def violations(name: str, rules: set[str]) -> list[str]:
    """Each forbidden thing ``name`` reaches, with the module through which it does."""
    bad = []
    for via in sorted({name} | reached(name)):
        hits = {r for r in rules if r in external(via) or via == r or via.startswith(r + ".")}
        bad += [f"{rule} (through {via})" for rule in sorted(hits)]
    return bad


def rules_for(name: str) -> set[str]:
    rules: set[str] = set()
    for key, forbidden in FORBIDDEN.items():
        if name == key or (key.endswith(".") and name.startswith(key)):
            rules |= forbidden
    return rules


def test_every_rule_names_a_real_module():
    for key in FORBIDDEN:
        assert key.rstrip(".") in modules(), key


@pytest.mark.parametrize("name", sorted(n for n in modules() if rules_for(n)))
def test_module_respects_its_import_rules_transitively(name):
    assert not violations(name, rules_for(name)), f"{name} reaches {violations(name, rules_for(name))}"


@pytest.mark.parametrize("place", sorted(ONLY_FROM))
def test_cli_and_eval_are_imported_only_from_above(place):
    allowed = ONLY_FROM[place]
    for name in modules():
        if name == "cnervcodec" or any(name == a or name.startswith(a + ".") for a in allowed):
            continue
        into = sorted(m for m in reached(name) if m == place or m.startswith(place + "."))
        assert not into, f"{name} reaches {into}"


def test_no_import_cycles():
    for name in modules():
        assert name not in reached(name), f"{name} imports itself through {sorted(reached(name))}"


def test_the_checker_sees_chains_and_cycles(tmp_path, monkeypatch):
    """The rules above can fail: a chain through a second module and a cycle are both found."""
    fake = {"cnervcodec.a": "import cnervcodec.b\n", "cnervcodec.b": "def f():\n    import torch\n    import cnervcodec.a\n"}
    monkeypatch.setattr(sys.modules[__name__], "modules", lambda: {k: tmp_path / f"{k}.py" for k in fake})
    for key, text in fake.items():
        (tmp_path / f"{key}.py").write_text(text)
    imports.cache_clear()
    try:
        assert violations("cnervcodec.a", {"torch"}) == ["torch (through cnervcodec.b)"]
        assert "cnervcodec.a" in reached("cnervcodec.a")
        assert reached("cnervcodec.a", module_level_only=True) == {"cnervcodec.b"}
    finally:
        imports.cache_clear()


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_the_commands_load_no_torch_until_they_run():
    """Importing the CLI (what ``cnerv --help`` and ``cnerv info`` pay for) reaches no torch at import time."""
    torch_at_import = [m for m in reached("cnervcodec.cli.main", module_level_only=True) | {"cnervcodec.cli.main"}
                       if {"torch", "pytorch_msssim", "av"} & external_at_top(m)]
    assert not torch_at_import


def external_at_top(name: str) -> set[str]:
    return {imported.split(".")[0] for imported, at_top in imports(name) if at_top and not imported.startswith("cnervcodec")}


def test_cnerv_info_does_not_import_torch(tmp_path):
    """In a fresh interpreter: ``cnerv info`` on a real .cnrv (and --json) runs without torch ever loading."""
    stream = ROOT / "tests" / "data" / "golden_stream_v1_0.cnrv"
    script = (
        "import sys\n"
        "from cnervcodec.cli.main import main\n"
        "for args in (['info', sys.argv[1]], ['info', sys.argv[1], '--json']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_msssim', 'av'))\n"
        "print('LOADED', loaded)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(stream)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-2])["frames"] == 4  # the --json report, so info really ran
    assert run.stdout.splitlines()[-1] == "LOADED []"


def test_only_codec_writes_streams():
    """Frames become .cnrv bytes in one place: nothing else in the package or the benchmarks calls the
    stream writer or builds a Container (the format module itself aside)."""
    sources = {name: path for name, path in modules().items() if name not in ("cnervcodec.codec", "cnervcodec.format.stream")}
    sources |= {f"benchmarks.{p.stem}": p for p in (ROOT / "benchmarks").glob("*.py")}
    for name, path in sources.items():
        tree = ast.parse(path.read_text())
        called = {getattr(n.func, "id", getattr(n.func, "attr", None)) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not {"write_container", "Container"} & called, name
        assert "write_container" not in imported, name


def test_no_pickle_anywhere():
    for path in modules().values():
        text = path.read_text()
        assert "import pickle" not in text and "torch.load(" not in text, path


def test_library_modules_do_not_print():
    for name, path in modules().items():
        if name.startswith("cnervcodec.cli") or name == "cnervcodec.__main__":
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]
        assert not calls, f"{name} calls print()"
