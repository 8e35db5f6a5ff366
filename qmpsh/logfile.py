"""``-l/--logfile``: every message sent and received, as timestamped JSON lines."""

from __future__ import annotations

import errno
import os
import stat
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
        self._fd = _open_to_append(path)

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


def _open_to_append(path: str) -> int:
    """``path`` opened to append, created mode 0600; files that are not regular (a pipe, /dev/full) too.

    A FIFO that nothing reads is an OSError that says so: opening it would wait, unseen, for a reader.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
    except OSError as err:
        if err.errno == errno.ENXIO and _is_fifo(path):
            raise OSError(errno.ENXIO, "a FIFO that nothing reads (start its reader first)", path) from None
        raise
    os.set_blocking(fd, True)  # a slow reader of a pipe holds the writes up, as it always did
    return fd


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False
