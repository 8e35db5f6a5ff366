"""The baseline: a raw synchronous QMP client, as small as a QMP client can be.

    python bench/rawqmp.py SOCKET < commands.jsonl

Connects to a unix socket, reads the greeting, sends ``qmp_capabilities``
and reads its reply; then, for each stdin line (the JSON text of a command,
e.g. ``{"execute":"query-status"}``), sends it and reads lines until the
reply (a message with "return" or "error"), printing every line it reads,
events included, as received. No parsing of the input, no pretty printing,
one ``json.loads`` per message received: what any shell has to do at least.
"""

from __future__ import annotations

import json
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: rawqmp.py SOCKET < commands", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
    except OSError as err:
        print(f"rawqmp: cannot connect to {argv[1]}: {err.strerror}", file=sys.stderr)
        return 3
    reader = sock.makefile("rb")
    out = sys.stdout.buffer
    reader.readline()  # greeting

    def exchange(line: bytes, echo: bool) -> bool:
        sock.sendall(line)
        while True:
            received = reader.readline()
            if not received:
                print("rawqmp: connection closed", file=sys.stderr)
                return False
            if echo:
                out.write(received)
            msg = json.loads(received)
            if "return" in msg or "error" in msg:
                return True

    if not exchange(b'{"execute": "qmp_capabilities"}\n', echo=False):
        return 3
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        if not line.endswith(b"\n"):
            line += b"\n"
        if not exchange(line, echo=True):
            out.flush()
            return 3
    out.flush()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
