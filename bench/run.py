#!/usr/bin/env python3
"""qmpsh benchmark: qmpsh, qemu.qmp's qmp-shell and a raw socket client, side by side.

    .venv/bin/python bench/run.py                   # the full run (about two minutes)
    .venv/bin/python bench/run.py --smoke           # tiny sizes, one repetition: seconds
    .venv/bin/python bench/run.py --json out.json   # also write every number as JSON
    .venv/bin/python bench/run.py --qmpsh-rev REV   # qmpsh as of git revision REV
    .venv/bin/python bench/run.py --profile         # cProfile of qmpsh over the throughput script
    .venv/bin/python bench/run.py --only startup    # one part (repeatable), e.g. to measure one commit
    .venv/bin/python bench/run.py --only domain     # --domain beside virsh and a socket (root, libvirtd)

Every tool runs as a real subprocess against the same QEMU (or the same fake
QMP server, ``tests/fakeqmp.py``, for event floods and oversized schemas) in
the same run; rows are medians over repetitions interleaved across tools.
See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RAWQMP = BENCH / "rawqmp.py"
QEMU = os.environ.get("QMPSH_QEMU", "qemu-system-x86_64")
PYTHON = sys.executable

sys.path.insert(0, str(REPO))
from tests.fakeqmp import FakeQMPProcess  # noqa: E402  (plain modules: no pytest import)
from tests.monitor import qmp  # noqa: E402

TOOLS = ("qmpsh", "qmp-shell", "raw")

# Row names: the table's first column and the JSON keys (the smoke test checks each is printed).
ROW_THROUGHPUT = "scripted throughput (ms/command)"
ROW_THROUGHPUT_CPU = "scripted throughput (CPU ms/command)"
ROW_THROUGHPUT_WALL = "scripted throughput (wall, s)"
ROW_STARTUP = "start-up: echo query-status | tool (ms)"
ROW_IMPORTS = "scripted run imports prompt_toolkit/rich"
ROW_PROMPT = "time to first prompt, pty (ms)"
ROW_PROMPT_SCHEMA = "time to prompt vs schema size (ms)"
ROW_SCHEMA = "query-qmp-schema -p (ms)"
ROW_SCHEMA_COLOUR = "query-qmp-schema --color always -p (ms)"
ROW_FLOOD_RATE = "event flood (events/s)"
ROW_FLOOD_ORDER = "event flood: all printed, in order"
ROW_FLOOD_RSS = "event flood: peak RSS (MB)"
ROW_FLOOD_WAIT = "event flood after reply, /wait last (events/s)"
ROW_FLOOD_PTY = "event flood at a pty while typing (events/s)"
ROW_RSS = "peak RSS, throughput run (MB)"
ROW_COMPLETION = "completion from cache, p95 (ms)"
ROW_THROUGHPUT_HOG = "scripted throughput under a CPU hog (ms/command)"
ROW_THROUGHPUT_E = "scripted throughput with -e (ms/command)"
ROW_DOMAIN_THROUGHPUT = "--domain: scripted throughput (ms/command)"
ROW_DOMAIN_STARTUP = "--domain: start-up, one query-status (ms)"
ROWS = (ROW_THROUGHPUT, ROW_THROUGHPUT_CPU, ROW_THROUGHPUT_WALL, ROW_THROUGHPUT_HOG, ROW_THROUGHPUT_E,
        ROW_STARTUP, ROW_IMPORTS, ROW_PROMPT,
        ROW_PROMPT_SCHEMA, ROW_SCHEMA, ROW_SCHEMA_COLOUR, ROW_FLOOD_RATE, ROW_FLOOD_ORDER, ROW_FLOOD_RSS,
        ROW_FLOOD_WAIT, ROW_FLOOD_PTY, ROW_RSS, ROW_COMPLETION, ROW_DOMAIN_THROUGHPUT, ROW_DOMAIN_STARTUP)

# What a scripted run on a socket never needs: the terminal's libraries, and libvirt's side of qmpsh.
HEAVY_IMPORTS = ("prompt_toolkit", "rich", "pygments", "libvirt", "qmpsh.targets", "qmpsh.domain",
                 "qmpsh.libvirt_transport")

# What any client built on qemu.qmp's QMPClient pays before its first byte: the interpreter, then asyncio,
# then qemu.qmp itself. Timed with the start-up row, in the same interleaved runs.
STARTUP_FLOORS = {"python": "pass", "+asyncio": "import asyncio", "+qemu.qmp": "import qemu.qmp"}


@dataclass
class Sizes:
    lines: int = 2000  # scripted throughput: query-status lines
    throughput_runs: int = 7
    startup_runs: int = 15
    prompt_runs: int = 7
    schema_runs: int = 7
    schema_scale: int = 10  # the fake server's oversized schema: QEMU's, this many times
    flood: int = 100_000
    flood_runs: int = 3
    domain_lines: int = 500  # --domain throughput: query-status lines (virsh runs one process per line)
    virsh_lines: int = 20  # virsh qemu-monitor-command runs per throughput repetition
    smoke: bool = False


SMOKE = Sizes(lines=50, throughput_runs=1, startup_runs=1, prompt_runs=1, schema_runs=1, schema_scale=2,
              flood=500, flood_runs=1, domain_lines=20, virsh_lines=2, smoke=True)


# -- running a tool ----------------------------------------------------------------


# Peak RSS comes from GNU time (%M, the child's ru_maxrss): a child forked from this (large) Python
# process inherits its memory high-water mark through exec, so os.wait4's ru_maxrss would report the
# benchmark's own size; /usr/bin/time is a small process, so what it reports is the tool's.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


@dataclass
class Run:
    wall: float  # seconds, spawn to exit
    rc: int
    rss_mb: float | None  # peak resident set size (with rss=True and GNU time installed)
    out: bytes
    err: bytes
    cpu: float = 0.0  # user + system CPU seconds (wait4's)


# Tools run in a scratch directory, never in the checkout: ``python -m``/``-c`` put the current directory
# first on sys.path, which would shadow the qmpsh under test (--qmpsh-rev) with the working tree's.
RUN_DIR = Path(tempfile.gettempdir())


def run(argv: Sequence[str], stdin: bytes, env: dict[str, str], timeout: float = 300, rss: bool = False) -> Run:
    """Run ``argv`` with ``stdin`` through a pipe and stdout/stderr to files; time it.

    CPU time (user + system) is ``wait4``'s, in microseconds; with ``rss`` it includes GNU time's
    own (about a millisecond, the same in every run, so it cancels out of a difference of two runs).
    With ``rss``, the tool runs under ``/usr/bin/time -f '%M'`` for its peak RSS (about 1 ms more
    wall time, the same for every tool).
    """
    rss_file = None
    if rss and GNU_TIME:
        fd, rss_file = tempfile.mkstemp(prefix="rss-")
        os.close(fd)
        argv = [GNU_TIME, "-q", "-f", "%M", "-o", rss_file, *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env, cwd=RUN_DIR)

        def feed() -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        writer.join(timeout=5)
        out.seek(0)
        err.seek(0)
        peak = None
        cpu = usage.ru_utime + usage.ru_stime
        if rss_file is not None:
            try:
                fields = Path(rss_file).read_text().split()
                if fields:  # the last line: GNU time may say "Command exited ..." first
                    peak = int(fields[-1]) / 1024
            finally:
                os.unlink(rss_file)
        return Run(wall, proc.returncode, peak, out.read(), err.read(), cpu)


@dataclass
class PerCommand:
    """Scripted runs of every tool with N lines and with empty stdin, and what they make per command."""

    full: dict[str, list[Run]]
    empty: dict[str, list[Run]]
    lines: int
    #: QEMU's CPU seconds during each run with the lines (from /proc, in 10 ms ticks), per tool.
    server_cpu: dict[str, list[float]] = field(default_factory=dict)

    def wall(self, tool: str) -> float:
        """ms/command: the median wall time with the lines minus the median with empty stdin, over N."""
        return self._per_command([r.wall for r in self.full[tool]], [r.wall for r in self.empty[tool]])

    def cpu(self, tool: str) -> float:
        """CPU ms/command, counted as ``wall`` is."""
        return self._per_command([r.cpu for r in self.full[tool]], [r.cpu for r in self.empty[tool]])

    def server(self, tool: str) -> float | None:
        """QEMU's CPU ms/command while serving ``tool`` (QEMU reads a request one byte per read, so
        it costs more the more bytes a tool sends per command); None if unknown."""
        samples = self.server_cpu.get(tool)
        return median(samples) / self.lines * 1000 if samples else None

    def _per_command(self, full: list[float], empty: list[float]) -> float:
        return (median(full) - median(empty)) / self.lines * 1000

    def samples(self) -> dict[str, object]:
        return {"wall_s": {t: [round(r.wall, 4) for r in runs] for t, runs in self.full.items()},
                "no_input_wall_s": {t: [round(r.wall, 4) for r in runs] for t, runs in self.empty.items()},
                "cpu_s": {t: [round(r.cpu, 6) for r in runs] for t, runs in self.full.items()},
                "no_input_cpu_s": {t: [round(r.cpu, 6) for r in runs] for t, runs in self.empty.items()},
                "qemu_cpu_s": self.server_cpu}


@dataclass
class Tool:
    name: str
    command: Callable[[str, Sequence[str]], list[str]]  # (socket, options) -> argv
    line: Callable[[str], str]  # a QMP command name -> the tool's input line

    def argv(self, sock: str, *options: str) -> list[str]:
        return self.command(sock, options)


def _script(name: str, module: str) -> list[str]:
    path = Path(PYTHON).parent / name
    return [str(path)] if path.exists() else [PYTHON, "-m", module]


def qmpsh_command(qmpsh_src: Path | None = None) -> list[str]:
    """How qmpsh is started, before its options and address."""
    # With --qmpsh-rev, qmpsh comes from an exported tree on PYTHONPATH: run what its console script runs.
    return ([PYTHON, "-c", "import sys; from qmpsh.cli import main; sys.exit(main())"] if qmpsh_src
            else _script("qmpsh", "qmpsh"))


def make_tools(qmpsh_src: Path | None = None) -> dict[str, Tool]:
    try:
        import qemu.qmp.qmp_shell  # noqa: F401
    except ImportError:
        print("qemu.qmp (qmp-shell) is missing: installing it with pip", file=sys.stderr)
        subprocess.run([PYTHON, "-m", "pip", "install", "qemu.qmp"], check=True)
    qmpsh = qmpsh_command(qmpsh_src)
    qmp_shell = _script("qmp-shell", "qemu.qmp.qmp_shell")
    return {
        "qmpsh": Tool("qmpsh", lambda s, o: [*qmpsh, *o, s], lambda c: c),
        "qmp-shell": Tool("qmp-shell", lambda s, o: [*qmp_shell, *o, s], lambda c: c),
        "raw": Tool("raw", lambda s, o: [PYTHON, str(RAWQMP), s], lambda c: json.dumps({"execute": c})),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak(values: Sequence[float | None]) -> float | str:
    """The largest peak RSS of several runs, in MB."""
    known = [v for v in values if v is not None]
    return round(max(known), 1) if known else "n/a (no /usr/bin/time)"


def per_second(count: int, wall: float, base: float) -> float:
    """``count`` per second of ``wall`` beyond ``base`` (start-up); of the whole ``wall`` if that is noise."""
    net = wall - base
    return count / (net if net > 0.001 else wall)


def check_rc(result: Run, what: str) -> None:
    if result.rc != 0:
        raise SystemExit(f"bench: {what} exited {result.rc}: {result.err.decode(errors='replace')[-2000:]}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a running process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Hog:
    pid: int
    busy: float | None = None  # the share of one core the hog had over the block (0 to 1), set at its end


@contextmanager
def cpu_hog() -> Iterator[Hog]:
    """One core kept busy by a spinning Python process for the ``with`` block, killed after it, even on error."""
    proc = subprocess.Popen([PYTHON, "-c", "while True: pass"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.perf_counter()
    hog = Hog(proc.pid)
    try:
        yield hog
        if proc.poll() is not None:
            raise SystemExit(f"bench: the CPU hog exited {proc.returncode} during the row")
        used = cpu_seconds(proc.pid)
        hog.busy = None if used is None else round(used / (time.perf_counter() - started), 2)
    finally:
        proc.kill()
        proc.wait()


# -- QEMU and the fake servers ---------------------------------------------------------


class Qemu:
    """``qemu-system-x86_64 -M none -S`` with a QMP unix socket."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which(QEMU) is None:
            raise SystemExit(f"bench: {QEMU} is missing (bash .ci/setup installs it)")
        self.socket = str(workdir / "qemu.sock")
        self.log = workdir / "qemu.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [QEMU, "-display", "none", "-M", "none", "-nodefaults", "-S",
                 "-qmp", f"unix:{self.socket},server=on,wait=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: QEMU exited: {self.log.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(self.socket)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("bench: QEMU did not open its QMP socket in 30 s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


