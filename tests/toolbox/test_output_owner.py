"""One output owner: only ``views`` imports rich, and it makes a rich Console in one place."""

from __future__ import annotations

import ast

from tests.conftest import REPO

OWNER = "views"


def _rich_imports(tree: ast.AST) -> list[int]:
    """Lines that import rich, at any depth (a function's own imports and TYPE_CHECKING ones too)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] == "rich" for name in names):
            lines.append(node.lineno)
    return lines


def _consoles(tree: ast.AST) -> list[int]:
    """Lines that call something named Console."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (getattr(node.func, "id", None) == "Console" or getattr(node.func, "attr", None) == "Console")]


def test_only_the_output_owner_uses_rich():
    found = {}
    for path in sorted((REPO / "qmpsh").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if path.stem != OWNER:
            found.update({f"{path.name}:{line}": "imports rich" for line in _rich_imports(tree)})
            found.update({f"{path.name}:{line}": "makes a Console" for line in _consoles(tree)})
        else:
            assert len(_consoles(tree)) == 1, "views makes its rich Console in one place"
    assert found == {}, "built-ins hand their data to session.renderer.show; views draws it"
