"""ARCHITECTURE.md names every module of qmpsh/, and nothing else; the modules import each other without cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO


def test_every_module_has_an_entry_and_every_entry_a_module():
    text = (REPO / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE))
    modules = {path.stem for path in (REPO / "qmpsh").glob("*.py")}
    assert modules - listed == set(), "modules without an entry in ARCHITECTURE.md"
    assert listed - modules == set(), "entries in ARCHITECTURE.md for modules that are gone"


def _imports_at_load(path: Path) -> set[str]:
    """The qmpsh modules ``path`` imports when it is loaded: outside functions and ``if TYPE_CHECKING:``
    (an import inside a function runs when it is called, and is how a cycle is broken on purpose)."""
    found: set[str] = set()

    def scan(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                scan(node.orelse)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qmpsh."):
                found.add(node.module.removeprefix("qmpsh."))
            elif isinstance(node, ast.Import):
                found.update(a.name.removeprefix("qmpsh.") for a in node.names if a.name.startswith("qmpsh."))
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    scan(getattr(node, field, []))

    scan(ast.parse(path.read_text()).body)
    return found


def test_modules_import_each_other_without_cycles():
    """The import graph at load time is a DAG: each module sits on the ones it needs, never the reverse."""
    graph = {path.stem: _imports_at_load(path) for path in (REPO / "qmpsh").glob("*.py")}
    state: dict[str, str] = {}

    def visit(module: str, trail: tuple[str, ...]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join((*trail, module))
        state[module] = "open"
        for needed in sorted(graph.get(module, ())):
            visit(needed, (*trail, module))
        state[module] = "done"

    for module in sorted(graph):
        visit(module, ())
