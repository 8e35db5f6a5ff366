"""The history file that sessions share, and ``--history-size N``: at most N entries loaded, kept
in memory and kept in the file.

The file is prompt_toolkit's format (``# date`` then ``+line`` lines, one
block per entry). Sessions append to it, one ``write`` per entry, and trim it
once when they start, to the newest N entries (written to a temporary file
renamed over the old one). Both hold an exclusive ``flock`` on the file while
they change it, so no entry is appended to a file that a trim is replacing;
whoever waited for the lock on a file that was replaced meanwhile uses the new
one. The file is a regular file, mode 0600, in directories made mode 0700.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit.history import History

from qmpsh.config import open_regular


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


def make_dirs(path: Path) -> None:
    """Make ``path`` and its missing parents, each mode 0700 whatever the umask (the XDG rule).

    ``Path.mkdir(parents=True)`` gives the parents 0777 less the umask: 0777 under umask 000.
    """
    missing = []
    while not path.is_dir() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile; or a file, and the next level says "Not a directory"
            pass


def prepare(path: Path) -> None:
    """Make the history file usable: its directories, the file itself, mode 0600 (also one made
    before qmpsh kept it private). OSError, never a hang, if it is not a regular file."""
    make_dirs(path.parent)
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def append(path: Path, entry: bytes) -> None:
    """Append one entry with a single write, under the lock; OSError if that fails."""
    while True:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _current(fd, path):
                os.write(fd, entry)
                return
        finally:
            os.close(fd)  # and the lock with it


def trim(path: Path, size: int) -> None:
    """Keep only the newest ``size`` entries of the history file (best effort: errors are ignored)."""
    try:
        fd = open_regular(path, os.O_RDWR)  # for writing too: flock over NFS wants it
        with os.fdopen(fd, "rb") as file:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not _current(fd, path):  # another session trimmed it while this one waited
                return
            entries = _entries(file.read())
            if len(entries) <= size:
                return
            out_fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".history-")
            try:
                with os.fdopen(out_fd, "wb") as out:
                    out.write(b"".join(entries[len(entries) - size:] if size else []))
                os.replace(temporary, path)  # mkstemp made it 0600, like the history file
            except BaseException:
                os.unlink(temporary)
                raise
    except OSError:
        return


def _current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path``: a trim may have put another in its place."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