LIBVIRT_URI = os.environ.get("QMPSH_BENCH_LIBVIRT_URI", "qemu:///system")
DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices><emulator>{qemu}</emulator><memballoon model='none'/></devices>
</domain>
"""


class NoDomain(Exception):
    """No domain can be benchmarked here; the message says why."""


class Domain:
    """A transient, paused TCG domain of the benchmark's QEMU build, at LIBVIRT_URI; destroyed by ``stop``.

    The benchmark never starts libvirtd: without one that answers and lets it create a domain (or
    without virsh, or libvirt-python for qmpsh --domain), NoDomain says why and the rows are skipped.
    """

    def __init__(self, workdir: Path) -> None:
        why = self.unavailable()
        if why is not None:
            raise NoDomain(why)
        self.name = f"qmpsh-bench-{os.getpid()}"
        xml = workdir / "domain.xml"
        xml.write_text(DOMAIN_XML.format(name=self.name, qemu=shutil.which(QEMU) or QEMU))
        made = virsh("create", str(xml), "--paused")
        if made.returncode != 0:
            raise NoDomain(f"virsh create failed at {LIBVIRT_URI}: {' '.join(made.stderr.split())}")

    @staticmethod
    def unavailable() -> str | None:
        """Why no domain can be benchmarked here, or None."""
        if shutil.which("virsh") is None:
            return "virsh is missing (libvirt-clients)"
        try:
            import libvirt  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            return "libvirt-python is missing (pip install 'qmpsh[libvirt]')"
        answer = virsh("version")
        if answer.returncode != 0:
            return f"libvirt does not answer at {LIBVIRT_URI}: {' '.join(answer.stderr.split())}"
        return None

    def stop(self) -> None:
        virsh("destroy", self.name)


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", "-c", LIBVIRT_URI, *args], capture_output=True, text=True, timeout=120)


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Row:
    values: dict[str, object] = field(default_factory=dict)  # per tool
    ratio: str = ""
    target: str = ""
    met: bool | None = None
    detail: dict[str, object] = field(default_factory=dict)


def bench_env(workdir: Path, qmpsh_src: Path | None = None, bytecode: bool = True) -> dict[str, str]:
    """The environment every tool runs in: a user's, with nothing of this machine's test setup.

    PYTHONUNBUFFERED would turn every print into a write(2) and PYTHONDONTWRITEBYTECODE would make
    every run compile qmpsh from source (an editable install has no byte code yet): neither is how
    users run these tools. Byte code goes to a private PYTHONPYCACHEPREFIX, never into the checkout
    (``bytecode=False``, for --smoke: leave byte code settings as they are, and skip compiling it all).
    HOME and XDG directories are private too: qmp-shell writes ~/.qmp-shell_history, qmpsh its history.
    """
    env = dict(os.environ)
    for name in ("QMP_SOCKET", "NO_COLOR", "PYTHONPROFILEIMPORTTIME", "COLUMNS", "LINES", "PYTHONUNBUFFERED",
                 "PYTHONPATH", "PYTHONSTARTUP", "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONASYNCIODEBUG",
                 "PYTHONWARNINGS"):
        env.pop(name, None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    if qmpsh_src is not None:
        env["PYTHONPATH"] = str(qmpsh_src)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[name] = str(home / name.lower())
    return env


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path, log: Callable[[str], None],
                 qmpsh_src: Path | None = None, server_pid: int | None = None) -> None:
        self.sizes = sizes
        self.server_pid = server_pid  # the QEMU every socket row talks to: its CPU per command is reported
        self.workdir = workdir
        self.log = log
        self.qmpsh_src = qmpsh_src
        self.tools = make_tools(qmpsh_src)
        self.env = bench_env(workdir, qmpsh_src, bytecode=not sizes.smoke)
        self.rows: dict[str, Row] = {}

    def input_for(self, tool: Tool, command: str, count: int) -> bytes:
        return ((tool.line(command) + "\n") * count).encode()

    def warm_up(self, sock: str) -> None:
        """One scripted and one interactive run of each tool, untimed: fills the byte-code cache."""
        self.log("warm-up: every tool once, scripted and at a pty")
        for tool in self.tools.values():
            check_rc(run(tool.argv(sock), self.input_for(tool, "query-status", 1), self.env), f"{tool.name} warm-up")
        for name in ("qmpsh", "qmp-shell"):
            self.prompt_time(self.tools[name].argv(sock))
        check_rc(run(self.tools["qmpsh"].argv(sock, "--color", "always", "-p"), b"query-qmp-schema\n", self.env),
                 "qmpsh --color always -p warm-up")

    # -- 1. scripted throughput, 2. start-up and imports, memory --

    def throughput(self, sock: str) -> None:
        n = self.sizes.lines
        self.log(f"scripted throughput: {n} query-status lines, {self.sizes.throughput_runs} runs per tool")
        runs = self.per_command(sock)
        wall = {t: runs.wall(t) for t in TOOLS}
        cpu = {t: runs.cpu(t) for t in TOOLS}
        qmpsh_ratio = wall["qmpsh"] / wall["raw"]
        shell_ratio = wall["qmp-shell"] / wall["raw"]
        samples = runs.samples()
        self.rows[ROW_THROUGHPUT] = Row(
            {t: round(wall[t], 3) for t in TOOLS},
            f"qmpsh/raw {qmpsh_ratio:.2f}, qmp-shell/raw {shell_ratio:.2f}", "qmpsh/raw <= 1.15",
            qmpsh_ratio <= 1.15,
            {"lines": n, "runs": self.sizes.throughput_runs,
             "qmpsh/raw": round(qmpsh_ratio, 3), "qmp-shell/raw": round(shell_ratio, 3),
             "wall_s": samples["wall_s"], "no_input_wall_s": samples["no_input_wall_s"]},
        )
        served = {t: runs.server(t) for t in TOOLS}
        qemu_cpu = ("; QEMU's CPU ms/command serving " + ", ".join(f"{t} {v:.3f}" for t, v in served.items())
                    if all(v is not None for v in served.values()) else "")
        self.rows[ROW_THROUGHPUT_CPU] = Row(
            {t: round(cpu[t], 3) for t in TOOLS},
            f"qmpsh/raw {cpu['qmpsh'] / max(cpu['raw'], 1e-9):.1f}{qemu_cpu}",
            "qmpsh <= 0.07 ms", cpu["qmpsh"] <= 0.07,
            {"cpu_s": samples["cpu_s"], "no_input_cpu_s": samples["no_input_cpu_s"],
             "note": "user+system from wait4, microseconds"})
        self.rows[ROW_THROUGHPUT_WALL] = Row(
            {t: round(median([r.wall for r in runs.full[t]]), 3) for t in TOOLS},
            "start-up (no input): " + ", ".join(f"{t} {median([r.wall for r in runs.empty[t]]) * 1000:.0f} ms"
                                                for t in TOOLS),
            "", None, {"lines": n})
        self.rows[ROW_RSS] = Row({t: peak([r.rss_mb for r in runs.full[t]]) for t in TOOLS}, "", "", None, {"lines": n})

    def per_command(self, sock: str, options: dict[str, tuple[str, ...]] | None = None) -> PerCommand:
        """Every tool run with ``lines`` query-status lines and with empty stdin, interleaved across tools
        (``options``: extra arguments per tool name); each run's output is checked for every reply."""
        n = self.sizes.lines
        runs = PerCommand({t: [] for t in TOOLS}, {t: [] for t in TOOLS}, n, {t: [] for t in TOOLS})
        for _ in range(self.sizes.throughput_runs):
            for tool in self.tools.values():
                argv = tool.argv(sock, *(options or {}).get(tool.name, ()))
                base = run(argv, b"", self.env, rss=True)
                check_rc(base, f"{tool.name} with no input")
                before = cpu_seconds(self.server_pid) if self.server_pid else None
                result = run(argv, self.input_for(tool, "query-status", n), self.env, rss=True)
                after = cpu_seconds(self.server_pid) if self.server_pid else None
                check_rc(result, f"{tool.name} with {n} lines")
                if before is not None and after is not None:
                    runs.server_cpu[tool.name].append(after - before)
                replies = result.out.count(b'"return"')
                if replies != n:
                    raise SystemExit(f"bench: {tool.name} printed {replies} replies for {n} commands")
                runs.empty[tool.name].append(base)
                runs.full[tool.name].append(result)
        return runs

    def per_command_row(self, sock: str, target: float, options: dict[str, tuple[str, ...]] | None = None,
                        extra: dict[str, object] | None = None) -> Row:
        """A throughput row over ``per_command``: ms/command per tool, met when qmpsh/raw <= ``target``."""
        runs = self.per_command(sock, options)
        wall = {t: runs.wall(t) for t in TOOLS}
        ratio = wall["qmpsh"] / wall["raw"]
        text = (f"qmpsh/raw {ratio:.2f}, qmp-shell/raw {wall['qmp-shell'] / wall['raw']:.2f}; "
                f"CPU qmpsh {runs.cpu('qmpsh'):.3f} ms/command")
        detail = {"qmpsh/raw": round(ratio, 3), "cpu_ms_per_command": {t: round(runs.cpu(t), 3) for t in TOOLS},
                  **(extra or {}), "lines": runs.lines, "runs": self.sizes.throughput_runs,
                  "options": options or {}, **runs.samples()}
        return Row({t: round(wall[t], 3) for t in TOOLS}, text, f"qmpsh/raw <= {target}", ratio <= target, detail)

    def throughput_hog(self, sock: str) -> None:
        """Issue 14 target 2: the throughput row again while the benchmark keeps one core busy itself."""
        self.log(f"scripted throughput under a CPU hog: {self.sizes.lines} lines, {self.sizes.throughput_runs} "
                 "runs per tool, one core spinning")
        with cpu_hog() as hog:
            row = self.per_command_row(sock, 1.3)
        row.detail["hog_busy_share_of_a_core"] = hog.busy
        row.ratio += f"; hog {hog.busy:.0%} of a core" if hog.busy is not None else ""
        self.rows[ROW_THROUGHPUT_HOG] = row

    def throughput_e(self, sock: str) -> None:
        """Issue 14 target 2: qmpsh -e (exit on error: nothing pipelined) against the sequential raw client."""
        self.log(f"scripted throughput, qmpsh -e: {self.sizes.lines} lines, {self.sizes.throughput_runs} runs per tool")
        self.rows[ROW_THROUGHPUT_E] = self.per_command_row(
            sock, 1.5, {"qmpsh": ("-e",)},
            {"note": "qmpsh -e sends a line only after the previous reply; raw is sequential; qmp-shell as is"})

    def startup(self, sock: str) -> None:
        runs = self.sizes.startup_runs
        self.log(f"start-up: one query-status line, {runs} runs per tool")
        walls: dict[str, list[float]] = {t: [] for t in TOOLS}
        floors: dict[str, list[float]] = {f: [] for f in STARTUP_FLOORS}
        for _ in range(runs):
            for tool in self.tools.values():
                result = run(tool.argv(sock), self.input_for(tool, "query-status", 1), self.env)
                check_rc(result, f"{tool.name} start-up")
                walls[tool.name].append(result.wall)
            for floor, code in STARTUP_FLOORS.items():
                result = run([PYTHON, "-c", code], b"", self.env)
                check_rc(result, f"start-up floor {floor}")
                floors[floor].append(result.wall)
        ms = {t: median(walls[t]) * 1000 for t in TOOLS}
        floor_ms = {f: median(v) * 1000 for f, v in floors.items()}
        ratio = ms["qmpsh"] / ms["qmp-shell"]
        over_floor = ms["qmpsh"] / floor_ms["+qemu.qmp"]
        self.rows[ROW_STARTUP] = Row(
            {t: round(ms[t], 1) for t in TOOLS},
            f"qmpsh/(+qemu.qmp floor) {over_floor:.2f}, qmpsh/qmp-shell {ratio:.2f} (issue 5: <= 0.7), "
            f"qmpsh/raw {ms['qmpsh'] / ms['raw']:.2f}; floors/qmp-shell: "
            + ", ".join(f"{f} {floor_ms[f] / ms['qmp-shell']:.2f}" for f in STARTUP_FLOORS),
            "qmpsh/(+qemu.qmp) <= 1.05", over_floor <= 1.05,
            {"runs": runs, "wall_s": {t: [round(w, 4) for w in walls[t]] for t in TOOLS},
             "floor_ms": {f: round(v, 1) for f, v in floor_ms.items()},
             "floor_code": STARTUP_FLOORS, "qmpsh/+qemu.qmp": round(over_floor, 3),
             "qmpsh/qmp-shell": round(ratio, 3)})

        # What a scripted run imports: python -X importtime reports every module on stderr.
        result = run([PYTHON, "-X", "importtime", "-m", "qmpsh", sock], b"query-status\n", self.env)
        check_rc(result, "qmpsh -X importtime")
        modules = []
        for line in result.err.decode(errors="replace").splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if match:
                modules.append((match.group(4), int(match.group(2)), len(match.group(3))))
        heavy = sorted({h for m, _, _ in modules for h in HEAVY_IMPORTS if m == h or m.startswith(h + ".")})
        top = sorted(((m, us) for m, us, depth in modules if depth == 1), key=lambda x: -x[1])[:8]
        self.rows[ROW_IMPORTS] = Row(
            {"qmpsh": "yes: " + ", ".join(heavy) if heavy else "no", "qmp-shell": "-", "raw": "-"},
            f"{len(modules)} modules", "no", not heavy,
            {"heavy": heavy, "modules": len(modules),
             "top_cumulative_us": {m: us for m, us in top}})

    # -- --domain: beside virsh, and beside a socket to the same QEMU build --

    def domain(self, sock: str) -> None:
        try:
            domain = Domain(self.workdir)
        except NoDomain as why:
            print(f"bench: --domain rows skipped: {why}", file=sys.stderr, flush=True)
            for name in (ROW_DOMAIN_THROUGHPUT, ROW_DOMAIN_STARTUP):
                self.rows[name] = Row({"qmpsh": "skipped", "qmp-shell": "-", "raw": "-"}, f"skipped: {why}")
            return
        try:
            self._domain_throughput(sock, domain)
            self._domain_startup(sock, domain)
        finally:
            domain.stop()

    def _domain_argv(self, domain: Domain) -> list[str]:
        return [*qmpsh_command(self.qmpsh_src), "--domain", domain.name, "-c", LIBVIRT_URI]

    def _virsh_per_command(self, domain: Domain, count: int) -> float:
        """Seconds for ``count`` query-status commands, one ``virsh qemu-monitor-command`` process each."""
        start = time.perf_counter()
        for _ in range(count):
            result = run(["virsh", "-c", LIBVIRT_URI, "qemu-monitor-command", domain.name,
                          '{"execute":"query-status"}'], b"", self.env)
            check_rc(result, "virsh qemu-monitor-command")
        return time.perf_counter() - start

    def _domain_throughput(self, sock: str, domain: Domain) -> None:
        n, n_virsh, runs = self.sizes.domain_lines, self.sizes.virsh_lines, self.sizes.throughput_runs
        self.log(f"--domain throughput: {n} query-status lines, virsh {n_virsh} times, {runs} runs each")
        qmpsh = self.tools["qmpsh"]
        argvs = {"domain": self._domain_argv(domain), "socket": qmpsh.argv(sock)}
        walls: dict[str, list[float]] = {"domain": [], "socket": [], "virsh": []}
        empty: dict[str, list[float]] = {"domain": [], "socket": []}
        for _ in range(runs):
            for where, argv in argvs.items():
                base = run(argv, b"", self.env)
                check_rc(base, f"qmpsh ({where}) with no input")
                full = run(argv, self.input_for(qmpsh, "query-status", n), self.env)
                check_rc(full, f"qmpsh ({where}) with {n} lines")
                if full.out.count(b'"return"') != n:
                    raise SystemExit(f"bench: qmpsh ({where}) printed {full.out.count(b'return')} replies for {n}")
                empty[where].append(base.wall)
                walls[where].append(full.wall)
            walls["virsh"].append(self._virsh_per_command(domain, n_virsh) / n_virsh)
        ms = {w: (median(walls[w]) - median(empty[w])) / n * 1000 for w in empty}
        ms["virsh"] = median(walls["virsh"]) * 1000
        self.rows[ROW_DOMAIN_THROUGHPUT] = Row(
            {"qmpsh": round(ms["domain"], 3), "qmp-shell": "-", "raw": "-"},
            f"virsh qemu-monitor-command per command {ms['virsh']:.1f} ms (x{ms['virsh'] / ms['domain']:.0f}); "
            f"qmpsh on a socket {ms['socket']:.3f} ms (domain/socket {ms['domain'] / ms['socket']:.1f})",
            "report", None,
            {"lines": n, "virsh_lines": n_virsh, "runs": runs, "ms": {w: round(v, 3) for w, v in ms.items()},
             "wall_s": {w: [round(x, 4) for x in v] for w, v in walls.items()}})

    def _domain_startup(self, sock: str, domain: Domain) -> None:
        runs = self.sizes.startup_runs
        self.log(f"--domain start-up: one query-status line, {runs} runs each")
        qmpsh = self.tools["qmpsh"]
        argvs = {"domain": self._domain_argv(domain), "socket": qmpsh.argv(sock)}
        walls: dict[str, list[float]] = {"domain": [], "socket": [], "virsh": []}
        for _ in range(runs):
            for where, argv in argvs.items():
                result = run(argv, self.input_for(qmpsh, "query-status", 1), self.env)
                check_rc(result, f"qmpsh ({where}) start-up")
                walls[where].append(result.wall)
            walls["virsh"].append(self._virsh_per_command(domain, 1))
        ms = {w: median(v) * 1000 for w, v in walls.items()}
        self.rows[ROW_DOMAIN_STARTUP] = Row(
            {"qmpsh": round(ms["domain"], 1), "qmp-shell": "-", "raw": "-"},
            f"virsh qemu-monitor-command {ms['virsh']:.1f} ms (qmpsh/virsh {ms['domain'] / ms['virsh']:.2f}); "
            f"qmpsh on a socket {ms['socket']:.1f} ms (domain/socket {ms['domain'] / ms['socket']:.2f})",
            "report", None, {"runs": runs, "wall_s": {w: [round(x, 4) for x in v] for w, v in walls.items()}})

    # -- 3. time to the first prompt --

    def prompt_time(self, argv: list[str], timeout: float = 30) -> float:
        import pexpect

        env = dict(self.env, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
        start = time.perf_counter()
        child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(RUN_DIR), dimensions=(30, 100))
        try:
            child.expect_exact("(QEMU)", timeout=timeout)
            elapsed = time.perf_counter() - start
            child.sendcontrol("d")
            try:
                child.expect(pexpect.EOF, timeout=5)
            except pexpect.TIMEOUT:
                pass
        finally:
            child.close(force=True)
        return elapsed

    def prompt(self, sock: str) -> None:
        runs = self.sizes.prompt_runs
        self.log(f"time to first prompt through a pty, {runs} runs per tool")
        times: dict[str, list[float]] = {"qmpsh": [], "qmp-shell": []}
        for _ in range(runs):
            for name in times:
                times[name].append(self.prompt_time(self.tools[name].argv(sock)))
        ms = {t: median(v) * 1000 for t, v in times.items()}
        self.rows[ROW_PROMPT] = Row(
            {"qmpsh": round(ms["qmpsh"], 1), "qmp-shell": round(ms["qmp-shell"], 1), "raw": "n/a"},
            f"qmpsh/qmp-shell {ms['qmpsh'] / ms['qmp-shell']:.2f}", "report", None,
            {"runs": runs, "s": {t: [round(x, 4) for x in v] for t, v in times.items()}})

    def prompt_vs_schema(self, sock: str) -> None:
        """Time to the prompt against a fake server whose schema is QEMU's, then ``schema_scale`` times it."""
        scale = self.sizes.schema_scale
        runs = self.sizes.prompt_runs
        self.log(f"time to prompt against a fake server: QEMU's schema x1 and x{scale}, {runs} runs")
        schema = qmp(sock, "query-qmp-schema")
        commands = qmp(sock, "query-commands")
        entries = schema["return"]
        assert isinstance(entries, list)
        big = list(entries)
        for copy in range(1, scale):
            big += [dict(e, name=f"{e['name']}-x{copy}") for e in entries]
        files = {}
        for label, body in (("commands", commands), ("x1", schema), (f"x{scale}", {"return": big})):
            files[label] = self.workdir / f"answer-{label}.json"
            files[label].write_text(json.dumps(body))
        sizes_mb = {"x1": files["x1"].stat().st_size / 1e6, f"x{scale}": files[f"x{scale}"].stat().st_size / 1e6}
        labels = ("x1", f"x{scale}")
        times: dict[str, dict[str, list[float]]] = {"qmpsh": {k: [] for k in labels},
                                                    "qmp-shell": {k: [] for k in labels}}
        paths = {label: self.workdir / f"fake-{label}.sock" for label in labels}
        servers = [FakeQMPProcess(paths[label], "--answer", f"query-commands={files['commands']}",
                                  "--answer", f"query-qmp-schema={files[label]}", python=PYTHON) for label in labels]
        try:
            for _ in range(runs):  # interleaved, so load changes hit both sizes alike
                for label in labels:
                    for name in times:
                        times[name][label].append(self.prompt_time(self.tools[name].argv(str(paths[label]))))
        finally:
            for server in servers:
                server.stop()
        ms = {t: {k: median(v) * 1000 for k, v in by.items()} for t, by in times.items()}
        growth = ms["qmpsh"][f"x{scale}"] / ms["qmpsh"]["x1"]
        control = ms["qmp-shell"][f"x{scale}"] / ms["qmp-shell"]["x1"]
        self.rows[ROW_PROMPT_SCHEMA] = Row(
            {t: f"{ms[t]['x1']:.0f} -> {ms[t][f'x{scale}']:.0f}" for t in ms} | {"raw": "n/a"},
            f"qmpsh x{scale}/x1 {growth:.2f} (qmp-shell, never asks for it: {control:.2f})",
            f"no growth (x{scale}/x1 <= 1.2)", growth <= 1.2,
            {"schema_mb": {k: round(v, 2) for k, v in sizes_mb.items()}, "runs": runs,
             "ms": {t: {k: round(v, 1) for k, v in by.items()} for t, by in ms.items()}})

    # -- 4. query-qmp-schema output --

    def schema(self, sock: str) -> None:
        runs = self.sizes.schema_runs
        self.log(f"query-qmp-schema output, {runs} runs per variant")
        variants = {
            "qmpsh -p": self.tools["qmpsh"].argv(sock, "-p"),
            "qmpsh --color always -p": self.tools["qmpsh"].argv(sock, "--color", "always", "-p"),
            "qmp-shell -p": self.tools["qmp-shell"].argv(sock, "-p"),
            "raw": self.tools["raw"].argv(sock),
        }
        inputs = {name: self.input_for(self.tools[name.split()[0]], "query-qmp-schema", 1) for name in variants}
        walls: dict[str, list[float]] = {v: [] for v in variants}
        out_bytes: dict[str, int] = {}
        for _ in range(runs):
            for name, argv in variants.items():
                result = run(argv, inputs[name], self.env)
                check_rc(result, name)
                if len(result.out) < 100_000:
                    raise SystemExit(f"bench: {name} printed only {len(result.out)} bytes for query-qmp-schema")
                walls[name].append(result.wall)
                out_bytes[name] = len(result.out)
        # qmpsh's -p output must be one valid JSON document (colour removed).
        plain = re.sub(rb"\x1b\[[0-9;]*m", b"", run(variants["qmpsh --color always -p"], inputs["qmpsh -p"],
                                                     self.env).out)
        json.loads(plain)
        ms = {v: median(w) * 1000 for v, w in walls.items()}
        ratio = ms["qmpsh -p"] / ms["qmp-shell -p"]
        colour = ms["qmpsh --color always -p"] / ms["qmp-shell -p"]
        detail = {"runs": runs, "output_bytes": out_bytes, "ms": {k: round(v, 1) for k, v in ms.items()}}
        self.rows[ROW_SCHEMA] = Row(
            {"qmpsh": round(ms["qmpsh -p"], 1), "qmp-shell": round(ms["qmp-shell -p"], 1),
             "raw": f"{ms['raw']:.1f} (compact)"},
            f"qmpsh/qmp-shell {ratio:.2f}", "<= 1.2", ratio <= 1.2, detail)
        self.rows[ROW_SCHEMA_COLOUR] = Row(
            {"qmpsh": round(ms["qmpsh --color always -p"], 1), "qmp-shell": "-", "raw": "-"},
            f"vs qmp-shell -p {colour:.2f}", "<= 2.0", colour <= 2.0, detail)

    # -- 5. event flood --

    def flood(self, sock: str) -> None:  # sock unused: the fake server, not QEMU
        n = self.sizes.flood
        runs = self.sizes.flood_runs
        self.log(f"event flood: {n} events before the reply, {runs} runs per tool")
        # qmp-shell shows events only when an empty line is entered: give it one after the command.
        inputs = {t: self.input_for(self.tools[t], "query-status", 1) + (b"\n" if t == "qmp-shell" else b"")
                  for t in TOOLS}
        flood_sock, base_sock = self.workdir / "flood.sock", self.workdir / "noflood.sock"
        walls: dict[str, list[float]] = {t: [] for t in TOOLS}
        bases: dict[str, list[float]] = {t: [] for t in TOOLS}
        rss: dict[str, list[float | None]] = {t: [] for t in TOOLS}
        order: dict[str, str] = {}
        ok: dict[str, bool] = {}
        with FakeQMPProcess(flood_sock, "--flood", str(n), python=PYTHON), \
                FakeQMPProcess(base_sock, python=PYTHON):
            for _ in range(runs):
                for tool in self.tools.values():
                    base = run(tool.argv(str(base_sock)), inputs[tool.name], self.env, rss=True)
                    check_rc(base, f"{tool.name} without flood")
                    result = run(tool.argv(str(flood_sock)), inputs[tool.name], self.env, timeout=600, rss=True)
                    check_rc(result, f"{tool.name} flood")
                    seqs = [int(s) for s in re.findall(rb"""["']seq["']: (\d+)""", result.out)]
                    in_order = seqs == list(range(n))
                    ok[tool.name] = ok.get(tool.name, True) and in_order
                    order[tool.name] = (f"{len(seqs)}/{n}" + (", in order" if in_order else ", NOT in order"))
                    bases[tool.name].append(base.wall)
                    walls[tool.name].append(result.wall)
                    rss[tool.name].append(result.rss_mb)
        rate = {t: per_second(n, median(walls[t]), median(bases[t])) for t in TOOLS}
        self.rows[ROW_FLOOD_RATE] = Row(
            {t: round(rate[t]) for t in TOOLS}, f"qmpsh/raw {rate['qmpsh'] / rate['raw']:.2f}",
            "qmpsh >= 150,000/s", rate["qmpsh"] >= 150_000,
            {"events": n, "runs": runs, "wall_s": {t: [round(w, 3) for w in walls[t]] for t in TOOLS},
             "no_flood_wall_s": {t: [round(w, 3) for w in bases[t]] for t in TOOLS},
             "note": "qmp-shell prints events only after an empty input line, as Python dicts, not JSON"})
        self.rows[ROW_FLOOD_ORDER] = Row(
            dict(order), "", "qmpsh: all, in order", ok["qmpsh"],
            {"qmp-shell": "needs an empty line after the command; prints Python reprs"})
        qmpsh_peak = peak(rss["qmpsh"])
        self.rows[ROW_FLOOD_RSS] = Row({t: peak(rss[t]) for t in TOOLS}, "", "qmpsh < 50",
                                       qmpsh_peak < 50 if isinstance(qmpsh_peak, float) else None, {"events": n})

        # The realistic order (events after the reply): qmpsh waits for the last one with /wait.
        after_sock = self.workdir / "flood-after.sock"
        self.log(f"event flood: {n} events after the reply, qmpsh /wait for the last, {runs} runs")
        script = f"query-status\n/wait JOB_STATUS_CHANGE seq={n - 1} timeout=120\n".encode()
        waits: list[float] = []
        counts = []
        in_order = True
        rss_after: list[float | None] = []
        with FakeQMPProcess(after_sock, "--flood", str(n), "--flood-after-reply", python=PYTHON):
            for _ in range(runs):
                result = run(self.tools["qmpsh"].argv(str(after_sock)), script, self.env, timeout=600, rss=True)
                check_rc(result, "qmpsh /wait flood")
                seqs = [int(s) for s in re.findall(rb'"seq": (\d+)', result.out)]
                counts.append(f"{len(seqs)} printed, in order: {seqs[:n] == list(range(n))}")
                in_order = in_order and seqs[:n] == list(range(n))
                waits.append(result.wall)
                rss_after.append(result.rss_mb)
        after_rate = per_second(n, median(waits), median(bases["qmpsh"]))
        self.rows[ROW_FLOOD_WAIT] = Row(
            {"qmpsh": round(after_rate), "qmp-shell": "n/a (no /wait)", "raw": "n/a"},
            f"peak RSS {peak(rss_after)} MB" + ("" if in_order else "; NOT all in order"), "qmpsh >= 50000",
            after_rate >= 50_000 and in_order,
            {"events": n, "wall_s": [round(w, 3) for w in waits], "output": counts, "in_order": in_order})

    def pty_flood(self, sock: str) -> None:  # sock unused: the fake server, not QEMU
        """Target 5, second half: events flood a pty while the user types; the typed line must survive."""
        import pexpect

        n = self.sizes.flood // 5
        self.log(f"event flood at a pty: {n} events while typing")
        env = dict(self.env, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
        last = f'"seq": {n - 1}}}'.encode()
        rates: list[float] = []
        with FakeQMPProcess(self.workdir / "ptyflood.sock", "--flood", str(n), "--flood-on", "query-name",
                            "--flood-after-reply", python=PYTHON) as server:
            for _ in range(self.sizes.flood_runs):
                argv = self.tools["qmpsh"].argv(str(server.path), "--color", "never", "--timestamps", "off")
                child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(RUN_DIR), dimensions=(30, 100))
                try:
                    child.expect_exact("(QEMU)", timeout=30)
                    child.send("query-name\r")
                    started, seen, typed = time.perf_counter(), b"", 0
                    while last not in seen:
                        try:
                            seen += child.read_nonblocking(1 << 20, timeout=0.02)
                        except pexpect.TIMEOUT:
                            pass
                        if typed < 8 and time.perf_counter() - started > 0.02 * (typed + 1):
                            child.send("x")
                            typed += 1
                        if time.perf_counter() - started > 120:
                            raise SystemExit("bench: the pty flood did not finish in 120 s")
                    rates.append(n / (time.perf_counter() - started))
                    child.send("\x15\x04")  # tests/interactive/test_pty_flood.py checks the typed line; leave
                    child.expect(pexpect.EOF, timeout=10)
                finally:
                    child.close(force=True)
        rate = median(rates)
        self.rows[ROW_FLOOD_PTY] = Row({"qmpsh": round(rate), "qmp-shell": "n/a", "raw": "n/a"},
                                       f"{n} events, redraws batched by prompt_toolkit", "report", None,
                                       {"events": n, "rates": [round(r) for r in rates]})

    def completion(self, sock: str) -> None:  # sock unused: bench/completion.py starts its own QEMU
        """Target 6, in-process against its own QEMU (bench/completion.py): p95 from the cache."""
        self.log("completion latency: seed chain + 200 named nodes, a mirror job")
        script = str(Path(__file__).resolve().parent / "completion.py")
        result = run([PYTHON, script, *(["--smoke"] if self.sizes.smoke else [])], b"", self.env)
        check_rc(result, "bench/completion.py")
        data = json.loads(result.out.decode().strip().splitlines()[-1])
        self.rows[ROW_COMPLETION] = Row(
            {"qmpsh": data["p95_ms"], "qmp-shell": "-", "raw": "-"},
            f"p50 {data['p50_ms']} ms over {data['live_nodes']} live nodes; schema load at connect "
            f"{data['schema_load_ms']} ms", "p95 < 10", data["p95_ms"] < 10, data)


