"""A plain synchronous QMP client, for tests and the benchmark to act on QEMU beside qmpsh.

No pytest import: ``bench/run.py`` uses it too.
"""

from __future__ import annotations

import json
import os
import socket


class Monitor:
    """A QMP client on a unix socket: commands with ids, events kept aside."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 20.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.stream = self.sock.makefile("rwb")
        self.events: list[dict] = []
        self.ids = 0
        assert "QMP" in json.loads(self.stream.readline())
        self.ok("qmp_capabilities")

    def execute(self, command: str, **arguments: object) -> dict:
        """The reply (``return`` or ``error``, without its id); events that come first are kept."""
        self.ids += 1
        my_id = f"other-{self.ids}"
        message: dict[str, object] = {"execute": command, "id": my_id}
        if arguments:
            message["arguments"] = arguments
        self.stream.write(json.dumps(message).encode() + b"\n")
        self.stream.flush()
        while True:
            line = self.stream.readline()
            if not line:
                raise EOFError("QEMU closed the monitor")
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") == my_id:
                del msg["id"]
                return msg

    def ok(self, command: str, **arguments: object) -> object:
        reply = self.execute(command, **arguments)
        assert "return" in reply, (command, arguments, reply)
        return reply["return"]

    def saw(self, name: str, **data: object) -> bool:
        return any(e["event"] == name and all(e.get("data", {}).get(k) == v for k, v in data.items())
                   for e in self.events)

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def qmp(path: str | os.PathLike[str], command: str, **arguments: object) -> dict:
    """One command over a connection of its own; its reply."""
    with Monitor(path) as monitor:
        return monitor.execute(command, **arguments)
