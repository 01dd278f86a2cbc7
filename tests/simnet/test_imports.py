"""The simnet package's internal import graph has no cycle, TYPE_CHECKING imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import agave_perf.simnet

PACKAGE = "agave_perf.simnet"
ROOT = Path(agave_perf.simnet.__file__).parent


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Map each simnet module to the simnet modules it imports anywhere in its source."""
    modules = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((root / f"{name}.py").read_text())
        edges: set[str] = set()
        for node in ast.walk(tree):  # walks into `if TYPE_CHECKING:` and function bodies too
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == PACKAGE:
                    edges |= {a.name for a in node.names if a.name in modules}
                elif node.module.startswith(PACKAGE + "."):
                    edges.add(node.module.removeprefix(PACKAGE + ".").split(".")[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + "."):
                        edges.add(alias.name.removeprefix(PACKAGE + ".").split(".")[0])
        graph[name] = edges & modules - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one cycle of ``graph`` as a path of names, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(graph.get(name, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


class TestImportGraph:
    def test_simnet_modules_import_each_other_without_a_cycle(self) -> None:
        """No simnet module reaches itself through imports, counting TYPE_CHECKING ones."""
        graph = import_graph()
        assert {"_cluster", "_node", "_rpc", "_server"} <= graph.keys()
        assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])

    def test_the_cycle_finder_sees_a_cycle_hidden_under_type_checking(self) -> None:
        """The checker reports a cycle when one exists, so the test above can fail."""
        graph = import_graph()
        graph["_node"] = graph["_node"] | {"_cluster"}  # the TYPE_CHECKING edge we removed
        assert find_cycle(graph) is not None

    def test_the_graph_includes_imports_under_type_checking(self, tmp_path: Path) -> None:
        """An import inside `if TYPE_CHECKING:` or a function body is an edge of the graph."""
        (tmp_path / "_a.py").write_text(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from agave_perf.simnet._b import X\n"
        )
        (tmp_path / "_b.py").write_text("def f():\n    from agave_perf.simnet import _a\n")
        graph = import_graph(tmp_path)
        assert graph == {"_a": {"_b"}, "_b": {"_a"}}
        assert find_cycle(graph) in (["_a", "_b", "_a"], ["_b", "_a", "_b"])