# -- profile ---------------------------------------------------------------------------------


def profile(sock: str, lines: int, env: dict[str, str], workdir: Path, qmpsh: Tool, top: int = 25) -> None:
    """qmpsh under cProfile over the throughput script: top functions, and time per area per command."""
    import pstats

    out = workdir / "qmpsh.prof"
    plain = run(qmpsh.argv(sock), b"query-status\n" * lines, env)
    check_rc(plain, "qmpsh")
    result = run([PYTHON, "-m", "cProfile", "-o", str(out), "-m", "qmpsh", sock], b"query-status\n" * lines, env)
    check_rc(result, "qmpsh under cProfile")
    print(f"cProfile of qmpsh, {lines} query-status lines: wall {result.wall:.2f} s under the profiler, "
          f"{plain.wall:.2f} s without")
    stats = pstats.Stats(str(out))
    areas: dict[str, float] = {}
    for (path, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if path == "~":
            area = function  # a builtin: the epoll wait, socket send, ...
        elif "/qmpsh/" in path:
            area = "qmpsh/" + path.rsplit("/qmpsh/", 1)[1]
        elif "/qemu/qmp/" in path:
            area = "qemu.qmp/" + path.rsplit("/qemu/qmp/", 1)[1]
        elif "/asyncio/" in path:
            area = "asyncio (stdlib)"
        elif "/json/" in path:
            area = "json (stdlib)"
        else:
            area = "other Python"
        areas[area] = areas.get(area, 0.0) + tottime
    total = sum(areas.values())
    print(f"\n-- own time by area (total {total:.2f} s; per command = over {lines} commands) --")
    for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1])[:20]:
        print(f"{seconds * 1000:9.1f} ms {seconds / lines * 1e6:8.1f} us/command {100 * seconds / total:5.1f}%  {area}")
    start_only = workdir / "qmpsh-no-input.prof"
    check_rc(run([PYTHON, "-m", "cProfile", "-o", str(start_only), "-m", "qmpsh", sock], b"", env),
             "qmpsh with no input under cProfile")
    profile_causes(stats.stats, pstats.Stats(str(start_only)).stats, lines)  # type: ignore[attr-defined]
    for key in ("tottime", "cumulative"):
        print(f"\n-- top {top} by {key} --")
        stats.sort_stats(key).print_stats(top)


