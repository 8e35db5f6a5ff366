"""Fuzzing scripted qmpsh: random and mutated input lines against the fake QMP server.

Hypothesis writes scripts of random lines, mutations of the live block
operations document's ``(QEMU) ...`` example lines (characters inserted,
deleted or replaced; tokens dropped, doubled or swapped; prompts removed)
and mangled raw JSON requests. Each script runs through one scripted qmpsh
process (``-v`` and strict order, or pipelined; with the schema checking
arguments, or ``--no-schema``) against the fake server, which answers with
QEMU's real schema (taken once from a real QEMU) and ``{"return": {}}``.

What must hold, whatever the input:

* the exit status is 0 or 1 (1 exactly when stderr has an error), never a
  traceback, never a hang (each run is bounded);
* stdout is JSON documents only; with ``-v`` the requests echoed are
  exactly the requests the server received;
* nothing is sent for a line that fails to parse: every fuzzed line is
  followed by a marker request, so the requests the server received between
  two markers are those of one line; a line that qmpsh rejects
  (``error: line N, column C: ...`` then the line and a caret) contributes
  none, and no line contributes more than one;
* every line is accounted for: a request, a rejection, a "skipped" note, a
  built-in, or a blank/comment line; nothing is lost after a bad line.

Lines that continue onto the next line (an open bracket or transaction) would
swallow the marker after them, so only the last line of a script may be one:
it must then end the script with "unexpected end of input" and send nothing.

CI runs a short fuzz (``FUZZ_EXAMPLES_DEFAULT`` scripts per test, a few
seconds). For a long run set ``QMPSH_FUZZ_EXAMPLES``, e.g.::

    QMPSH_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/integration/test_fuzz_scripted.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmpsh.syntax import needs_more
from tests.conftest import REPO, qmpsh_env
from tests.fakeqmp import Connection, FakeQMPServer, with_id


FUZZ_EXAMPLES_DEFAULT = 15
EXAMPLES = int(os.environ.get("QMPSH_FUZZ_EXAMPLES", FUZZ_EXAMPLES_DEFAULT))
RUN_TIMEOUT = 30.0
MARK = "qmpsh-fuzz-mark"

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, report_multiple_bugs=False,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- the seed document's example lines -------------------------------------------

_SEED_DOC_PLACES = [REPO.parent / "shared" / "seed" / "live-block-operations.txt",
                    Path("/work/shared/seed/live-block-operations.txt")]
# The same lines, for a checkout that has no shared/ beside it.
_SEED_LINES_COPY = [
    "(QEMU)",
    "(QEMU) block-commit device=node-D base=a.qcow2 top=b.qcow2 job-id=job0",
    "(QEMU) block-commit device=node-D base=a.qcow2 top=d.qcow2 job-id=job0",
    "(QEMU) block-job-cancel device=job0",
    "(QEMU) block-job-complete device=job0",
    "(QEMU) block-stream device=node-C base-node=node-A job-id=job0",
    "(QEMU) block-stream device=node-D base-node=node-A job-id=job0",
    "(QEMU) block-stream device=node-D job-id=job0",
    '(QEMU) blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}',
    "(QEMU) blockdev-backup device=node-B target=node-E sync=full job-id=job0",
    "(QEMU) blockdev-mirror device=node-B target=node-E sync=full job-id=job0",
    "(QEMU) blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
    "(QEMU) blockdev-snapshot-sync node-name=node-B snapshot-file=c.qcow2 snapshot-node-name=node-C format=qcow2",
    "(QEMU) blockdev-snapshot-sync node-name=node-C snapshot-file=d.qcow2 snapshot-node-name=node-D format=qcow2",
    "(QEMU) cont",
    "(QEMU) drive-backup device=node-D sync=full target=e.qcow2 job-id=job0",
    "(QEMU) drive-mirror device=node-D target=e.qcow2 sync=full job-id=job0",
    "(QEMU) drive-mirror device=node-D target=nbd:localhost:49153:exportname=node-TargetDisk sync=top "
    "mode=existing job-id=job0",
    "(QEMU) nbd-server-add device=node-TargetDisk writable=true",
    '(QEMU) nbd-server-start addr={"type":"inet","data":{"host":"::","port":"49153"}}',
    "(QEMU) nbd-server-stop",
    "(QEMU) query-block-jobs",
    "(QEMU) quit",
]


def seed_lines() -> list[str]:
    for place in _SEED_DOC_PLACES:
        if place.is_file():
            lines = [line.strip() for line in place.read_text().splitlines() if line.strip().startswith("(QEMU)")]
            if lines:
                return sorted(set(lines))
    return _SEED_LINES_COPY


SEEDS = seed_lines()

# -- strategies ------------------------------------------------------------------

SYNTAX = [*"{}[]()\"'=.,:\\ \t#/!?-+eE019", "(QEMU) ", "TRANS> ", "-> ", "<- ", "transaction(", " )",
          "null", "true", "1e999", "\x00", "\r", "é", "\u2028", "\U0001f600"]
any_char = st.characters(blacklist_characters="\n", blacklist_categories=("Cs",))
syntax_char = st.sampled_from(SYNTAX)
random_line = st.one_of(
    st.text(any_char, max_size=80),
    st.lists(st.one_of(syntax_char, st.sampled_from(["a", "x", "node-A", "job0", "query-status", "execute"])),
             max_size=30).map("".join),
)


@st.composite
def mutated_seed(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(SEEDS))
    tokens = line.split(" ")
    for _ in range(draw(st.integers(0, 2))):  # token-level changes
        op = draw(st.sampled_from(["drop", "double", "swap", "unprompt", "retype"]))
        at = draw(st.integers(0, max(0, len(tokens) - 1)))
        if op == "drop" and len(tokens) > 1:
            del tokens[at]
        elif op == "double":
            tokens.insert(at, tokens[at])
        elif op == "swap" and len(tokens) > 1:
            other = draw(st.integers(0, len(tokens) - 1))
            tokens[at], tokens[other] = tokens[other], tokens[at]
        elif op == "unprompt" and tokens[0] == "(QEMU)":
            tokens = tokens[1:] or [""]
        elif op == "retype" and "=" in tokens[at]:
            key = tokens[at].split("=", 1)[0]
            value = draw(st.sampled_from(['{"a":', "[1,2]", "'x'", '"y"', "1.5", "-7", "true", "null", "",
                                          "{}", "[]", "8M", "\"unterminated", "{'py': True}", "1e400"]))
            tokens[at] = f"{key}={value}"
    chars = list(" ".join(tokens))
    for _ in range(draw(st.integers(0, 5))):  # character-level changes
        at = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(st.one_of(syntax_char, any_char))
        if op == "insert":
            chars[at:at] = list(ch)
        elif at < len(chars):
            if op == "delete":
                del chars[at]
            else:
                chars[at:at + 1] = list(ch)
    return "".join(chars)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(any_char, max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def json_request(draw: st.DrawFn) -> str:
    message: dict[str, object] = {}
    if draw(st.booleans()):
        message["execute"] = draw(st.sampled_from(["query-status", "block-job-cancel", "cont", "qmp_capabilities"])
                                  | st.text(max_size=10) | json_value)
    elif draw(st.booleans()):
        message["exec-oob"] = draw(st.sampled_from(["migrate-pause", "x"]) | json_value)
    if draw(st.booleans()):
        message["arguments"] = draw(json_value)
    if draw(st.booleans()):
        message["id"] = draw(json_value)
    for key in draw(st.lists(st.sampled_from(["return", "error", "event", "QMP", "data", "control"]), max_size=2)):
        message[key] = draw(json_value)
    text = json.dumps(message, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # mangle it
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(syntax_char) + text[at + draw(st.integers(0, 2)):]
    return draw(st.sampled_from(["", "-> ", "<- ", "(QEMU) "])) + text


def is_waiting_builtin(line: str) -> bool:
    """/wait and /job wait for events by design (60 s by default): not what this fuzz is about."""
    return re.match(r"^\s*(\S+\s)?\s*/(wait|job)(\s|$)", line) is not None


@st.composite
def script(draw: st.DrawFn, line: st.SearchStrategy[str]) -> tuple[list[str], str | None]:
    """Lines that each end where they end, and maybe one that leaves something open, last."""
    drawn = [ln for ln in draw(st.lists(line, min_size=1, max_size=25)) if not is_waiting_builtin(ln)]
    lines = [ln for ln in drawn if not needs_more(ln)]
    tail = next((ln for ln in drawn if needs_more(ln)), None)
    return lines, tail


# -- the fake server with QEMU's schema ------------------------------------------------


class Reply(dict):
    """A reply object that does not fill a failure report with 200 kB of schema."""

    def __repr__(self) -> str:
        return f"<reply of {len(json.dumps(self))} bytes>"


@pytest.fixture(scope="module")
def schema_reply(qemu_schema: list) -> Reply:
    """QEMU's own query-qmp-schema, as the reply the fake server gives."""
    return Reply({"return": qemu_schema})


