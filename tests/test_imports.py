"""The package's imports run one way: no cycle among ``pipeline``'s modules.

Every ``import`` and ``from ... import`` is read from the source (module level, inside
functions and under ``if TYPE_CHECKING:`` alike), so a cycle hidden by a function-level
import fails here too. The test also checks that importing the package's modules leaves
matplotlib's backend as it was.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """Return the package module that ``name`` (a module or a module attribute) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Return ``{module: {pipeline modules it imports}}``.

    A package's ``__init__`` is its own node: ``from pipeline.io import csv`` is an edge to
    ``pipeline.io.csv``, ``from pipeline.io import get_reader`` one to ``pipeline.io``. The
    top-level ``pipeline/__init__`` re-exports lazily (by name, on first attribute access)
    and is left out.
    """
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join([*base, node.module] if node.module else base)
                else:
                    prefix = node.module or ""
                # `from pkg import sub` imports the module pkg.sub; `from mod import name`
                # imports mod
                targets = [
                    f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix
                    for a in node.names
                ]
            for t in targets:
                if not t.startswith("pipeline"):
                    continue
                dep = _resolve(t, modules)
                if dep and dep != mod and dep != "pipeline":
                    graph[mod].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_reads_imports_inside_functions() -> None:
    graph = import_graph()
    # cli imports everything inside its command functions (to start fast)
    assert "pipeline.stages" in graph["pipeline.cli"]
    assert "pipeline.store" in graph["pipeline.cli"]


@pytest.mark.parametrize("backend", ["svg", "pdf"])
def test_importing_every_module_keeps_the_matplotlib_backend(backend: str) -> None:
    names = sorted(m for m in _modules() if not m.endswith("__main__"))
    code = (
        "import importlib, matplotlib\n"
        f"matplotlib.use({backend!r})\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().lower() == backend


#: The layers of DESIGN.md, top to bottom: a module imports only from its own layer or above.
#: ``cluster`` (profiles, starting a cluster, the worker count) needs only the schema, and
#: ingest and the table ask it how many workers share the work, so it sits just below spec.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("pipeline.exceptions", "pipeline._fs", "pipeline._data", "pipeline._lazy"),
    ("pipeline.spec",),
    ("pipeline.cluster",),
    ("pipeline.io",),
    ("pipeline._zarr_v3", "pipeline._time", "pipeline.store", "pipeline.ingest"),
    ("pipeline.preprocessing", "pipeline.windows", "pipeline.labels"),
    ("pipeline.spectra", "pipeline.quality", "pipeline.features"),
    ("pipeline.table",),
    ("pipeline.plots", "pipeline.learn", "pipeline.explore", "pipeline.predict"),
    ("pipeline.check", "pipeline.cache", "pipeline.stages"),
    ("pipeline.cli", "pipeline.__main__"),
)


def layer_of(module: str) -> int:
    """Return the index in :data:`LAYERS` of ``module`` (its longest matching prefix)."""
    best, rank = "", -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    if rank < 0:
        msg = f"module {module!r} is in no layer of tests/test_imports.py LAYERS: add it"
        raise AssertionError(msg)
    return rank


def test_imports_follow_the_layers() -> None:
    upward = [
        f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)})"
        for mod, deps in sorted(import_graph().items())
        for dep in sorted(deps)
        if layer_of(dep) > layer_of(mod)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)