# A profile entry: (file, line, function) -> (primitive calls, calls, own time, cumulative time, callers).
ProfileKey = tuple[str, int, str]
ProfileStats = dict[ProfileKey, tuple[int, int, float, float, dict[ProfileKey, tuple[int, int, float, float]]]]

# Issue 14's causes of qmpsh's CPU per command, each a test on a profile entry's (file, function), first match.
# A builtin (file "~") counts for the cause of the function that called it.
PROFILE_CAUSES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("json encode/decode", lambda path, fn: "/json/" in path or "_json" in fn),
    ("qemu.qmp Message wrapping", lambda path, fn: path.endswith("/qemu/qmp/message.py") or "_collections_abc" in path),
    ("syntax (parsing every line)", lambda path, fn: "/qmpsh/syntax.py" in path),
    ("render/flush", lambda path, fn: "/qmpsh/render.py" in path or "TextIOWrapper" in fn),
    ("schema", lambda path, fn: "/qmpsh/schema.py" in path or "/qmpsh/catalog.py" in path),
    ("socket send/recv", lambda path, fn: "_socket.socket" in fn),
    ("event loop (asyncio: iterations, tasks, futures, wait)",
     lambda path, fn: "/asyncio/" in path or "selectors.py" in path or "_asyncio" in fn or "_contextvars" in fn),
    ("qemu.qmp reading (protocol, QMPClient)", lambda path, fn: "/qemu/qmp/" in path),
)
# How often per command qmpsh does what the causes above are made of: (label, in the file name, function).
PROFILE_COUNTS = (
    ("event-loop iterations", "/base_events.py", "_run_once"), ("callbacks run", "/events.py", "_run"),
    ("tasks created", "/base_events.py", "create_task"), ("asyncio.wait", "/tasks.py", "wait"),
    ("json.dumps", "json/__init__.py", "dumps"), ("json.loads", "json/__init__.py", "loads"),
    ("Message.__getitem__", "/message.py", "__getitem__"),
    ("Mapping.__contains__", "_collections_abc", "__contains__"), ("syntax add_line", "/syntax.py", "add_line"),
    ("stdout flushes", "~", "<method 'flush' of '_io.TextIOWrapper' objects>"),
    ("socket sends", "~", "<method 'send' of '_socket.socket' objects>"),
)


