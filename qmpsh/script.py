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
from qmpsh.syntax import ParseError

#: The longest line run (QEMU refuses a QMP message over 64 MiB anyway).
LINE_LIMIT = 64 * 1024 * 1024


async def _lines(stream: TextIO) -> AsyncIterator[str | None]:
    """Lines of ``stream``, None for a line longer than LINE_LIMIT (dropped whole).

    A pipe or socket is read without blocking the event loop.
    """
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        # A file never blocks, and a device such as /dev/null cannot be polled (epoll refuses it).
        for line in stream:
            yield None if len(line) > LINE_LIMIT and len(line.rstrip("\n")) > LINE_LIMIT else line
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    while True:
        try:
            line_bytes = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:  # the last line has no newline
            if end.partial:
                yield end.partial.decode("utf-8", errors="replace")
            return
        except asyncio.LimitOverrunError:
            await _skip_line(reader)
            yield None
            continue
        yield line_bytes.decode("utf-8", errors="replace")


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
    """Run every line of ``stream``; multi-line inputs are gathered first."""
    buffer = ""
    first = 0
    lineno = 0
    async for line in _lines(stream):
        lineno += 1
        if line is None:
            dropped = f", nor the input it continues (from line {first})" if buffer else ""
            session.fail_parse(ParseError(f"longer than {LINE_LIMIT >> 20} MiB: not run{dropped}", "", 0), lineno)
            session.failed = True
            buffer = ""
            if session.stopped:
                break
            continue
        if not buffer:
            first = lineno
        buffer += line
        parsed = session.reader.feed(buffer)
        if parsed.incomplete:
            continue
        buffer = ""
        await session.run_items(parsed.items, first)
        if session.stopped:
            break
    await session.drain()
    if buffer.strip() and not session.stopped:
        last = buffer.rstrip("\n").rsplit("\n", 1)[-1]
        error = ParseError("unexpected end of input: a bracket or transaction is still open", last, len(last),
                           buffer.rstrip("\n").count("\n") + 1)
        session.fail_parse(error, first)
        session.failed = True
