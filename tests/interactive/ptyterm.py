"""qmpsh in a real pseudo-terminal (pexpect), read through a terminal emulator (pyte).

The ``terminal`` fixture (tests/interactive/conftest.py) starts these; tests import
the keys and helpers from here.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable

import pexpect
import pyte
import pytest

from tests.conftest import REPO, qmpsh_env

COLS, ROWS = 100, 30
PROMPT = "(QEMU) "
TIMEOUT = 20.0  # a wait ends as soon as the screen is right; this bounds only a failure on a busy machine

UP = "\x1b[A"
TAB = "\t"
ENTER = "\r"
CTRL_C = "\x03"
CTRL_D = "\x04"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


class CprScreen(pyte.Screen):
    """A screen that answers cursor-position requests (ESC[6n), as a real terminal does."""

    child: pexpect.spawn | None = None

    def write_process_input(self, data: str) -> None:
        if self.child is not None:
            self.child.send(data)


class Terminal:
    """qmpsh in a pty whose output feeds a pyte screen.

    ``python -m qmpsh ARGS ADDRESS`` (no ADDRESS if it is None). With ``cpr`` the screen answers
    cursor-position requests, so prompt_toolkit knows where the bottom is and draws its toolbar;
    without, it is told not to ask. ``env`` replaces the test environment (qmpsh_env, TERM=xterm).
    ``prompt`` is qmpsh's: ``(HMP) `` with -H.
    """

    def __init__(self, address: str | None, *args: str, cpr: bool = False, size: tuple[int, int] = (COLS, ROWS),
                 env: dict[str, str] | None = None) -> None:
        columns, lines = size
        self.screen = CprScreen(columns, lines) if cpr else pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.eof = False
        self.prompt = "(HMP) " if {"-H", "--hmp"} & set(args) else PROMPT
        env = dict(qmpsh_env(TERM="xterm") if env is None else env)
        for name in ("COLUMNS", "LINES", "PROMPT_TOOLKIT_NO_CPR"):
            env.pop(name, None)
        if not cpr:
            env["PROMPT_TOOLKIT_NO_CPR"] = "1"
        argv = ["-m", "qmpsh", *args, *([address] if address is not None else [])]
        self.child = pexpect.spawn(sys.executable, argv, env=env, cwd=str(REPO), dimensions=(lines, columns))
        if isinstance(self.screen, CprScreen):
            self.screen.child = self.child

    # -- reading -------------------------------------------------------------

    def pump(self, timeout: float = 0.05) -> None:
        """Feed whatever the child wrote (waiting up to ``timeout`` for the first byte)."""
        while not self.eof:
            try:
                data = self.child.read_nonblocking(65536, timeout=timeout)
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                self.eof = True
                return
            self.raw += data
            self.stream.feed(data)
            timeout = 0

    @property
    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display]

    @property
    def cursor_row(self) -> str:
        return self.rows[self.screen.cursor.y]

    def plain(self) -> str:
        """Everything written so far, without escape sequences."""
        return _ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def dump(self) -> str:
        body = "\n".join(f"{i:2} |{row}" for i, row in enumerate(self.rows))
        return f"screen (cursor at row {self.screen.cursor.y}, col {self.screen.cursor.x}):\n{body}"

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if predicate():
                return
            if time.monotonic() > deadline or self.eof:
                if predicate():
                    return
                pytest.fail(f"timed out waiting for {what}{' (qmpsh exited)' if self.eof else ''}\n{self.dump()}")

    def wait_prompt(self, text: str = "", timeout: float = TIMEOUT) -> None:
        """Wait until the cursor sits at the end of the prompt and ``text``."""
        line = self.prompt + text

        def ready() -> bool:
            return self.cursor_row == line.rstrip() and self.screen.cursor.x == len(line)

        self.wait_for(ready, f"the prompt row to read {line!r}", timeout)

    def wait_text(self, text: str, timeout: float = TIMEOUT) -> None:
        self.wait_for(lambda: text in self.plain(), f"{text!r} in the output", timeout)

    def rows_with(self, text: str) -> list[int]:
        return [i for i, row in enumerate(self.rows) if text in row]

    # -- writing -------------------------------------------------------------

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def paste(self, text: str) -> None:
        self.child.send(PASTE_START + text + PASTE_END)

    def run(self, line: str, expect: str) -> None:
        """Type ``line`` + Enter at a fresh prompt, wait for ``expect`` and the next prompt."""
        before = self.plain().count(expect)
        self.wait_prompt()
        self.send(line + ENTER)
        self.wait_for(lambda: self.plain().count(expect) > before, f"{expect!r} after {line!r}")
        self.wait_prompt()

    # -- exit ------------------------------------------------------------------

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        self.wait_for(lambda: self.eof, "qmpsh to exit", timeout)
        deadline = time.monotonic() + timeout
        while self.child.isalive():
            if time.monotonic() > deadline:
                pytest.fail(f"qmpsh closed its terminal but did not exit\n{self.dump()}")
            time.sleep(0.02)
        self.child.close()
        if self.child.signalstatus is not None:
            pytest.fail(f"qmpsh died of signal {self.child.signalstatus}\n{self.dump()}")
        return self.child.exitstatus

    def hang_up(self, timeout: float = TIMEOUT) -> int | None:
        """Close the terminal as a closed window does (qmpsh gets SIGHUP); qmpsh's exit status once it ends."""
        self.child.ptyproc.fileobj.close()
        self.child.ptyproc.closed = self.child.closed = True  # nothing is left for close() to do
        deadline = time.monotonic() + timeout
        while self.child.isalive():
            if time.monotonic() > deadline:
                pytest.fail("qmpsh did not end after its terminal closed")
            time.sleep(0.05)
        return self.child.exitstatus

    def close(self) -> None:
        if not self.child.closed:
            self.child.close(force=True)


def parse_row(row: str) -> dict:
    """The JSON document on a screen row (after an event's time)."""
    return json.loads(row[row.index("{"):])
