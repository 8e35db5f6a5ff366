"""``--export python``: a session's steps as a standalone Python program on qemu.qmp's QMPClient.

The program takes the address as its first argument (or ``QMP_SOCKET``), connects, sends the
same commands in order, waits before each for the events the original session had seen, and
exits 1 at the first error reply or event that does not come. It is meant to be read, and pasted
into a test: one call per step, the arguments as Python literals.
"""

from __future__ import annotations

import json
import pprint
from collections.abc import Iterable

from qmpsh.transcript import Step, TranscriptError

_PROLOGUE = '''#!/usr/bin/env python3
"""{title}

Made by qmpsh --export python from {source}. Runs its QMP commands in order against the QEMU
at ADDRESS (the first argument, or $QMP_SOCKET: a unix socket path or HOST:PORT), waiting for the
events the session saw before each one. Exits 1 at the first error reply, or an event that does
not come within TIMEOUT seconds.
"""

import asyncio
import os
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError

TIMEOUT = 60.0  # seconds to wait for an event


class Events:
    """Every event since connecting; ``expect`` takes the first one not taken yet that matches."""

    def __init__(self, listener: EventListener) -> None:
        self.listener = listener
        self.unclaimed: list[dict] = []

    async def expect(self, name: str, data: dict | None = None) -> dict:
        """The event ``name`` whose data holds ``data``: one already received, or the next to come."""
        wanted = data or {{}}

        def matches(event: dict) -> bool:
            got = event.get("data", {{}})
            return event["event"] == name and all(got.get(key) == value for key, value in wanted.items())

        for index, event in enumerate(self.unclaimed):
            if matches(event):
                return self.unclaimed.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            try:
                event = dict(await asyncio.wait_for(self.listener.get(), deadline - loop.time()))
            except TimeoutError:
                raise TimeoutError(f"no {{name}} {{wanted}} within {{TIMEOUT:g}} s") from None
            if matches(event):
                return event
            self.unclaimed.append(event)


async def steps(qmp: QMPClient, events: Events) -> None:
'''

_EPILOGUE = '''

def address() -> str | tuple[str, int]:
    where = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("QMP_SOCKET", "")
    if not where:
        sys.exit(f"usage: {{sys.argv[0]}} ADDRESS (a unix socket path or HOST:PORT; or set QMP_SOCKET)")
    host, _, port = where.rpartition(":")
    return (host, int(port)) if host and port.isdigit() and "/" not in where else where


async def main() -> None:
    qmp = QMPClient("{name}")
    listener = EventListener()
    with qmp.listen(listener):
        await qmp.connect(address())
        try:
            await steps(qmp, Events(listener))
        finally:
            await qmp.disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ExecuteError as err:
        sys.exit(f"error: {{err.sent['execute']}}: {{err.error.error.class_}}: {{err}}")
    except (QMPError, TimeoutError, OSError, EOFError) as err:  # cannot connect, or the connection went
        sys.exit(f"error: {{err}}")
'''


def _literal(value: object, indent: int) -> str:
    """``value`` (JSON) as a Python literal, wrapped to fit the line it starts at."""
    text = pprint.pformat(value, width=max(40, 110 - indent), sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def python_program(steps: Iterable[Step], source: str, title: str = "A qmpsh session, replayed") -> str:
    """The program text for ``steps`` (read from ``source``, named in its docstring).

    :raise TranscriptError: a command QMPClient cannot send as it was sent (``exec-oob``, ``control``).
    """
    body: list[str] = []
    for step in steps:
        for event in step.before:
            call = f"    await events.expect({event.name!r}"
            body.append(call + (f", {_literal(dict(event.data), len(call) + 2)})" if event.data else ")"))
        name = step.command.get("execute")
        if not isinstance(name, str) or set(step.command) - {"execute", "arguments"}:
            raise TranscriptError(f"{source}:{step.lineno}: QMPClient.execute cannot send this as it was sent: "
                                  f"{json.dumps(step.command)}")
        arguments = step.command.get("arguments")
        call = f"    await qmp.execute({name!r}"
        body.append(call + (f", {_literal(arguments, len(call) + 2)})" if arguments else ")"))
    if not body:
        body.append("    pass  # the log holds no command")
    return (_PROLOGUE.format(title=title, source=json.dumps(source)) + "\n".join(body) + "\n"
            + _EPILOGUE.format(name="qmpsh-export"))
