"""``--export python``: a session's steps as a standalone Python program on qemu.qmp's QMPClient.

FILE is a ``-l`` log (JSON lines with a direction and a message), a ``/save`` or ``--record``
file (its first line is the comment header ``record.header`` writes), or a script. The program
takes the address as its first argument (or ``QMP_SOCKET``), connects, sends the same commands in
order, waits for the same events, and exits 1 at the first error reply, event that does not come,
failed job or ``/shell`` command. It is meant to be read, and pasted into a test: one call per
step, the arguments as Python literals.

A script is read with qmpsh's own parser, without a schema. A key=value line with arguments is
sent after QEMU's schema has coerced it (``id=1`` may go as the string "1", ``bitmaps=b0`` as
``["b0"]``), which cannot be known without the schema, so a script's such line is refused, naming
FILE:LINE: JSON lines, ``!`` lines (sent as typed) and lines without arguments are exact. A
``/save`` file's key=value lines are exact: it writes one only where it parses back to the
message as it was sent. ``/wait``, ``/job`` and ``/shell`` become calls; ``/quit`` ends the
steps; other built-ins are refused.
"""

from __future__ import annotations

import json
import pprint
import sys
from collections.abc import Callable, Iterable, Mapping

from qmpsh.syntax import Builtin, ParseError, Reader, Request, Skipped
from qmpsh.transcript import Step, TranscriptError

#: The first line of a ``/save`` or ``--record`` file (``record.header``).
SAVED_HEADER = "# qmpsh session, "

_PROLOGUE = '''#!/usr/bin/env python3
"""{title}

Made by qmpsh --export python from {source}. Runs its QMP commands in order against the QEMU
at ADDRESS (the first argument, or $QMP_SOCKET: a unix socket path or HOST:PORT), waiting for
the events {waits}
Exits 1 at the first error reply, event that does not come within TIMEOUT seconds, failed job
or failed shell command.
"""

import asyncio
import contextlib
import os
import subprocess
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError

TIMEOUT = 60.0  # seconds to wait for an event


class Failed(Exception):
    """A job ended in error, or was cancelled."""


def job_of(event: dict) -> str | None:
    """The job an event is about: JOB_STATUS_CHANGE's id, BLOCK_JOB_*'s device."""
    data = event.get("data", {{}})
    if event["event"] == "JOB_STATUS_CHANGE":
        return data.get("id")
    return data.get("device", data.get("id")) if event["event"].startswith("BLOCK_JOB_") else None


def holds(data: object, wanted: dict) -> bool:
    """Whether ``data`` has every key=value of ``wanted`` (nested objects too; 1 matches "1"), as qmpsh's /wait."""
    return isinstance(data, dict) and all(
        key in data and (holds(data[key], value) if isinstance(value, dict)
                         else data[key] == value or str(data[key]) == str(value))
        for key, value in wanted.items())


class Events:
    """Every event since connecting, each taken at most once, by ``expect`` or ``job``.

    A job's creation drops the events of an earlier job with the same id (an id can be used again
    once its job has gone), so the old job's end is never taken for the new one's.
    """

    def __init__(self, qmp: QMPClient, listener: EventListener) -> None:
        self.qmp = qmp
        self.listener = listener
        self.unclaimed: list[dict] = []

    async def expect(self, name: str, data: dict | None = None, timeout: float | None = TIMEOUT) -> dict:
        """The event ``name`` whose data holds ``data``: one already received, or the next to come."""
        return await self.take(lambda event: event["event"] == name and holds(event.get("data", {{}}), data or {{}}),
                               f"{{name}} {{data or ''}}", timeout)

    async def job(self, job_id: str, timeout: float | None = None) -> dict:
        """Wait until job ``job_id`` is ready (mirror, active commit) or over, as qmpsh's /job; fail if it failed.

        A job already over whose end an earlier ``/wait`` took is judged by query-jobs: concluded, or gone (no job).
        """

        def over(event: dict) -> bool:
            return job_of(event) == job_id and (
                event["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
                or event["event"] == "JOB_STATUS_CHANGE" and event["data"]["status"] == "concluded")

        def ends(event: dict) -> bool:  # a READY the job's end followed is stale
            ready = event["event"] == "BLOCK_JOB_READY" and job_of(event) == job_id
            return over(event) or ready and not any(map(over, self.unclaimed))

        jobs = await self.qmp.execute("query-jobs")  # its reply comes after every event sent before it
        info = next((job for job in jobs if job["id"] == job_id), None)
        if info is None or info["status"] == "concluded":  # over: its end came, or an earlier /wait took it
            event = await self.received(over)
            if event is None:  # query-jobs is the answer, as qmpsh's /job
                if info is None:
                    raise Failed(f"no job {{job_id!r}}")
                if info.get("error"):
                    raise Failed(f"job {{job_id}}: {{info['error']}}")
                return info
        else:
            event = await self.take(ends, f"job {{job_id}} ready or over", timeout)
        error = event["data"].get("error")
        if event["event"] == "JOB_STATUS_CHANGE":  # not a block job: its error is in query-jobs
            error = next((job.get("error") for job in await self.qmp.execute("query-jobs") if job["id"] == job_id),
                         None)
        if error or event["event"] == "BLOCK_JOB_CANCELLED":
            raise Failed(f"job {{job_id}}: {{error or 'cancelled'}}")
        return event

    async def take(self, fits, what: str, timeout: float | None) -> dict:
        """The first event not taken yet that ``fits``, waiting up to ``timeout`` seconds for it (None: no end)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while (found := await self.received(fits)) is None:
            try:
                left = None if deadline is None else deadline - loop.time()
                event = await asyncio.wait_for(self.listener.get(), left)
            except TimeoutError:
                raise TimeoutError(f"no {{what}} within {{timeout:g}} s") from None
            self.add(dict(event))
        return found

    async def received(self, fits) -> dict | None:
        """The first event received so far and not taken yet that ``fits``, taken now; None if there is none."""
        while not self.listener.empty():  # what has come so far, in order, before looking
            self.add(dict(await self.listener.get()))
        for index, event in enumerate(self.unclaimed):
            if fits(event):
                return self.unclaimed.pop(index)
        return None

    def add(self, event: dict) -> None:
        if event["event"] == "JOB_STATUS_CHANGE" and event["data"]["status"] == "created":
            self.unclaimed = [old for old in self.unclaimed if job_of(old) != job_of(event)]
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
            await steps(qmp, Events(qmp, listener))
        finally:
            with contextlib.suppress(EOFError):  # QEMU closed it first (after quit): the end asked for
                await qmp.disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ExecuteError as err:
        sys.exit(f"error: {{err.sent['execute']}}: {{err.error.error.class_}}: {{err}}")
    except subprocess.CalledProcessError as err:
        sys.exit(f"error: {{err.cmd}}: exit status {{err.returncode}}")
    except (QMPError, Failed, TimeoutError, OSError, EOFError) as err:  # cannot connect, or the connection went
        sys.exit(f"error: {{err}}")
'''