@pytest.fixture(scope="module")
def sock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


class _OobConnection(Connection):
    """Answers ``exec-oob`` requests too, as QEMU does once OOB is negotiated (the plain fake does not)."""

    def handle(self, request: object) -> None:
        if isinstance(request, dict) and "execute" not in request and isinstance(request.get("exec-oob"), str):
            self.server.record(request)
            self.send(with_id({"return": {}}, request))
            return
        super().handle(request)


class FuzzServer(FakeQMPServer):
    connection_class = _OobConnection


# -- running one script and checking it ------------------------------------------------


@dataclass
class Outcome:
    lines: list[str]  # the fuzzed lines, in order (a marker follows each)
    tail: str | None
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    requests: list[dict]  # what the server got for user lines, markers included

    def __str__(self) -> str:
        shown = "\n".join(f"  {2 * i + 1:3}: {line!r}" for i, line in enumerate(self.lines))
        return (f"qmpsh {' '.join(self.args)} exited {self.returncode}\nlines:\n{shown}\ntail: {self.tail!r}\n"
                f"stderr:\n{self.stderr}\nrequests: {self.requests!r}")


def marker(n: int) -> str:
    return json.dumps({"execute": MARK, "arguments": {"n": n}})


def run_script(sock_dir: Path, schema: dict, lines: list[str], tail: str | None, args: list[str]) -> Outcome:
    text = "".join(f"{line}\n{marker(i)}\n" for i, line in enumerate(lines)) + (f"{tail}\n" if tail else "")
    with FuzzServer(sock_dir / "qmp.sock", answers={"query-qmp-schema": schema}) as server:
        try:
            # Bytes, not text=True: universal newlines would turn a "\r" inside a line into a line break.
            result = subprocess.run([sys.executable, "-m", "qmpsh", *args, "--timeout", "5", str(server.path)],
                                    input=text.encode(), capture_output=True, timeout=RUN_TIMEOUT,
                                    env=qmpsh_env(), cwd=REPO)
        except subprocess.TimeoutExpired as err:
            pytest.fail(f"qmpsh hung on:\n{text}\nstderr: {err.stderr!r}")
        requests = [r for r in server.requests if isinstance(r, dict) and type(r.get("id")) is int]
    return Outcome(lines, tail, args, result.returncode, result.stdout.decode(), result.stderr.decode(), requests)


