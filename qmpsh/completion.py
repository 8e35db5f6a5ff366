"""Completion for the input line: command names and built-ins."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from qmpsh.commands import BUILTINS


def rank(prefix: str, names: Iterable[str]) -> list[str]:
    """Prefix matches first (alphabetical), then subsequence matches, tightest first."""
    prefix_hits = sorted(n for n in names if n.startswith(prefix))
    if not prefix:
        return prefix_hits
    fuzzy: list[tuple[int, str]] = []
    for name in names:
        if name.startswith(prefix):
            continue
        span = _subsequence_span(prefix, name)
        if span is not None:
            fuzzy.append((span, name))
    return prefix_hits + [name for _, name in sorted(fuzzy)]


def _subsequence_span(needle: str, hay: str) -> int | None:
    """How many characters of ``hay`` the letters of ``needle`` spread over, if they occur in order."""
    start = -1
    at = 0
    for ch in needle:
        at = hay.find(ch, at)
        if at < 0:
            return None
        if start < 0:
            start = at
        at += 1
    return at - start


class CommandCompleter(Completer):
    """Completes the first word: QMP command names, or ``/built-ins``."""

    def __init__(self, commands: Callable[[], Iterable[str]]) -> None:
        self._commands = commands

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        before = document.text_before_cursor
        if before.lstrip() != before or any(c.isspace() for c in before):
            return
        if before.startswith("/"):
            for name in rank(before[1:], BUILTINS):
                yield Completion("/" + name, -len(before), display_meta="built-in")
            return
        for name in rank(before, self._commands()):
            yield Completion(name, -len(before))
