"""The qemu.qmp adapter (``qmpsh/client.py``) is pinned to the qemu.qmp it was checked against.

It overrides and reads private qemu.qmp names; an upgrade that renames one would leave an override
never called, or an attribute missing at run time. These tests fail first, loudly: the installed
qemu.qmp must be a release in ``client.VERIFIED`` (pyproject.toml says the same range), and every
private name in ``client.PRIVATE_NAMES`` must exist in it. No other module may import qemu.qmp.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from qmpsh import client
from qmpsh.transport import Transport

REPO = Path(__file__).resolve().parents[2]


def release(version: str) -> tuple[int, ...]:
    """``0.0.6`` (or ``0.0.6.post1``) as (0, 0, 6)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    assert match, version
    return tuple(int(part) for part in match.group().split("."))


def test_installed_qemu_qmp_is_a_verified_release():
    installed = importlib.metadata.version("qemu.qmp")
    oldest, newest = client.VERIFIED
    assert release(oldest) <= release(installed) <= release(newest), (
        f"qemu.qmp {installed} is not one qmpsh was checked against ({oldest} to {newest}): run the suite "
        "with it, check client.PRIVATE_NAMES against its source, then widen client.VERIFIED and pyproject.toml")


def test_pyproject_requires_the_verified_range():
    oldest, newest = client.VERIFIED
    *head, last = release(newest)
    below = ".".join(str(n) for n in (*head, last + 1))
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"qemu.qmp>={oldest},<{below}" in dependencies


@pytest.mark.parametrize("owner, name", [(owner, name) for owner, names in client.PRIVATE_NAMES.items()
                                         for name in names])
def test_every_private_name_used_exists(owner, name):
    assert hasattr(owner(), name), f"qemu.qmp's {owner.__name__} has no {name} any more: client.py needs a change"


def test_own_queries_get_ids_with_the_prefix_the_adapter_routes_by():
    assert QMPClient()._get_exec_id().startswith(client.OWN_ID_PREFIX)


def _imports_qemu(path: Path) -> bool:
    """Whether ``path`` has an import statement of qemu (anywhere; text in strings does not count)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "qemu":
            return True
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "qemu" for a in node.names):
            return True
    return False


def test_no_module_but_the_adapter_imports_qemu_qmp():
    importing = [path.name for path in sorted((REPO / "qmpsh").glob("*.py")) if _imports_qemu(path)]
    assert importing == ["client.py"]


def test_the_socket_transport_is_a_transport():
    assert isinstance(client.SocketTransport("/nonexistent/qmp.sock"), Transport)
