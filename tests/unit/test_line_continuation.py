"""A line that ends with a backslash goes on on the next one, as in sh (offline)."""

from __future__ import annotations

from qmpsh.syntax import Reader, Request


def items(*lines: str) -> list[object]:
    reader = Reader(("wait",))
    found: list[object] = []
    for lineno, line in enumerate(lines, 1):
        found += reader.add_line(line, lineno).items
    error = reader.end_of_input()
    return [*found, *([error] if error else [])]


def test_a_key_value_line_continued():
    (item,) = items("block-stream device=node-D \\", "    job-id=job0 \\", "    speed=8M")
    assert isinstance(item, Request) and item.lineno == 1
    assert item.message == {"execute": "block-stream", "arguments": {"device": "node-D", "job-id": "job0",
                                                                      "speed": "8M"}}


def test_a_built_in_continued():
    (item,) = items("/wait BLOCK_JOB_READY \\", "device=job0")
    assert item.name == "wait" and item.args == {"device": "job0"}  # type: ignore[attr-defined]


def test_comments_and_shell_lines_keep_their_own_rules():
    assert items("# a comment ending in \\", "query-status")[0].message["execute"] == "query-status"  # type: ignore[attr-defined]


def test_input_that_ends_on_a_backslash_is_unfinished():
    (error,) = items("query-status \\")
    assert "its last line ends with \\" in str(error)
