"""The package's modules import each other without cycles.

A cycle works only while some import hides inside a function; this reads every module's
top-level imports of the package (those that run at import time, so not the ones under
``if TYPE_CHECKING:``) and fails, naming the cycle, if they form one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "agentsession"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _top_level_imports(path: Path) -> set[str]:
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            target = _resolve(module, is_package, node.level, node.module)
            found.add(target)
            for alias in node.names:  # ``from . import x`` may name a submodule
                found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agentsession"):
            found.add(node.module or "")
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        edges = {target for target in _top_level_imports(path) if target in paths}
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        for target in list(edges):
            parts = target.split(".")
            edges.update(
                ".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in paths
            )
        edges.discard(name)
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "agentsession.stores.sqlite.store" in graph["agentsession.stores.sqlite"]
    assert "agentsession.session" in graph["agentsession.memory"]


def test_no_module_imports_itself_through_others() -> None:
    # A package importing its own submodules is how packages work, not a cycle.
    graph = {
        name: {t for t in edges if not t.startswith(name + ".")} for name, edges in _graph().items()
    }
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
