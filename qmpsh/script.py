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


async def _lines(stream: TextIO) -> AsyncIterator[str | None]:
    """Lines of ``stream``, None for a line longer than LINE_LIMIT (dropped whole).

    A pipe or socket is read without blocking the event loop. Read as bytes and decoded as UTF-8
    whatever the locale says, a file the same way as a pipe; a byte that is not UTF-8 becomes a
    surrogate escape, which the parser refuses where it is.
    """
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        # A file never blocks, and a device such as /dev/null cannot be polled (epoll refuses it).
        for line_bytes in stream.buffer:
            yield None if len(line_bytes.rstrip(b"\n")) > LINE_LIMIT else _decoded(line_bytes)
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    while True:
        try:
            line_bytes = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:  # the last line has no newline
            if end.partial:
                yield _decoded(end.partial)
            return
        except asyncio.LimitOverrunError:
            await _skip_line(reader)
            yield None
            continue
        yield _decoded(line_bytes)


def _decoded(line: bytes) -> str:
    return line.decode("utf-8", errors="surrogateescape")


async def _skip_line(reader: asyncio.StreamReader) -> None:
    """Drop the rest of a line too long to keep, with its newline."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as over:  # the data read so far is left in the buffer
            await reader.readexactly(over.consumed)
        except asyncio.IncompleteReadError:
            return


async def run_script(session: Session, stream: TextIO = sys.stdin) -> None:
    """Run every line of ``stream``; multi-line inputs are gathered first (each line is parsed once)."""
    lineno = 0
    async for line in _lines(stream):
        lineno += 1
        if line is None:
            session.drop_line(lineno, f"longer than {LINE_LIMIT >> 20} MiB")
        elif await session.run_line(line, lineno):
            continue  # more lines to come before anything runs
        if session.stopped:
            break
    await session.end_input()