_MARKER_PREFIX = re.compile(r"^\s*(\(QEMU\)|\(qemu\)|TRANS>|->|<-)(?=\s|$)\s?")


def check(out: Outcome) -> None:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out
    assert out.returncode in (0, 1), out
    err_lines = out.stderr.split("\n")  # not splitlines(): \x1e or \u2028 in a line is no line break
    assert (out.returncode == 1) == any(line.startswith("error:") for line in err_lines), out

    # stdout: JSON documents only.
    docs = []
    for line in out.stdout.split("\n")[:-1]:
        try:
            docs.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stdout line is not JSON: {line!r}\n{out}")

    # Rejections: "error: line N, column C: ..." followed by the line and a caret under column C.
    rejected: set[int] = set()
    for i, line in enumerate(err_lines):
        match = re.match(r"^error: line (\d+), column (\d+): ", line)
        if match:
            lineno, column = int(match.group(1)), int(match.group(2))
            rejected.add(lineno)
            assert i + 2 < len(err_lines), f"no source line and caret after {line!r}\n{out}"
            source, caret = err_lines[i + 1], err_lines[i + 2]
            assert source.startswith("  ") and caret == "  " + " " * (column - 1) + "^", (line, source, caret, out)
    assert not any(n % 2 == 0 for n in rejected), f"a marker line was rejected\n{out}"  # markers are lines 2, 4, ...
    # Requests between markers belong to one fuzzed line.
    segments: list[list[dict]] = [[]]
    for request in out.requests:
        if request.get("execute") == MARK:
            n = request.get("arguments", {}).get("n")
            assert n == len(segments) - 1, f"markers out of order or missing before {n}\n{out}"
            segments.append([])
        else:
            segments[-1].append(request)
    received = len(segments) - 1  # markers received: lines 0 .. received-1 ran completely
    for i, line in enumerate(out.lines[:received]):
        lineno = 2 * i + 1
        sent = segments[i]
        assert len(sent) <= 1, f"line {lineno} sent {len(sent)} requests\n{out}"
        if lineno in rejected:
            assert not sent, f"line {lineno} was rejected but sent {sent}\n{out}"
        elif not sent:
            body = _MARKER_PREFIX.sub("", line, count=1).strip() if _MARKER_PREFIX.match(line) else line.strip()
            accounted = (not body or body.startswith("#") or body.startswith("/")
                         or (body.endswith("?") and " " not in body)  # COMMAND? is /help COMMAND
                         or f"(line {lineno})" in out.stderr  # skipped: a pasted reply, a server line
                         or f"error: line {lineno}:" in out.stderr)
            assert accounted, f"line {lineno} ({line!r}) sent nothing and nothing was said about it\n{out}"
    if received < len(out.lines):
        # The run stopped early: only quit (QMP's or /quit) may do that.
        stopper = out.lines[received]
        last = segments[received]
        quit_line = re.match(r"^\s*(\S+\s)?\s*/quit(\s|$)", stopper) is not None
        assert quit_line or (last and last[-1].get("execute") == "quit"), \
            f"the script stopped after line {2 * received + 1} ({stopper!r})\n{out}"
    elif out.tail is not None:
        assert not segments[-1], f"the unfinished last line sent {segments[-1]}\n{out}"
        tail_lineno = 2 * len(out.lines) + 1
        assert re.search(rf"^error: line {tail_lineno}, column \d+: unexpected end of input", out.stderr, re.M), out

    # Every request got its reply printed; with -v each request was echoed exactly as it went out.
    def is_request(doc: object) -> bool:
        return isinstance(doc, dict) and ("execute" in doc or "exec-oob" in doc)

    replies = [d for d in docs if isinstance(d, dict) and ("return" in d or "error" in d) and not is_request(d)]
    user = [r for r in out.requests if r.get("execute") != MARK]
    assert len(replies) == len(out.requests), out
    if "-v" in out.args:
        echoed = [d for d in docs if is_request(d) and d.get("execute") != MARK]
        strip = lambda m: {k: v for k, v in m.items() if k != "id"}  # noqa: E731 - the user's id is shown, ours sent
        assert [strip(d) for d in echoed] == [strip(r) for r in user], out


