"""A ``-l`` log read back as the steps a user took: each command they ran, the events they had
seen before running it, and the reply it got.

qmpsh's own queries (completion, the toolbar, ``/job``'s polling) carry other ids than the user's
commands (numbers) and are left out, with their replies. The events a step waits for are the
ones that arrived after the previous command was sent and before this one was: the user saw them
before going on (a BLOCK_JOB_READY before ``block-job-complete``). They are named by what
identifies them (the job, the device, the node, the status), never by progress or time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


#: The ids of users' commands in logs written before Dec 2026 (now they are plain numbers).
LEGACY_ID_PREFIX = "qmpsh-"

#: Event data keys that say which thing an event is about or what state it reached.
IDENTIFYING_KEYS = ("id", "device", "node-name", "node", "qom-path", "path", "job-id", "type", "status", "name",
                    "action", "operation")


class TranscriptError(ValueError):
    """A log that cannot be read as a transcript: the message says where."""


@dataclass(frozen=True)
class Expected:
    """An event a step waits for: its name and the data that identifies it."""

    name: str
    data: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return " ".join([self.name, *(f"{k}={json.dumps(v)}" for k, v in self.data.items())])


@dataclass
class Step:
    """One command the user ran: the message as sent (without qmpsh's id), the events seen before
    it, and its reply (None when the log ends before it)."""

    command: dict[str, object]
    lineno: int  # in the log
    before: list[Expected] = field(default_factory=list)
    reply: dict[str, object] | None = None


def expected(event: Mapping[str, object]) -> Expected:
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    return Expected(str(event.get("event")), {k: data[k] for k in IDENTIFYING_KEYS if k in data})


def _add(seen: list[Expected], event: Expected) -> None:
    """A job's statuses are passed through on the way: only the last one it reached is waited for."""
    if event.name == "JOB_STATUS_CHANGE":
        seen[:] = [e for e in seen if e.name != event.name or e.data.get("id") != event.data.get("id")]
    seen.append(event)


def read(lines: Iterable[str], where: str = "log") -> list[Step]:
    """The steps of a ``-l`` log of one qmpsh run, in order.

    :raise TranscriptError: a line is not a log entry, or a second run starts (``-l`` appends, and
        each run numbers its commands from 1 again): ``where:LINE: why``.
    """
    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    seen: list[Expected] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        direction, message = _entry(line, f"{where}:{lineno}")
        exec_id = message.get("id")
        mine = _is_ours(exec_id)
        if direction == "sent" and mine and str(exec_id) in by_id:  # each run numbers its commands from 1
            raise TranscriptError(f"{where}:{lineno}: another qmpsh run starts here (-l appends to a log): "
                                  "keep one run in the file")
        if direction == "sent" and mine:
            command = {k: v for k, v in message.items() if k != "id"}
            step = Step(command, lineno, seen if steps else [])
            seen = []
            steps.append(step)
            by_id[str(exec_id)] = step
        elif direction == "received" and "event" in message:
            _add(seen, expected(message))
        elif direction == "received" and mine and str(exec_id) in by_id:
            by_id[str(exec_id)].reply = {k: v for k, v in message.items() if k != "id"}
    return steps


def _is_ours(exec_id: object) -> bool:
    """Whether a logged id is one qmpsh gave a user's command: a number, or ``qmpsh-N`` in logs
    written before Dec 2026; qemu.qmp's own queries have ``__qmp#N``."""
    if isinstance(exec_id, str):
        return exec_id.startswith(LEGACY_ID_PREFIX)
    return isinstance(exec_id, int) and not isinstance(exec_id, bool)


def read_file(path: str) -> list[Step]:
    """The steps of the log at ``path``.

    :raise TranscriptError: it cannot be read, or a line is no log entry (the message says where).
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as log:
            return read(log, path)
    except OSError as err:
        raise TranscriptError(f"cannot read {path}: {err.strerror}") from None


def _entry(line: str, where: str) -> tuple[str, dict[str, object]]:
    try:
        entry = json.loads(line)
    except ValueError as err:
        raise TranscriptError(f"{where}: not a qmpsh -l log line ({err})") from None
    if not isinstance(entry, dict) or entry.get("direction") not in ("sent", "received") \
            or not isinstance(entry.get("message"), dict):
        raise TranscriptError(f"{where}: not a qmpsh -l log line (no direction and message)")
    return str(entry["direction"]), entry["message"]
