"""ARCHITECTURE.md names every module of qmpsh/, and nothing else."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_every_module_has_an_entry_and_every_entry_a_module():
    text = (REPO / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE))
    modules = {path.stem for path in (REPO / "qmpsh").glob("*.py")}
    assert modules - listed == set(), "modules without an entry in ARCHITECTURE.md"
    assert listed - modules == set(), "entries in ARCHITECTURE.md for modules that are gone"
