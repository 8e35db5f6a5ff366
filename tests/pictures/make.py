"""Make README's terminal pictures from real runs.

    .venv/bin/python tests/pictures/make.py        # rewrites tests/pictures/*.svg

Each picture is qmpsh started with ``--launch`` (a real QEMU set up as the
live block operations document sets it up) in a pseudo-terminal, driven with
keystrokes; the screen is read through a terminal emulator (pyte) and drawn
as SVG by rich (``Console(record=True).export_svg``). Nothing is staged: what
the picture shows is what qmpsh printed. Times and job speeds differ from run
to run, so regenerating changes the files.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

import pyte  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.style import Style  # noqa: E402
from rich.terminal_theme import MONOKAI  # noqa: E402
from rich.text import Text  # noqa: E402

from tests.interactive import ptyterm  # noqa: E402
from tests.interactive.ptyterm import ENTER, TAB  # noqa: E402

COLS, ROWS = 112, 20
WORKDIR = Path(tempfile.gettempdir()) / "qmpsh-tour"  # a fixed name: it shows in the pictures


class Terminal(ptyterm.Terminal):
    """The test terminal, sized for a picture and answering like a real one, running ``qmpsh --launch``."""

    def __init__(self, *args: str) -> None:
        private = tempfile.mkdtemp(prefix="qmpsh-pictures-")  # no history or config file of yours
        env = {**os.environ, "TERM": "xterm-256color", "XDG_STATE_HOME": private, "XDG_CONFIG_HOME": private}
        for name in ("NO_COLOR", "QMP_SOCKET"):
            env.pop(name, None)
        super().__init__(None, "--launch", "--workdir", str(WORKDIR), *args, cpr=True, size=(COLS, ROWS), env=env)
        self.private = private

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.private, ignore_errors=True)

    def settle(self, seconds: float = 0.3) -> None:
        """Read until the screen has been still for ``seconds``."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < seconds:
            before = len(self.raw)
            self.pump(0.05)
            if len(self.raw) != before:
                quiet_since = time.monotonic()


# -- pyte screen -> rich -> SVG ------------------------------------------------------------

_NAMES = {"brown": "yellow"}  # pyte calls ANSI colour 3 brown


def _colour(name: str) -> str | None:
    if name == "default":
        return None
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return f"#{name}"
    if name.startswith("bright"):
        return "bright_" + _NAMES.get(name[6:], name[6:])
    return _NAMES.get(name, name)


def screen_text(screen: pyte.Screen) -> Text:
    """The screen as rich text: one span per run of cells that look the same; the cursor reversed."""
    text = Text()
    for y in range(screen.lines):
        row = screen.buffer[y]
        run, looks = "", None
        for x in range(screen.columns):
            char = row[x]
            if char.data == "":  # the second cell of a wide character
                continue
            cursor = y == screen.cursor.y and x == screen.cursor.x
            these = (char.fg, char.bg, char.bold, char.italics, char.underscore, char.reverse != cursor)
            if run and (these != looks or (char.data == " ") != (run[-1] == " ")):  # blanks apart: SVG
                text.append(run, _style(looks))  # viewers place text that starts with a blank unevenly
                run = ""
            run, looks = run + char.data, these
        if run:
            text.append(run.rstrip() if looks == ("default", "default", False, False, False, False) else run,
                        _style(looks))
        if y < screen.lines - 1:
            text.append("\n")
    return text


def _style(looks: tuple) -> Style:
    fg, bg, bold, italic, underline, reverse = looks
    return Style(color=_colour(fg), bgcolor=_colour(bg), bold=bold, italic=italic, underline=underline,
                 reverse=reverse)


def save(term: Terminal, name: str, title: str) -> Path:
    console = Console(record=True, width=COLS, force_terminal=True, color_system="truecolor", file=io.StringIO())
    console.print(screen_text(term.screen), soft_wrap=True)
    path = HERE / f"{name}.svg"
    path.write_text(console.export_svg(title=title, theme=MONOKAI))
    print(f"wrote {path.relative_to(REPO)}")
    return path


# -- the pictures ------------------------------------------------------------------------

def snapshot_chain(term: Terminal) -> None:
    """[A] <- [B] <- [C] <- [D], with the document's own lines."""
    for older, newer in (("A", "B"), ("B", "C"), ("C", "D")):
        term.run(f"blockdev-snapshot-sync node-name=node-{older} snapshot-file={newer.lower()}.qcow2 "
                 f"snapshot-node-name=node-{newer} format=qcow2", '"return"')


def completion() -> None:
    term = Terminal()
    try:
        term.wait_prompt(timeout=30)
        snapshot_chain(term)
        term.send("block-stream device=node-D base-node=node-")
        term.wait_prompt("block-stream device=node-D base-node=node-")
        term.send(TAB)
        term.settle()
        save(term, "completion", "qmpsh: completion of live node names")
    finally:
        term.close()


def events() -> None:
    term = Terminal()
    try:
        term.wait_prompt(timeout=30)
        snapshot_chain(term)
        term.send("\x0c")
        term.wait_prompt()
        term.run("block-stream device=node-D job-id=job0", '"return"')
        term.send("query-block-")  # half typed while the job's events arrive
        term.wait_for(lambda: "BLOCK_JOB_COMPLETED" in term.plain(), "the job's end")
        term.settle()
        save(term, "events", "qmpsh: events above the prompt")
    finally:
        term.close()


def job() -> None:
    term = Terminal()
    try:
        term.wait_prompt(timeout=30)
        term.run("human-monitor-command command-line='qemu-io /machine/peripheral/virtio0/virtio-backend "
                 "\"write -P 0x5a 0 32M\"'", '"return"')
        term.send("\x0c")
        term.wait_prompt()
        term.run("drive-backup device=node-A target=backup.qcow2 sync=full speed=8M job-id=backup0", '"return"')
        term.send("/job backup0" + ENTER)
        term.wait_for(lambda: "backup0" in term.cursor_row and "%" in term.cursor_row
                      and not term.cursor_row.rstrip().endswith(" 0%"), "the progress bar")
        time.sleep(1.5)
        term.settle(0.05)
        save(term, "job", "qmpsh: /job follows a block job")
    finally:
        term.close()


PICTURES = {"completion": completion, "events": events, "job": job}


def main(names: list[str]) -> int:
    for name in names or list(PICTURES):
        shutil.rmtree(WORKDIR, ignore_errors=True)
        try:
            PICTURES[name]()
        finally:
            shutil.rmtree(WORKDIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