_INDENT = "    "


class ExportError(TranscriptError):
    """A FILE that cannot be written as a program: the message says where and why."""


def _literal(value: object, indent: int) -> str:
    """``value`` (JSON) as a Python literal, wrapped to fit the line it starts at."""
    text = pprint.pformat(value, width=max(40, 110 - indent), sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def _call(start: str, *arguments: object, **keywords: object) -> str:
    """``start`` (``await f(``) with the arguments as literals (None and empty ones left out), closed."""
    text = _INDENT + start
    for argument in (a for a in arguments if a is not None and a != {}):
        text += "" if text.endswith("(") else ", "
        text += _literal(argument, len(text.rpartition("\n")[2]))
    for key, value in keywords.items():
        text += ("" if text.endswith("(") else ", ") + f"{key}={value!r}"
    return text + ")"


def _execute(message: Mapping[str, object], where: str) -> str:
    """The call that sends ``message``; :raise ExportError: QMPClient cannot send it as it is (``exec-oob``, an id)."""
    name = message.get("execute")
    if not isinstance(name, str) or set(message) - {"execute", "arguments"}:
        raise ExportError(f"{where}: QMPClient.execute cannot send this as it was sent: {json.dumps(message)}")
    return _call("await qmp.execute(", name, message.get("arguments"))


def _program(body: list[str], source: str, title: str, waits: str) -> str:
    if all(line.lstrip().startswith("#") for line in body):
        body = [*body, f"{_INDENT}pass  # nothing to send"]
    return (_PROLOGUE.format(title=title, source=json.dumps(source), waits=waits) + "\n".join(body) + "\n"
            + _EPILOGUE.format(name="qmpsh-export"))


def python_program(steps: Iterable[Step], source: str, title: str = "A qmpsh session, replayed") -> str:
    """The program text for a log's ``steps`` (read from ``source``, named in its docstring).

    :raise TranscriptError: a command QMPClient cannot send as it was sent (``exec-oob``, ``control``).
    """
    body: list[str] = []
    for step in steps:
        body += [_call("await events.expect(", event.name, dict(event.data)) for event in step.before]
        body.append(_execute(step.command, f"{source}:{step.lineno}"))
    return _program(body, source, title, "the session saw before each one.")


# -- scripts ----------------------------------------------------------------------------------


def _wait(builtin: Builtin) -> str:
    if len(builtin.words) != 1:
        raise ValueError("usage: /wait EVENT [key=value ...] [timeout=SECONDS]")
    wanted = dict(builtin.args)
    timeout = wanted.pop("timeout", None)
    if timeout is None:
        return _call("await events.expect(", builtin.words[0], wanted)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"/wait: timeout must be a number of seconds (0: no end), not {timeout!r}")
    return _call("await events.expect(", builtin.words[0], wanted, timeout=float(timeout) or None)


