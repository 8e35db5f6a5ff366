"""``--history-size N``: at most N history entries loaded, kept in memory and kept in the file.

The file is prompt_toolkit's format (``# date`` then ``+line`` lines, one
block per entry). It is trimmed once, when a session starts, to the newest N
entries: written to a temporary file and renamed over the old one, unless the
file grew meanwhile (another session appended), in which case trimming waits
for the next start.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit.history import History


class LimitedHistory(History):
    """Another history, seen through a window of its newest ``size`` entries."""

    def __init__(self, inner: History, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.size = size

    def load_history_strings(self) -> Iterable[str]:
        return itertools.islice(self.inner.load_history_strings(), self.size)  # newest first

    def store_string(self, string: str) -> None:
        self.inner.store_string(string)

    def append_string(self, string: str) -> None:
        super().append_string(string)
        del self._loaded_strings[self.size:]


def _entries(data: bytes) -> list[bytes]:
    """The file's entries, each with the lines before it (its ``#`` date)."""
    entries: list[bytes] = []
    lead: list[bytes] = []
    body: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"+"):
            body.append(line)
            continue
        if body:
            entries.append(b"".join(lead + body))
            lead, body = [], []
        lead.append(line)
    if body:
        entries.append(b"".join(lead + body))
    return entries


def trim(path: Path, size: int) -> None:
    """Keep only the newest ``size`` entries of the history file (best effort: errors are ignored)."""
    try:
        before = path.stat()
        data = path.read_bytes()
        entries = _entries(data)
        if len(entries) <= size:
            return
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".history-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(b"".join(entries[len(entries) - size:] if size else []))
            now = path.stat()
            if (now.st_size, now.st_mtime_ns, now.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
                raise OSError("the history file changed while it was being trimmed")
            os.replace(temporary, path)  # mkstemp made it 0600, like the history file
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        return
