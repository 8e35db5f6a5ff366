"""``-l/--logfile``: every message sent and received, as timestamped JSON lines."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from qemu.qmp.message import Message


class Logfile:
    """Appends ``{"time": ..., "direction": "sent"|"received", "message": ...}`` lines.

    Created mode 0600: QMP traffic can carry secrets.
    """

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def _write(self, direction: str, msg: Message) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        self._file.write(f'{{"time": "{stamp}", "direction": "{direction}", "message": {bytes(msg).decode().rstrip()}}}\n')

    def sent(self, msg: Message) -> None:
        self._write("sent", msg)

    def received(self, msg: Message) -> None:
        self._write("received", msg)

    def close(self) -> None:
        self._file.close()