def _job(builtin: Builtin) -> str:
    timeout = builtin.args.get("timeout")
    if len(builtin.words) != 1 or set(builtin.args) - {"timeout"} or isinstance(timeout, bool) \
            or not isinstance(timeout, (int, float, type(None))):
        raise ValueError("usage: /job JOB-ID [timeout=SECONDS]")
    if timeout:
        return _call("await events.job(", builtin.words[0], timeout=float(timeout))
    return _call("await events.job(", builtin.words[0])


def _shell(builtin: Builtin) -> str:
    if not builtin.text:
        raise ValueError("usage: /shell COMMAND")
    return _call("subprocess.run(", builtin.text, shell=True, check=True)


#: The built-ins a program does too, each as its statement; :raise ValueError: a line they refuse.
_BUILTINS: dict[str, Callable[[Builtin], str]] = {
    "wait": _wait, "job": _job, "shell": _shell, "quit": lambda _: f"{_INDENT}return  # /quit",
}


def _statement(item: Request | Builtin, saved: bool, where: str) -> str:
    """The program's statement for a script's item; :raise ExportError: it has none, or not an exact one."""
    if isinstance(item, Builtin):
        make = _BUILTINS.get(item.name)
        if make is None and item.name == "connect":
            raise ExportError(f"{where}: /connect: a program talks to one QEMU (export what ran before and after "
                              "this line as two files)")
        if make is None:
            raise ExportError(f"{where}: /{item.name} has no place in a program (it exports /wait, /job, /shell "
                              "and /quit)")
        try:
            return make(item)
        except ValueError as err:
            raise ExportError(f"{where}: {err}") from None
    coerced = item.form == "transaction" or (item.form == "kv" and bool(item.message.get("arguments")))
    if coerced and not item.force and not saved:
        raise ExportError(f"{where}: key=value arguments are sent as QEMU's schema coerces them, which --export "
                          "cannot know: write the line as JSON or start it with ! (sent as typed), or export the "
                          "--record file of a run")
    return _execute(item.message, where)


def _comment(text: str) -> str:
    """A script's comment as a Python comment: a character Python could read as a line's end is escaped."""
    return "".join(c if c.isprintable() or c == "\t" else c.encode("unicode_escape").decode() for c in text)


def script_program(lines: list[str], source: str) -> str:
    """The program for a script or ``/save`` file's ``lines`` (read from ``source``).

    Comments between lines are kept (a ``#!`` first line is not); ``$`` lines and pasted replies,
    which qmpsh skips, are left out. :raise ExportError: FILE:LINE and why, at the first line
    that cannot be exported (or does not parse).
    """
    from qmpsh.commands import BUILTINS

    saved = bool(lines) and lines[0].startswith(SAVED_HEADER)
    reader = Reader(builtins=BUILTINS)
    body: list[str] = []
    pending = False  # a line's brackets, transaction or backslash are still open
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not pending and text.startswith("#"):
            if not (lineno == 1 and text.startswith("#!")):
                body.append(_INDENT + _comment(text))
            continue
        parsed = reader.add_line(line, lineno)
        pending = parsed.incomplete
        for item in parsed.items:
            where = f"{source}:{item.lineno}"
            if isinstance(item, ParseError):
                raise ExportError(f"{where}: {item.message}")
            if not isinstance(item, Skipped):
                body.append(_statement(item, saved, where))
    unfinished = reader.end_of_input()
    if unfinished is not None:
        raise ExportError(f"{source}:{unfinished.lineno}: {unfinished.message}")
    kind = "A qmpsh session, saved" if saved else "A qmpsh script"
    return _program(body, source, f"{kind}, as a program", "its /wait and /job lines wait for.")


def is_log(lines: list[str]) -> bool:
    """Whether ``lines`` are a ``-l`` log: the first that is not blank is a JSON entry with a direction."""
    first = next((line for line in lines if line.strip()), "")
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    return isinstance(entry, dict) and "direction" in entry and "message" in entry


def export_file(path: str) -> str:
    """The program for FILE at ``path`` (``-``: stdin), whichever kind it is; :raise ExportError: it cannot be
    read or exported."""
    from qmpsh.transcript import read

    try:
        with open(sys.stdin.fileno() if path == "-" else path, encoding="utf-8", errors="surrogateescape",
                  closefd=path != "-") as file:
            lines = file.read().split("\n")  # as qmpsh reads a script: by newlines only
    except OSError as err:
        raise ExportError(f"cannot read {path}: {err.strerror}") from None
    return python_program(read(lines, path), path) if is_log(lines) else script_program(lines, path)
