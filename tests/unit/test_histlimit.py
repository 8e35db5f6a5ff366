"""--history-size: the history file trimmed to its newest entries, and the window over it."""

from __future__ import annotations

import stat
import subprocess
import sys

from prompt_toolkit.history import FileHistory, History

from qmpsh.histlimit import LimitedHistory, trim
from tests.conftest import REPO


def entry(i: int, lines: int = 1) -> str:
    return f"\n# 2024-01-01 00:00:{i:02}\n" + "".join(f"+cmd-{i}-{n}\n" for n in range(lines))


def test_trim_keeps_the_newest_entries_whole(tmp_path):
    path = tmp_path / "history"
    path.write_text("".join(entry(i, lines=1 + i % 3) for i in range(10)))
    path.chmod(0o600)
    trim(path, 4)
    assert path.read_text() == "".join(entry(i, lines=1 + i % 3) for i in range(6, 10))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert next(iter(FileHistory(str(path)).load_history_strings())) == "cmd-9-0"


def test_trim_leaves_a_short_file_alone(tmp_path):
    path = tmp_path / "history"
    text = "".join(entry(i) for i in range(3))
    path.write_text(text)
    before = path.stat().st_mtime_ns
    trim(path, 3)
    assert path.read_text() == text and path.stat().st_mtime_ns == before
    trim(tmp_path / "missing", 3)  # nothing to trim: no error
    assert list(tmp_path.iterdir()) == [path]  # and no temporary file left behind


class Recording(History):
    def __init__(self, strings: list[str]) -> None:
        super().__init__()
        self.strings = strings  # oldest first
        self.stored: list[str] = []

    def load_history_strings(self):
        return reversed(self.strings)

    def store_string(self, string: str) -> None:
        self.stored.append(string)


def test_window_loads_and_keeps_at_most_size_entries():
    inner = Recording([f"cmd-{i}" for i in range(10)])
    history = LimitedHistory(inner, 3)
    assert list(history.load_history_strings()) == ["cmd-9", "cmd-8", "cmd-7"]
    history._loaded_strings = list(history.load_history_strings())
    history._loaded = True
    history.append_string("new")
    assert history.get_strings() == ["cmd-8", "cmd-9", "new"]
    assert inner.stored == ["new"]  # stored through the inner history


SESSION = """
import sys
from pathlib import Path
from qmpsh.histlimit import trim
from qmpsh.repl import SharedHistory
path, name, count, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
history = SharedHistory(str(path), print)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    history.store_string(f"{name}-{i}")
    trim(path, size)
"""


def test_sessions_trimming_and_appending_at_once_lose_nothing(tmp_path):
    """Three real processes each append to and trim one history file, as fast as they can.

    Each trim keeps more entries than they append, so every new entry must survive; an append
    that landed in the file a trim was replacing was lost (5 to 22 of 1500, before the lock).
    """
    path = tmp_path / "history"
    path.write_text("".join(entry(i % 60) for i in range(1800)))  # old entries, for the trims to cut
    names, count, size = ("first", "second", "third"), 500, 1700
    sessions = [subprocess.Popen([sys.executable, "-c", SESSION, str(path), name, str(count), str(size)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
                for name in names]
    for session in sessions:
        assert session.stdout.readline() == "ready\n"
    for session in sessions:  # start all at once
        session.stdin.write("go\n")
        session.stdin.flush()
    for session in sessions:
        assert session.wait(timeout=120) == 0
    new = [s for s in FileHistory(str(path)).load_history_strings() if not s.startswith("cmd-")]
    lost = {f"{name}-{i}" for name in names for i in range(count)} - set(new)
    assert not lost, f"{len(lost)} of {len(names) * count} entries lost"
    assert len(new) == len(names) * count  # and none twice
