"""The package's layers hold: the import contracts, no import cycles, a standard-library records layer.

The contracts themselves are in pyproject.toml (``[tool.importlinter]``; ``make lint`` runs
them too). These tests also state the exact rules the architecture note promises, over the
import graph that grimp builds (imports inside functions and under ``TYPE_CHECKING`` count).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vpd"

#: The only imports allowed against the layers: records import their renderer when displayed.
DISPLAY_IMPORTS = {
    ("vpd.traces.trace", "vpd.render.text"),
    ("vpd.traces.trace", "vpd.render.html"),
    ("vpd.traces.execution", "vpd.render.text"),
    ("vpd.traces.execution", "vpd.render.html"),
    ("vpd.solve", "vpd.render.text"),
    ("vpd.solve", "vpd.render.html"),
}
DISPLAY_METHODS = {"__repr__", "_repr_html_"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("vpd", include_external_packages=True, cache_dir=None)


def test_import_contracts_hold(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def _internal_graph(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if module == "vpd" or module.startswith("vpd."):
            imported = {m for m in graph.find_modules_directly_imported_by(module) if m.startswith("vpd")}
            edges[module] = {m for m in imported if (module, m) not in DISPLAY_IMPORTS}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_vpd_module_is_part_of_an_import_cycle(graph: grimp.ImportGraph) -> None:
    assert _cycles(_internal_graph(graph)) == []


def test_the_cycle_finder_finds_cycles() -> None:
    # The check above must be able to fail.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_records_layer_imports_only_the_standard_library_and_errors(graph: grimp.ImportGraph) -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    records = [m for m in graph.modules if m == "vpd.traces" or m.startswith("vpd.traces.")]
    assert {"vpd.traces.trace", "vpd.traces.execution", "vpd.traces.files", "vpd.traces.writer"} <= set(records)
    for module in records:
        for imported in graph.find_modules_directly_imported_by(module):
            if (module, imported) in DISPLAY_IMPORTS:
                continue
            if imported.startswith("vpd"):
                assert imported == "vpd.errors" or imported.startswith("vpd.traces"), f"{module} imports {imported}"
            else:
                assert imported.split(".")[0] in stdlib, f"{module} imports {imported}, not the standard library"


def _render_imports(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    """Every import of a ``vpd.render`` module in ``tree``, with the node that encloses it."""
    found: list[tuple[ast.AST, str]] = []
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module, *(f"{child.module}.{alias.name}" for alias in child.names)]
            found += [(parent, name) for name in names if name == "vpd.render" or name.startswith("vpd.render.")]
    return found


@pytest.mark.parametrize("importer", sorted({importer for importer, _ in DISPLAY_IMPORTS}))
def test_display_imports_sit_only_inside_display_methods(importer: str) -> None:
    path = PACKAGE.joinpath(*importer.split(".")[1:]).with_suffix(".py")
    imports = _render_imports(ast.parse(path.read_text()))
    allowed = {imported for source, imported in DISPLAY_IMPORTS if source == importer}
    assert {name for _, name in imports} & allowed == allowed, f"{importer}: drop unused allowances"
    for node, name in imports:
        where = f"{importer} imports {name} at line {getattr(node, 'lineno', '?')}"
        assert isinstance(node, ast.FunctionDef) and node.name in DISPLAY_METHODS, (
            f"{where}, outside __repr__/_repr_html_"
        )


def test_the_display_check_sees_every_form_of_import() -> None:
    tree = ast.parse(
        "import vpd.render.text\n"
        "def f():\n    from vpd.render import html\n"
        "def __repr__(self):\n    from vpd.render.text import format_trace\n"
    )
    places = [(getattr(node, "name", "module"), name) for node, name in _render_imports(tree)]
    assert ("module", "vpd.render.text") in places
    assert ("f", "vpd.render.html") in places and ("__repr__", "vpd.render.text") in places
