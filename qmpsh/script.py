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


async def _lines(stream: TextIO) -> AsyncIterator[str]:
    """Lines of ``stream``; a pipe or socket is read without blocking the event loop.

    Read as bytes and decoded as UTF-8 whatever the locale says, a file the same way as a pipe; a
    byte that is not UTF-8 becomes a surrogate escape, which the parser refuses where it is.
    """
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        # A file never blocks, and a device such as /dev/null cannot be polled (epoll refuses it).
        for line_bytes in stream.buffer:
            yield line_bytes.decode("utf-8", errors="surrogateescape")
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    while line_bytes := await reader.readline():
        yield line_bytes.decode("utf-8", errors="surrogateescape")


async def run_script(session: Session, stream: TextIO = sys.stdin) -> None:
    """Run every line of ``stream``; multi-line inputs are gathered first (each line is parsed once)."""
    lineno = 0
    async for line in _lines(stream):
        lineno += 1
        parsed = session.reader.add_line(line, lineno)
        if parsed.incomplete:
            continue
        await session.run_items(parsed.items)
        if session.stopped:
            break
    await session.drain()
    error = session.reader.end_of_input()
    if error is not None and not session.stopped:
        session.fail_parse(error)
        session.failed = True
