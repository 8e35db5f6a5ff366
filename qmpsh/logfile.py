"""``-l/--logfile``: every message sent and received, as timestamped JSON lines."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime


class Logfile:
    """Appends ``{"time": ..., "direction": "sent"|"received", "message": ...}`` lines.

    Created mode 0600: QMP traffic can carry secrets. A write that fails (a full
    disk) is said once through ``warn``, and nothing more is logged; ``error``
    keeps it for the exit status. As with tee, the session itself goes on.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.error: OSError | None = None
        self.warn: Callable[[str], None] = lambda text: print(f"qmpsh: {text}", file=sys.stderr)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _write(self, direction: str, data: bytes) -> None:
        if self.error is not None:
            return
        stamp = datetime.now(UTC).isoformat(timespec="microseconds")
        line = b'{"time": "%s", "direction": "%s", "message": %s}\n' % (
            stamp.encode(), direction.encode(), data.rstrip())
        try:
            view = memoryview(line)
            while view:  # one write, unless the disk fills up in the middle of it
                view = view[os.write(self._fd, view):]
        except OSError as err:
            self._failed(err)

    def sent(self, data: bytes) -> None:
        self._write("sent", data)

    def received(self, data: bytes) -> None:
        self._write("received", data)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError as err:
            self._failed(err)

    def _failed(self, err: OSError) -> None:
        if self.error is None:
            self.error = err
            self.warn(f"cannot write logfile {self.path}: {err.strerror} (nothing more is logged)")
