"""A long transaction pasted at the prompt runs in time linear in its length."""

from __future__ import annotations

import time

from tests.integration.test_multiline_scaling import transaction
from tests.interactive.ptyterm import Terminal


def pasted(socket: str, lines: int) -> float:
    term = Terminal(socket, "--history-size", "0")
    try:
        term.wait_prompt()
        started = time.perf_counter()
        term.paste(transaction(lines))
        term.wait_for(lambda: "Transaction aborted using Abort action" in term.plain(), "the reply", timeout=120)
        return time.perf_counter() - started
    finally:
        term.close()


def test_pasting_four_times_the_lines_takes_about_four_times_as_long(qemu):
    small = min(pasted(qemu.socket, 500) for _ in range(2))
    large = min(pasted(qemu.socket, 2000) for _ in range(2))
    assert large < 6 * small, (small, large)
