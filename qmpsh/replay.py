"""``--replay LOG``: a ``-l`` log's commands sent again, in order, as a script would send them.

Before each command the replay waits (as ``/wait`` does) for the events the recorded session had
seen before it, by what identifies them; the command goes out as it was sent then. Each reply is
compared with the recorded one: an error where it returned (or the other way), another error
class, a return of another shape (other keys, a list of another length) is said on stderr with
the log's line, and the replay stops there and fails (exit status 1), as it does when an event
does not come. An error that was recorded and comes again is no difference. Output is a
script's: JSON lines in wire order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from qmpsh.events import Subscriber
from qmpsh.syntax import Builtin, Request
from qmpsh.transcript import Step

if TYPE_CHECKING:
    from qmpsh.session import Session

EVENT_TIMEOUT = 60.0  # seconds a replay waits for an event the recorded session had seen


def difference(recorded: Mapping[str, object], now: Mapping[str, object]) -> str | None:
    """How ``now`` differs from the ``recorded`` reply in kind or shape; None if it does not."""
    was, got = _kind(recorded), _kind(now)
    if was != got:
        return f"{got}, recorded {was}"
    if "error" in now:
        return None
    before, after = recorded.get("return"), now.get("return")
    if isinstance(before, dict) and isinstance(after, dict) and before.keys() != after.keys():
        gone, new = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
        return "returned " + "; ".join(part for part in (_keys("without", gone), _keys("with", new)) if part)
    if isinstance(before, list) and isinstance(after, list) and len(before) != len(after):
        return f"returned {len(after)} entries, recorded {len(before)}"
    if type(before) is not type(after):
        return f"returned {type(after).__name__}, recorded {type(before).__name__}"
    return None


def _kind(reply: Mapping[str, object]) -> str:
    error = reply.get("error")
    if isinstance(error, Mapping):
        return f"error {error.get('class', '')}".rstrip()
    return "return" if "return" in reply else "no reply"


def _keys(which: str, keys: list[str]) -> str:
    return f"{which} {', '.join(keys)}" if keys else ""


class _Replies(Subscriber):
    """The reply each replayed request got."""

    def __init__(self) -> None:
        self.got: dict[int, Mapping[str, object]] = {}

    def on_answered(self, request: Request, reply: Mapping[str, object]) -> None:
        self.got[id(request)] = reply


async def replay(session: Session, steps: list[Step], where: str) -> None:
    """Run ``steps`` (read from ``where``) through ``session``; stop at the first reply that differs
    from the recorded one, or an event that does not come."""
    replies = _Replies()
    timeout = session.options.timeout or EVENT_TIMEOUT
    with session.subscribers.subscribed(replies):
        for step in steps:
            request = Request(dict(step.command), "json", step.lineno, source=json.dumps(step.command))
            if session.stopped or not await _events_seen(session, step, timeout):
                if not session.stopped:
                    session.fail(f"{where}:{step.lineno}: replay stopped before {request.command}")
                return
            await session.run_item(request)
            reply = replies.got.pop(id(request), None)
            different = difference(step.reply, reply) if reply is not None and step.reply is not None else None
            if different is not None:
                session.fail(f"{where}:{step.lineno}: {request.command}: {different}; replay stopped")
                return


async def _events_seen(session: Session, step: Step, timeout: float) -> bool:
    """Wait, as /wait does, for each event the recorded session saw before ``step``."""
    for event in step.before:
        wait = Builtin("wait", (event.name,), {**event.data, "timeout": timeout}, step.lineno)
        if not await session.run_item(wait):
            return False
    return True