def profile_cause(path: str, function: str) -> str:
    """The cause a profile entry belongs to; the rest of qmpsh by module ("qmpsh/session.py")."""
    cause = next((cause for cause, test in PROFILE_CAUSES if test(path, function)), "other")
    if cause == "other" and "/qmpsh/" in path:
        return "qmpsh/" + path.rsplit("/qmpsh/", 1)[1] + " (the rest)"
    return cause


def by_cause(stats: ProfileStats) -> dict[str, float]:
    """Own time (s) of a profile by cause; a builtin counts for the cause of its caller unless it has its own.

    The epoll wait is idle time (waiting for QEMU or stdin), not CPU.
    """
    def cause_of(key: ProfileKey) -> str:
        return "(idle) epoll wait" if "epoll" in key[2] else profile_cause(key[0], key[2])

    causes: dict[str, float] = {}
    for key, (_, _, own, _, callers) in stats.items():
        cause = cause_of(key)
        if key[0] != "~" or cause != "other":
            causes[cause] = causes.get(cause, 0.0) + own
            continue
        for caller, (_, _, own_for_caller, _) in callers.items():
            causes[cause_of(caller)] = causes.get(cause_of(caller), 0.0) + own_for_caller
    return causes


def profile_causes(stats: ProfileStats, start_only: ProfileStats, lines: int) -> None:
    """Own time per command by issue 14's causes, and how often per command each step runs.

    As in the throughput row, per command = (the run with ``lines`` commands - the run with no input) / lines.
    "other" is mostly imports, whose time varies from run to run: it has no share.
    """
    full, start = by_cause(stats), by_cause(start_only)
    causes = {cause: (seconds - start.get(cause, 0.0)) / lines for cause, seconds in full.items()}
    total = sum(v for k, v in causes.items() if k != "other" and not k.startswith("("))
    print(f"\n-- own time per command by cause (under cProfile; {total * 1e3:.3f} ms/command in all) --")
    for cause, seconds in sorted(causes.items(), key=lambda kv: (kv[0] == "other" or kv[0].startswith("("), -kv[1])):
        if abs(seconds) >= 5e-8:
            share = "" if cause == "other" or cause.startswith("(") else f"{100 * seconds / total:5.1f}%"
            print(f"{seconds * 1e3:8.4f} ms/command {share:>6}  {cause}")
    print("\n-- calls per command --")
    for label, where, name in PROFILE_COUNTS:
        calls = [sum(v[1] for (path, _, function), v in s.items() if where in path and function == name)
                 for s in (stats, start_only)]
        print(f"{(calls[0] - calls[1]) / lines:7.2f}  {label}")


