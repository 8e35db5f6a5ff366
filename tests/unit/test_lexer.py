"""The input line's highlighting: each part of a line gets its own token type."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pygments.token import Generic, Keyword, Name, Number, Operator, Punctuation, String

from qmpsh.lexer import QmpLexer


def kinds(text: str) -> list[tuple[object, str]]:
    return [(kind, value) for kind, value in QmpLexer().get_tokens(text) if value.strip()]


def test_key_value_line():
    assert kinds('(QEMU) block-stream device=node-D job-id="a b" speed=8 auto-finalize=true') == [
        (Generic.Prompt, "(QEMU)"), (Name.Function, "block-stream"),
        (Name.Attribute, "device"), (Operator, "="), (String.Other, "node-D"),
        (Name.Attribute, "job-id"), (Operator, "="), (String, '"a b"'),
        (Name.Attribute, "speed"), (Operator, "="), (Number, "8"),
        (Name.Attribute, "auto-finalize"), (Operator, "="), (Keyword.Constant, "true"),
    ]


def test_json_values_and_raw_json():
    assert kinds('x d={"k": [1, null]}') == [
        (Name.Function, "x"), (Name.Attribute, "d"), (Operator, "="), (Punctuation, "{"),
        (Name.Attribute, '"k"'), (Punctuation, ":"), (Punctuation, "["), (Number, "1"), (Punctuation, ","),
        (Keyword.Constant, "null"), (Punctuation, "]"), (Punctuation, "}"),
    ]
    assert kinds('{"execute": "cont"}')[1] == (Name.Attribute, '"execute"')


def test_builtins_and_transactions():
    assert kinds("/wait BLOCK_JOB_COMPLETED device=job0")[:2] == [(Keyword, "/wait"),
                                                                  (Name.Function, "BLOCK_JOB_COMPLETED")]
    assert kinds("transaction(")[0] == (Keyword, "transaction(")


@given(st.text(alphabet=st.characters(blacklist_characters="\r"), max_size=80))
def test_any_text_lexes_back_to_itself(text):
    """Nothing typed is lost or changed by highlighting (pygments itself turns \r into \n)."""
    lexer = QmpLexer(stripnl=False, ensurenl=False)
    assert "".join(value for _, value in lexer.get_tokens(text)) == text
