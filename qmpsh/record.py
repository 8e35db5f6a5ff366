"""``/save FILE`` and ``--record FILE``: the session so far as a script qmpsh can run again.

What is kept: every command that succeeded, in order, as it was sent (after the schema's
coercion): a key=value line where that parses back to exactly the same message, one line of
JSON otherwise; and the ``/wait``, ``/job`` and ``/shell`` lines that succeeded, which a rerun
needs as much as the commands (a job must be ready before ``block-job-complete``). Queries for
qmpsh itself, failed lines and the built-ins that only show things are left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from qmpsh.events import Subscriber
from qmpsh.syntax import Builtin, Request, format_kv, format_value, parse

#: The built-ins a rerun needs: they wait for QEMU, or make the files its commands use.
REPLAYED_BUILTINS = frozenset({"wait", "job", "shell"})


def command_line(message: Mapping[str, object]) -> str:
    """``message`` as a script line: key=value if it parses back to the same message, else JSON."""
    name = message.get("execute")
    arguments = message.get("arguments", {})
    if isinstance(name, str) and isinstance(arguments, dict) and set(message) <= {"execute", "arguments"}:
        line = format_kv(name, arguments)
        items = parse(line).items
        if len(items) == 1 and isinstance(items[0], Request) \
                and items[0].message == {"execute": name, "arguments": arguments}:
            return line
    return json.dumps(message, ensure_ascii=False)


def builtin_line(builtin: Builtin) -> str:
    """``builtin`` as the line that runs it again."""
    if builtin.text:
        return f"/{builtin.name} {builtin.text}"
    arguments = (f"{key}={format_value(value)}" for key, value in builtin.args.items())
    return " ".join([f"/{builtin.name}", *builtin.words, *arguments])


def header(where: str, version: str) -> list[str]:
    """The comment lines a saved script starts with."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    qemu = f"QEMU {version}" if version else "QEMU"
    return [f"# qmpsh session, {stamp}: {qemu} at {where}",
            "# run it again: qmpsh ADDRESS < THIS-FILE (exit status 0 when every line succeeds)"]


class Recorder(Subscriber):
    """The lines of a session that a rerun needs, kept as they succeed; also written to ``sink``
    as they come (``--record``)."""

    def __init__(self, sink: TextIO | None = None) -> None:
        self.lines: list[str] = []
        self.sink = sink

    def begin(self, where: str, version: str) -> None:
        """Start ``sink`` with the header, once connected (``--record``)."""
        if self.sink is not None:
            self.sink.writelines(line + "\n" for line in header(where, version))
            self.sink.flush()

    def on_answered(self, request: Request, reply: Mapping[str, object]) -> None:
        if "return" in reply:
            message = {key: value for key, value in request.message.items() if key != "id"}
            self._add(command_line(message))

    def on_builtin_done(self, builtin: Builtin, ok: bool) -> None:
        if ok and builtin.name in REPLAYED_BUILTINS:
            self._add(builtin_line(builtin))

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if self.sink is not None:
            self.sink.write(line + "\n")
            self.sink.flush()


def new_file(path: str) -> TextIO:
    """A new script file at ``path``, 0600 (QMP commands may carry secrets); never over a file.

    :raise OSError: it exists, or cannot be made.
    """
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8")


def save(path: str, lines: list[str]) -> None:
    """Write ``lines`` to a new script file at ``path``; :raise OSError: see ``new_file``."""
    with new_file(path) as out:
        out.writelines(line + "\n" for line in lines)
