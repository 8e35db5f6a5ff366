"""An event flood at a terminal: events scroll above the prompt, and typing stays responsive.

(The flood is modest because pyte, the terminal emulator that reads the
screen here, is far slower than a real terminal; scripted floods of 100,000
events are measured in bench/.)
"""

from __future__ import annotations

import time

from tests.fakeqmp import FakeQMPServer, events, reply
from tests.interactive.ptyterm import ENTER, PROMPT

FLOOD = 5000


def seq(n: int) -> str:
    return f'"seq": {n}}}'


def test_prompt_stays_usable_during_an_event_flood(tmp_path, terminal):
    with FakeQMPServer(tmp_path / "qmp.sock") as server:
        server.when("query-name", reply({"return": {}}), events(FLOOD), times=1)
        term = terminal(str(server.path), "--timestamps", "off", "--color", "never")
        term.send("query-name" + ENTER)
        term.wait_text(seq(10))  # the flood has begun
        started = time.monotonic()
        term.send("query-na")
        term.wait_text(seq(FLOOD - 1), timeout=60)
        term.wait_prompt("query-na")
        echoed = time.monotonic() - started
        # Every event printed once, in order, above the prompt; then the typed line still runs.
        seqs = [int(part.split("}", 1)[0]) for part in term.plain().split('"seq": ')[1:]]
        assert seqs == list(range(FLOOD)), (len(seqs), seqs[:3], seqs[-3:])
        term.send("me" + ENTER)
        term.wait_for(lambda: term.plain().count('{"return": {}}') == 2, "the second reply")
        term.wait_prompt()
        assert term.rows_with(PROMPT + "query-name"), term.dump()
        assert echoed < 10, f"the typed line took {echoed:.1f} s to stand at the prompt after the flood"
        term.close()