modes = st.sampled_from([["-v"], [], ["-v", "--no-schema"], ["--no-schema"]])


@FUZZ_SETTINGS
@given(script(mutated_seed()), modes)
def test_mutated_seed_lines(schema_reply, sock_dir, lines_tail, args):
    lines, tail = lines_tail
    check(run_script(sock_dir, schema_reply, lines, tail, args))


@FUZZ_SETTINGS
@given(script(st.one_of(random_line, json_request(), mutated_seed())), modes)
def test_random_lines(schema_reply, sock_dir, lines_tail, args):
    lines, tail = lines_tail
    check(run_script(sock_dir, schema_reply, lines, tail, args))


@pytest.mark.parametrize("args", [["-v"], []], ids=["verbose", "pipelined"])
def test_lone_surrogates_in_json_strings(schema_reply, sock_dir, args):
    """Found by this fuzz: a JSON string escape of half a surrogate pair ("\\ud800", valid JSON)
    made -v crash with a UnicodeEncodeError traceback when echoing the request. Half a pair is no
    character, and QEMU refuses it: such a line is refused with a caret; a whole pair is sent."""
    lines = [r'{"execute": "query-name", "arguments": {"a": "\ud800", "b": "x\udc00y"}}',
             r'{"execute": "query-\ud800"}',
             r"query-status a='\ud800'",
             r'{"execute": "query-name", "arguments": {"a": "\ud83d\ude00"}}']
    out = run_script(sock_dir, schema_reply, lines, None, args)
    check(out)
    assert out.returncode == 1, out
    sent = [{k: v for k, v in r.items() if k != "id"} for r in out.requests if r["execute"] != MARK]
    assert sent == [{"execute": "query-name", "arguments": {"a": "\U0001f600"}}], out
    assert out.stderr.count(": lone surrogate \\ud800: not valid Unicode") == 3, out


def test_known_bad_lines_send_nothing(schema_reply, sock_dir):
    """Hand-picked lines, so the property is seen to bite even when hypothesis draws gently."""
    lines = [
        "(QEMU) blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
        "(QEMU) block-stream device=node-D job-id",  # not key=value
        '(QEMU) blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}}',
        "(QEMU) block-stream devce=node-D job-id=job0",  # schema: unknown argument
        "(QEMU) drive-mirror device=node-D target=e.qcow2 sync=fool job-id=job0",  # schema: bad enum value
        '{"execute": "query-status"} trailing',
        "=oops",
        "/nosuchbuiltin",
        '<- {"return": {}}',
        "(QEMU) query-block-jobs",
    ]
    assert not any(needs_more(ln) for ln in lines)
    out = run_script(sock_dir, schema_reply, lines, '{"execute": "query-status",', ["-v"])
    check(out)
    assert out.returncode == 1
    sent = [r["execute"] for r in out.requests if r["execute"] != MARK]
    assert sent == ["blockdev-snapshot-sync", "query-block-jobs"], out
    assert "skipped server line" in out.stderr, out
