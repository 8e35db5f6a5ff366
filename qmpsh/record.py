"""``/save FILE`` and ``--record FILE``: the session so far as a script qmpsh can run again.

What is kept: every command that succeeded, in order, as it was sent (after the schema's
coercion): a key=value line where that parses back to exactly the same message (with a leading
``!`` when it was sent unchecked, so a rerun sends it unchecked too), one line of JSON otherwise;
and the ``/wait``, ``/job``, ``/shell`` and ``/connect`` lines that succeeded, which a rerun needs as
much as the commands (a job must be ready before ``block-job-complete``; the commands after a
``/connect`` went to another QEMU, and a rerun sends them there too, not to the first one). Queries for qmpsh itself,
failed lines and the built-ins that only show things are left out. A command whose reply came
after its line stopped waiting (Ctrl-C, a timeout at a terminal) is kept when that late reply is a
success, where the reply came: QEMU answers commands in the order they were sent, so it stands
before the commands sent after it (a built-in run in the meantime may stand before it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from qmpsh.events import Subscriber
from qmpsh.syntax import Builtin, Request, format_kv, format_value, parse
from qmpsh.transport import qemu_version

if TYPE_CHECKING:
    from qmpsh.transport import Transport

#: The built-ins a rerun needs: they wait for QEMU, make the files its commands use, or say which QEMU.
RECORDED_BUILTINS = frozenset({"wait", "job", "shell", "connect"})


def command_line(message: Mapping[str, object]) -> str:
    """``message`` as a script line: key=value if it parses back to the same message, else JSON.

    No arguments and ``"arguments": {}`` are the same message to QMP (a key=value line sends neither).
    """
    name = message.get("execute")
    arguments = message.get("arguments", {})
    if isinstance(name, str) and isinstance(arguments, dict) and set(message) <= {"execute", "arguments"}:
        line = format_kv(name, arguments)
        items = parse(line).items
        if len(items) == 1 and isinstance(items[0], Request) \
                and items[0].command == name and items[0].message.get("arguments", {}) == arguments:
            return line
    return json.dumps(message, ensure_ascii=False)


def builtin_line(builtin: Builtin) -> str:
    """``builtin`` as the line that runs it again."""
    if builtin.text:
        return f"/{builtin.name} {builtin.text}"
    arguments = (f"{key}={format_value(value)}" for key, value in builtin.args.items())
    return " ".join([f"/{builtin.name}", *builtin.words, *arguments])


def header(transport: Transport) -> list[str]:
    """The comment lines a saved script starts with: when, which QEMU, where, how to run it again."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    version = qemu_version(transport)
    qemu = f"QEMU {version}" if version else "QEMU"
    target = f"--domain {transport.domain}" if transport.domain is not None else "ADDRESS"
    return [f"# qmpsh session, {stamp}: {qemu} at {transport.label}",
            f"# run it again: qmpsh {target} < THIS-FILE (exit status 0 when every line succeeds)"]


class Recorder(Subscriber):
    """The lines of a session that a rerun needs, kept as they succeed; with a ``path``
    (``--record``) also written there as they come, from ``begin``.

    ``checked``: key=value lines were checked against the schema (not ``--no-schema``). A write
    that fails (a full disk) is said once through ``warn``; nothing more is written, and ``error``
    keeps it for the exit status, as for the ``-l`` log.
    """

    def __init__(self, path: str | None = None, checked: bool = True,
                 warn: Callable[[str], None] = lambda text: print(f"qmpsh: {text}", file=sys.stderr)) -> None:
        self.lines: list[str] = []
        self.path = path
        self.checked = checked
        self.warn = warn
        self.error: OSError | None = None
        self.first: Transport | None = None  # where the session began: the header names it, whatever /connect did
        self._sink: TextIO | None = None

    def begin(self, transport: Transport) -> None:
        """Make ``path`` (once connected, so a run that cannot connect leaves no file) and write the header.

        :raise OSError: it exists, or cannot be made.
        """
        self.first = transport
        if self.path is not None:
            self._sink = new_file(self.path)
            self._write(header(transport))

    def on_answered(self, request: Request, reply: Mapping[str, object]) -> None:
        if "return" in reply:
            line = command_line({key: value for key, value in request.message.items() if key != "id"})
            unchecked = request.force or not self.checked
            self._add(f"!{line}" if unchecked and not line.startswith("{") else line)

    def on_builtin_done(self, builtin: Builtin, ok: bool) -> None:
        if ok and builtin.name in RECORDED_BUILTINS:
            self._add(builtin_line(builtin))

    def close(self) -> None:
        if self._sink is not None:
            try:
                self._sink.close()
            except OSError as err:
                self._failed(err)

    def _add(self, line: str) -> None:
        self.lines.append(line)
        self._write([line])

    def _write(self, lines: list[str]) -> None:
        if self._sink is None or self.error is not None:
            return
        try:
            self._sink.writelines(line + "\n" for line in lines)
            self._sink.flush()
        except OSError as err:
            self._failed(err)

    def _failed(self, err: OSError) -> None:
        if self.error is None:
            self.error = err
            self.warn(f"cannot write {self.path}: {err.strerror} (nothing more is recorded there)")


def new_file(path: str) -> TextIO:
    """A new script file at ``path``, 0600 (QMP commands may carry secrets); never over a file.

    :raise OSError: it exists, or cannot be made.
    """
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8")


def save(path: str, lines: list[str]) -> None:
    """Write ``lines`` to a new script file at ``path``; :raise OSError: see ``new_file``."""
    with new_file(path) as out:
        out.writelines(line + "\n" for line in lines)
