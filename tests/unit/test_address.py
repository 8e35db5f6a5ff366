from __future__ import annotations

import pytest

from qmpsh.client import parse_address


@pytest.mark.parametrize("text, address", [
    ("/tmp/qmp-sock", "/tmp/qmp-sock"),
    ("./qmp-sock2", "./qmp-sock2"),
    ("qmp.sock", "qmp.sock"),
    ("localhost:4444", ("localhost", 4444)),
    ("127.0.0.1:4444", ("127.0.0.1", 4444)),
    ("[::1]:4444", ("::1", 4444)),
    (":4444", ("localhost", 4444)),
    ("/run/dir:with:colons:1", "/run/dir:with:colons:1"),
])
def test_parse_address(text, address):
    assert parse_address(text) == address
