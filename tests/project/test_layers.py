"""Import layering of ``src/multiengine``, read from the code's own text (``ast``).

Layers, lowest first. A module may import modules of its own layer and of lower ones:

====  =====================================================================================
0     ``multiengine.errors``, ``multiengine.runtime``, ``multiengine.config``: the ground
      floor every process shares
1     ``multiengine.wire.*``: message framing, serialization, connection files
2     ``multiengine.engine.*``, ``multiengine.controller.*``, ``multiengine.client.*``: the
      three kinds of process, which never import each other
3     everything else: ``multiengine.cluster.*``, ``multiengine.magics``,
      ``multiengine.joblib_backend``, ``multiengine.bench*``, ``multiengine`` (the package
      facade) and ``multiengine.__main__``
====  =====================================================================================

The test fails, listing the offending edges with their lines, when

(a) modules import each other in a circle: any strongly connected component of more
    than one module, whether the imports are at module level or inside functions;
(b) a module imports a higher layer, or a package of layer 2 imports another one.

What counts as an import: every ``import`` and ``from ... import`` of ``multiengine.*``
anywhere in a module (module level, functions, classes), except those under
``if TYPE_CHECKING:`` (annotations only, never run). Relative imports are resolved, and
``from pkg import name`` counts as importing the submodule ``pkg.name`` when there is
one, else ``pkg``. ``importlib`` calls are not seen: the facade's lazy table is in
layer 3, which may import anything below it anyway.

Package ``__init__`` modules are modules of their own (``multiengine.engine`` is
``engine/__init__.py``), in their package's layer. Importing ``a.b.c`` is an edge to
``a.b.c`` only: Python runs the parents' ``__init__`` first, but that is not counted, or
every ``__init__`` that imports one of its submodules would be a cycle. An ``__init__``
that imports its own submodules, eagerly or inside a function, has edges to them like any
module, so a submodule that imports its package back (``from .. import engine``) closes a
cycle either way.
There is no allowlist: no cycle at all is accepted.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import multiengine

ROOT = "multiengine"
GROUND = frozenset({"multiengine.errors", "multiengine.runtime", "multiengine.config"})
PROCESSES = ("engine", "controller", "client")  # layer 2: never import each other

# Today's cycles inside multiengine.controller and multiengine.client, being removed by
# the controller rewrite (review-foundations.md §2 problem 1). Only ever delete entries.


@dataclass(frozen=True, order=True)
class Edge:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


# ---------------------------------------------------------------- the graph
def modules_of(package_dir: Path) -> dict[str, tuple[str, bool]]:
    """Module name -> (source text, is a package ``__init__``) for every module under it."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path.read_text(), is_package)
    return found


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, leaving out the bodies of ``if TYPE_CHECKING:``."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_edges(modules: Mapping[str, tuple[str, bool]]) -> set[Edge]:
    """The ``multiengine.*`` imports of each module (see the module docstring)."""
    edges = set()
    for name, (source, is_package) in modules.items():
        for node in _runtime_imports(ast.parse(source, name)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in modules else origin)
            for target in targets:
                if target.split(".")[0] != ROOT:
                    continue
                while target not in modules and "." in target:  # import a.b.c.attr? a.b.c
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    edges.add(Edge(name, target, node.lineno))
    return edges


