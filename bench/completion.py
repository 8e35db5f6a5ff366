"""Completion latency from the cache, and the cost of loading the schema at connect.

Starts its own QEMU (TCG, -S) with the live block operations document's chain
[A] <- [B] <- [C] <- [D] plus 200 extra named nodes, connects qmpsh's Session
in-process the way the interactive loop does, and times
``QmpCompleter.get_completions`` on typical cursor positions (command names,
argument names, enum values, live node names and job ids).

    .venv/bin/python bench/completion.py            # prints JSON
    .venv/bin/python bench/completion.py --smoke    # fewer repetitions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

# In-process: the qmpsh of this checkout, not the installed one (a worktree sharing another checkout's
# venv would import that checkout's), unless bench/run.py --qmpsh-rev put the revision measured on PYTHONPATH.
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qmpsh.catalog import Source
from qmpsh.client import SocketTransport
from qmpsh.render import Renderer
from qmpsh.repl import completer_for, live_values
from qmpsh.schema import Schema
from qmpsh.session import Options, Session

QEMU = os.environ.get("QMPSH_QEMU", "qemu-system-x86_64")
QEMU_IMG = os.environ.get("QMPSH_QEMU_IMG", "qemu-img")
EXTRA_NODES = 200
CURSORS = [
    "query-bl",
    "block-stream ",
    "block-stream device=",
    "block-stream device=node-",
    "blockdev-add driver=qcow2 file.",
    "drive-mirror device=node-D target=x sync=",
    "block-job-cancel device=",
    "/wait BLOCK_",
    "xtra",  # fuzzy matches over every command
]


def start_qemu(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(workdir / "a.qcow2"), "39M"], check=True)
    sock = str(workdir / "qmp.sock")
    proc = subprocess.Popen(
        [QEMU, "-display", "none", "-no-user-config", "-M", "q35", "-accel", "tcg", "-nodefaults", "-m", "512", "-S",
         "-blockdev", "node-name=node-A,driver=qcow2,file.driver=file,file.node-name=file,file.filename=a.qcow2",
         "-device", "virtio-blk,drive=node-A,id=virtio0", "-qmp", f"unix:{sock},server=on,wait=off"],
        cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        if proc.poll() is not None:
            raise SystemExit("bench: QEMU did not start")
        time.sleep(0.02)
    return proc, sock


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(sock: str, repeats: int) -> dict[str, object]:
    renderer = Renderer()
    renderer.sink = lambda text: None  # the job's events are not what is measured
    session = Session(renderer, Options(interactive=True), SocketTransport(sock))
    await session.connect()
    loads = []
    for _ in range(5):
        started = time.perf_counter()
        Schema(await session.query("query-qmp-schema"))  # type: ignore[arg-type]
        loads.append((time.perf_counter() - started) * 1000)
    for layer in "BCD":
        below = chr(ord(layer) - 1)
        await session.query("blockdev-snapshot-sync", {"node-name": f"node-{below}",
                                                        "snapshot-file": f"{layer.lower()}.qcow2",
                                                        "snapshot-node-name": f"node-{layer}", "format": "qcow2"})
    for i in range(EXTRA_NODES):
        await session.query("blockdev-add", {"driver": "null-co", "node-name": f"extra-{i:03d}"})
    await session.query("drive-mirror", {"device": "node-D", "target": "e.qcow2", "sync": "full", "job-id": "job0",
                                         "speed": 1})
    catalog = live_values(session)
    completer = completer_for(session, catalog)
    await session.ensure_schema()
    await catalog.settled()
    nodes = len(catalog.snapshot.get(Source.NODE))
    times: dict[str, list[float]] = {c: [] for c in CURSORS}
    counts: dict[str, int] = {}
    for _ in range(repeats):
        for cursor in CURSORS:
            started = time.perf_counter()
            found = list(completer.get_completions(Document(cursor), CompleteEvent(completion_requested=True)))
            times[cursor].append((time.perf_counter() - started) * 1000)
            counts[cursor] = len(found)
    # A completer that offered nothing would be fast too: the live nodes must really be offered.
    if counts["block-stream device=node-"] < 4 or counts["block-job-cancel device="] != 1:
        raise SystemExit(f"bench: completion offered too little: {counts}")
    everything = [t for ts in times.values() for t in ts]
    await session.transport.close()
    return {
        "p50_ms": round(statistics.median(everything), 3),
        "p95_ms": round(percentile(everything, 0.95), 3),
        "schema_load_ms": round(statistics.median(loads), 1),
        "live_nodes": nodes,
        "per_cursor_p95_ms": {c: round(percentile(ts, 0.95), 3) for c, ts in times.items()},
        "candidates": counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few repetitions only")
    args = parser.parse_args(argv)
    if shutil.which(QEMU) is None:
        raise SystemExit(f"bench: {QEMU} not found")
    with tempfile.TemporaryDirectory(prefix="qmpsh-bench-completion-") as tmp:
        proc, sock = start_qemu(Path(tmp))
        try:
            result = asyncio.run(measure(sock, 3 if args.smoke else 50))
        finally:
            proc.kill()
            proc.wait()
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