# -- which qmpsh ------------------------------------------------------------------------------


def git(*args: str) -> str:
    """A read-only git query on the checkout ('' if git fails)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def imported_qmpsh(env: dict[str, str]) -> str:
    """Where the tools' Python imports qmpsh from in ``env`` (an editable install may point at another checkout)."""
    return run([PYTHON, "-c", "import qmpsh; print(qmpsh.__file__)"], b"", env).out.decode().strip()


def describe_working_tree() -> str:
    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "qmpsh")
    return f"working tree at {head}" + (" with uncommitted changes in qmpsh/" if dirty else "")


def export_qmpsh(rev: str, dest: Path) -> Path:
    """``git archive REV qmpsh`` unpacked into ``dest``: that revision's package, importable from ``dest``."""
    import io
    import tarfile

    try:
        data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "qmpsh"],
                              capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as err:
        why = err.stderr.decode(errors="replace").strip()
        raise SystemExit(f"bench: cannot export qmpsh at {rev}: {why}") from None
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # Python before 3.11.4: no extraction filters (git archive output is trusted)
            tar.extractall(dest)
    return dest


# -- output -----------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        qemu = "?"
    try:
        from importlib.metadata import version

        qmp = version("qemu.qmp")
    except Exception:  # noqa: BLE001
        qmp = "?"
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu, "nproc": os.cpu_count(),
            "memory": mem, "qemu": qemu, "python": platform.python_version(), "qemu.qmp": qmp,
            "kernel": platform.release()}


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def table(rows: dict[str, Row], smoke: bool = False, partial: bool = False) -> str:
    """The results as a text table: every row, or with ``partial`` (--only) just the rows measured."""
    header = ["row", *TOOLS, "ratio", "target", "met"]
    body = []
    for name in ROWS:
        row = rows.get(name)
        if row is None and partial:
            continue
        if row is None:
            body.append([name, "(not run)", "", "", "", "", ""])
            continue
        met = "-" if row.met is None or smoke else ("yes" if row.met else "NO")
        body.append([name, *(fmt(row.values.get(t, "")) for t in TOOLS), row.ratio, row.target, met])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


