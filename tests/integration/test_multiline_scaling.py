"""Multi-line input in scripts is parsed in linear time: four times the lines, about four times the time.

Quadratic parsing (each line re-parsing the lines before it) took 12 s for a 1,000-line
transaction and 191 s for 4,000; ratios, not absolute times, are checked.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import run_qmpsh


def transaction(lines: int) -> str:
    """A transaction QEMU rejects at once (its first action aborts it), so qmpsh's share dominates."""
    actions = "".join(f"block-dirty-bitmap-add node=node-A name=b{i}\n" for i in range(lines))
    return f"transaction(\nabort\n{actions})\n"


def open_brace(lines: int) -> str:
    """A JSON command whose id spreads over ``lines`` lines."""
    return '{"execute": "query-status", "id": [\n' + "".join(f"{i},\n" for i in range(lines)) + "0]}\n"


def elapsed(socket: str, text: str, status: int) -> float:
    started = time.perf_counter()
    result = run_qmpsh(socket, stdin=text)
    took = time.perf_counter() - started
    assert result.returncode == status, result.stderr[-500:]
    return took


@pytest.mark.parametrize(("make", "status"), [(transaction, 1), (open_brace, 0)], ids=["transaction", "open-brace"])
def test_four_times_the_lines_take_about_four_times_as_long(qemu, make, status):
    small = min(elapsed(qemu.socket, make(500), status) for _ in range(2))
    large = min(elapsed(qemu.socket, make(2000), status) for _ in range(2))
    assert large < 6 * small, (small, large)
