"""What QEMU said during the document's flows, captured by ``capture.py``: test data for the pure modules."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

QEMU = Path(__file__).resolve().parent / "qemu"


def load(name: str) -> object:
    """A captured reply (``qmp-schema``, ``block-graph-chain``, ...), as QEMU sent it."""
    path = QEMU / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    return json.loads(gzip.decompress((QEMU / f"{name}.json.gz").read_bytes()))