# The benchmark's parts, in the order they run: each is a Bench method of that name (with _ for -).
PARTS = ("throughput", "throughput-hog", "throughput-e",
         "startup", "prompt", "prompt-vs-schema", "schema", "flood", "pty-flood", "completion", "domain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one repetition (CI; not timed)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--profile", action="store_true",
                        help="only profile qmpsh (cProfile) over the scripted throughput input")
    parser.add_argument("--qmpsh-rev", metavar="REV",
                        help="benchmark qmpsh as of git revision REV (exported with git archive; the checkout "
                             "is not touched) instead of the working tree: to measure an optimisation's effect")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--only", metavar="PART", action="append", choices=PARTS,
                        help=f"run only this part (repeatable): {', '.join(PARTS)}; the table shows only its rows")
    parser.add_argument("--startup-runs", metavar="N", type=_positive,
                        help=f"repetitions of the start-up row (default {Sizes.startup_runs}): more to see a few ms")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    if args.startup_runs:
        sizes = replace(sizes, startup_runs=args.startup_runs)
    global RUN_DIR

    def log(text: str) -> None:
        if not args.quiet:
            print(f"bench: {text}", file=sys.stderr, flush=True)

    info = machine()
    info["load_before"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="qmpsh-bench-") as tmp:
        workdir = Path(tmp)
        RUN_DIR = workdir / "cwd"
        RUN_DIR.mkdir()
        qmpsh_src = None
        if args.qmpsh_rev:
            qmpsh_src = export_qmpsh(args.qmpsh_rev, workdir / "qmpsh-src")
            info["qmpsh"] = f"git {args.qmpsh_rev} ({git('rev-parse', '--short', args.qmpsh_rev)})"
        else:
            info["qmpsh"] = describe_working_tree()
            if not imported_qmpsh(bench_env(workdir)).startswith(str(REPO / "qmpsh")):
                qmpsh_src = REPO  # the venv's qmpsh is another checkout's (run from a git worktree): measure this one
        qemu = Qemu(workdir)
        try:
            bench = Bench(sizes, workdir, log, qmpsh_src, qemu.proc.pid)
            where = imported_qmpsh(bench.env)
            if qmpsh_src is not None and not where.startswith(str(qmpsh_src)):
                raise SystemExit(f"bench: --qmpsh-rev: qmpsh would be imported from {where}, not {qmpsh_src}")
            info["qmpsh_path"] = where
            if args.profile:
                bench.warm_up(qemu.socket)
                profile(qemu.socket, sizes.lines, bench.env, workdir, bench.tools["qmpsh"])
                return 0
            started = time.monotonic()
            if not args.smoke:
                bench.warm_up(qemu.socket)
            for part in PARTS:
                if not args.only or part in args.only:
                    getattr(bench, part.replace("-", "_"))(qemu.socket)
            elapsed = time.monotonic() - started
            info["load_after"] = round(os.getloadavg()[0], 2)
        finally:
            qemu.stop()
    print(f"qmpsh benchmark{' (smoke: tiny sizes, not meaningful)' if args.smoke else ''}, {info['date']}")
    print(f"machine: {info['cpu']}, {info['nproc']} CPUs, {info['memory']}; {info['qemu']}; "
          f"Python {info['python']}; qemu.qmp {info['qemu.qmp']}; qmpsh {info['qmpsh']}")
    print(f"sizes: {sizes.lines} lines x {sizes.throughput_runs} runs, start-up x {sizes.startup_runs}, "
          f"prompt x {sizes.prompt_runs}, schema x {sizes.schema_runs}, flood {sizes.flood} events x "
          f"{sizes.flood_runs}; took {elapsed:.0f} s")
    # The benchmark itself keeps about one CPU busy (the tool, QEMU or the fake server): judge by the load before.
    busy = info["load_before"] > 0.5 * (os.cpu_count() or 1)  # type: ignore[operator]
    print(f"1-minute load average: {info['load_before']} before, {info['load_after']} after"
          + (" - the machine was busy: expect noise, rerun when it is idle" if busy else "") + "\n")
    print(table(bench.rows, args.smoke, partial=bool(args.only)))
    if args.json:
        payload = {"machine": info, "smoke": args.smoke, "sizes": sizes.__dict__,
                   "rows": {name: row.__dict__ for name, row in bench.rows.items()}}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