def cycles(names: set[str], edges: set[Edge]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {n: [] for n in names}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
        graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def layer(module: str) -> tuple[int, str]:
    """(layer, part): the part is the package or module that owns it within the layer."""
    if module in GROUND:
        return 0, module
    part = module.split(".")[1] if "." in module else module
    if part == "wire":
        return 1, part
    if part in PROCESSES:
        return 2, part
    return 3, part


def layer_violations(edges: set[Edge]) -> list[tuple[Edge, str]]:
    """Each upward import, and each import between two packages of layer 2."""
    bad = []
    for e in sorted(edges):
        (low_, part), (high, other) = layer(e.source), layer(e.target)
        if high > low_:
            bad.append((e, f"upward, layer {low_} imports layer {high}"))
        elif low_ == high == 2 and part != other:
            bad.append((e, f"{part} and {other} never import each other"))
    return bad


def cycle_report(component: frozenset[str], edges: set[Edge]) -> str:
    inside = sorted(e for e in edges if e.source in component and e.target in component)
    return (
        "cycle of " + ", ".join(sorted(component)) + ":\n" + "\n".join(f"    {e}" for e in inside)
    )


# ---------------------------------------------------------------- the real package
def _package() -> tuple[dict[str, tuple[str, bool]], set[Edge]]:
    modules = modules_of(Path(multiengine.__file__).parent)
    return modules, import_edges(modules)


def test_modules_import_no_higher_layer_and_no_sibling_process() -> None:
    _, edges = _package()
    bad = layer_violations(edges)
    assert not bad, "imports against the layering (tests/project/test_layers.py):\n" + "\n".join(
        f"  {e}: {why}" for e, why in bad
    )


def test_modules_form_no_cycle() -> None:
    modules, edges = _package()
    found = cycles(set(modules), edges)
    assert not found, "import cycles:\n" + "\n".join(cycle_report(c, edges) for c in found)


def test_the_ground_floor_imports_only_the_standard_library_and_itself() -> None:
    modules, edges = _package()
    assert GROUND <= set(modules)
    assert {e.target for e in edges if e.source in GROUND} <= GROUND
    for name in GROUND:
        tree = ast.parse(modules[name][0])
        outside = {
            top
            for node in _runtime_imports(tree)
            for top in _top_level_names(node)
            if top not in sys.stdlib_module_names and top != ROOT
        }
        assert not outside, f"{name} imports {sorted(outside)}: the ground floor is stdlib only"


def _top_level_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    return [] if node.level else [(node.module or "").split(".")[0]]


# ---------------------------------------------------------------- the checker itself
FAKE = {
    "multiengine": ("def main():\n    from .cluster import cli\n", True),
    "multiengine.errors": ("", False),
    "multiengine.joblib_backend": ("", False),
    "multiengine.runtime": ("from .errors import KernelError\nfrom . import config\n", False),
    "multiengine.config": (
        "import multiengine.errors\nfrom multiengine import joblib_backend\n",
        False,
    ),
    "multiengine.wire": ("", True),
    "multiengine.wire.message": ("import json\nfrom .. import errors\n", False),
    "multiengine.wire.curve": ("def f():\n    from multiengine.client.core import Core\n", False),
    "multiengine.client": ("", True),
    "multiengine.client.core": ("from . import results\nfrom ..wire import message\n", False),
    "multiengine.client.results": ("def late():\n    from .core import Core\n", False),
    "multiengine.client.live": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..controller.relay import Controller\n"
        "else:\n    from .. import runtime\n",
        False,
    ),
    "multiengine.engine": ("def current():\n    from .main import Engine\n", True),
    "multiengine.engine.main": ("from .. import engine\n", False),
    "multiengine.controller": ("", True),
    "multiengine.controller.relay": ("from multiengine.engine.main import Engine\n", False),
    "multiengine.cluster": ("", True),
    "multiengine.cluster.cli": ("from ..client.core import Core\nimport multiengine.wire\n", False),
}


def test_the_checker_resolves_imports() -> None:
    edges = {(e.source, e.target) for e in import_edges(FAKE)}
    assert ("multiengine.runtime", "multiengine.config") in edges  # from . import <submodule>
    assert ("multiengine.config", "multiengine.errors") in edges  # import a.b
    assert ("multiengine.wire.message", "multiengine.errors") in edges
    assert ("multiengine.cluster.cli", "multiengine.wire") in edges
    assert ("multiengine.client.core", "multiengine.client.results") in edges
    assert ("multiengine.client.core", "multiengine.wire.message") in edges
    assert ("multiengine.client.results", "multiengine.client.core") in edges  # in a function
    assert ("multiengine.engine.main", "multiengine.engine") in edges  # a package __init__
    assert ("multiengine.client.live", "multiengine.runtime") in edges  # the else branch
    assert ("multiengine.client.live", "multiengine.controller.relay") not in edges
    assert not [e for e in edges if e[1] in ("json", "typing")]


def test_the_checker_finds_cycles_including_lazy_and_package_ones() -> None:
    found = cycles(set(FAKE), import_edges(FAKE))
    assert sorted(sorted(c) for c in found) == [
        ["multiengine.client.core", "multiengine.client.results"],
        ["multiengine.engine", "multiengine.engine.main"],
    ]


def test_the_checker_finds_upward_and_sibling_imports() -> None:
    bad = {(e.source, e.target): why for e, why in layer_violations(import_edges(FAKE))}
    assert set(bad) == {
        ("multiengine.config", "multiengine.joblib_backend"),
        ("multiengine.wire.curve", "multiengine.client.core"),
        ("multiengine.controller.relay", "multiengine.engine.main"),
    }, bad
    assert bad[("multiengine.wire.curve", "multiengine.client.core")].startswith("upward")
    assert (
        "never import each other"
        in bad[("multiengine.controller.relay", "multiengine.engine.main")]
    )
