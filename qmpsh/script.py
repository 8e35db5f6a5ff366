"""The scripted loop: stdin that is not a terminal.

No banner and no prompts: stdout carries only JSON documents (or HMP text
with -H), notes and errors go to stderr. prompt_toolkit is never imported.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from qmpsh.session import Session

#: The longest line run (QEMU refuses a QMP message over 64 MiB anyway).
LINE_LIMIT = 64 * 1024 * 1024


#: How much of a pipe is read at once: every whole line in it runs before the next read.
CHUNK = 256 * 1024


async def _batches(stream: TextIO) -> AsyncIterator[list[str | None]]:
    """The lines of ``stream``, as many at a time as have arrived; None for a line longer than
    LINE_LIMIT (dropped whole).

    A pipe or socket is read without blocking the event loop. Read as bytes and decoded as UTF-8
    whatever the locale says, a file the same way as a pipe; a byte that is not UTF-8 becomes a
    surrogate escape, which the parser refuses where it is.
    """
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        # A file never blocks, and a device such as /dev/null cannot be polled (epoll refuses it).
        while batch := stream.buffer.readlines(CHUNK):
            yield [_line(line_bytes.rstrip(b"\n")) for line_bytes in batch]
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    lines = _Lines()
    while chunk := await reader.read(CHUNK):
        yield lines.feed(chunk)
    yield lines.end()


def _line(line: bytes) -> str | None:
    return None if len(line) > LINE_LIMIT else line.decode("utf-8", errors="surrogateescape")


class _Lines:
    """Whole lines out of bytes that come in chunks."""

    def __init__(self) -> None:
        self._begun: list[bytes] = []  # the line begun in earlier chunks, not ended yet
        self._size = 0  # its length so far: once over LINE_LIMIT, the rest is not kept

    def feed(self, chunk: bytes) -> list[str | None]:
        """The lines that ``chunk`` ends (the first one may have begun in earlier chunks)."""
        *ended, rest = chunk.split(b"\n")
        lines = []
        if ended:
            self._add(ended[0])
            lines = [self._take(), *map(_line, ended[1:])]
        self._add(rest)
        return lines

    def end(self) -> list[str | None]:
        """The last line, when it has no newline."""
        return [self._take()] if self._size else []

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > LINE_LIMIT:
            self._begun = []
        elif piece:
            self._begun.append(piece)

    def _take(self) -> str | None:
        line = None if self._size > LINE_LIMIT else _line(b"".join(self._begun))
        self._begun, self._size = [], 0
        return line


async def run_files(session: Session, paths: list[str]) -> None:
    """Run script files in order (``-`` is stdin), each to its end, until the session is stopped.

    Errors name the file and the line (``FILE:N``); a file that cannot be read fails, and the next runs.
    """
    for path in paths:
        if session.stopped:
            break
        if path == "-":
            await run_script(session)
            continue
        try:
            stream = open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - closed below
        except OSError as err:
            session.fail(f"cannot read {path}: {err.strerror}")
            continue
        with stream:
            session.renderer.input_name = path
            try:
                await run_script(session, stream)
            finally:
                session.renderer.input_name = None


async def run_script(session: Session, stream: TextIO = sys.stdin) -> None:
    """Run every line of ``stream``; multi-line inputs are gathered first (each line is parsed once)."""
    lineno = 0
    async for batch in _batches(stream):
        for line in batch:
            lineno += 1
            if line is None:
                session.drop_line(lineno, f"longer than {LINE_LIMIT >> 20} MiB")
            elif await session.run_line(line, lineno):
                continue  # more lines to come before anything runs
            if session.stopped:
                break
        if session.stopped:
            break
    await session.end_input()
