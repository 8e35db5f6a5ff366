"""The ``terminal`` fixture, for every pty test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.interactive.ptyterm import Terminal


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    """Start qmpsh in a pty: ``terminal(address, *options)``; all closed at the end."""
    started: list[Terminal] = []

    def start(address: str, *args: str) -> Terminal:
        term = Terminal(address, *args)
        started.append(term)
        term.wait_prompt()
        return term

    yield start
    for term in started:
        term.close()
