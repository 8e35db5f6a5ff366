"""A pygments lexer for the input line: command, keys, ``=``, values, JSON, built-ins.

Its rules are built from ``syntax``'s token patterns, so it marks what the parser reads:
every pasted prompt and marker, command names, numbers, the transaction's brackets.
"""

from __future__ import annotations

import re

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import Comment, Generic, Keyword, Name, Number, Operator, Punctuation, String, Text

from qmpsh.syntax import (BOOLEANS, COMMAND_NAME, COMMENT, FLOAT, FORCE, INTEGER, MARKER, NULL, TRANSACTION_CLOSE,
                          TRANSACTION_OPEN)

_END = r"(?=\s|$)"  # where a word ends


class QmpLexer(RegexLexer):
    name = "qmpsh"
    aliases = ["qmpsh"]

    tokens = {
        "root": [
            (r"\s+", Text),
            (re.escape(COMMENT) + ".*$", Comment),
            (f"(?:{MARKER}){_END}", Generic.Prompt),
            (r"\{|\[", Punctuation, "json"),
            (r"/[A-Za-z_-]+", Keyword),
            (f"{re.escape(TRANSACTION_OPEN)}|{re.escape(TRANSACTION_CLOSE)}", Keyword),
            (f"{re.escape(FORCE)}?{COMMAND_NAME}\\??", Name.Function, "arguments"),
        ],
        "arguments": [
            (r"\n", Text, "#pop"),
            (r"\s+", Text),
            (r"([^\s=]+)(=)", bygroups(Name.Attribute, Operator), "value"),
            (r"\S+", Text),
        ],
        "value": [
            (r"(?=\s)|$", Text, "#pop"),
            (r'"(\\.|[^"\\])*"', String, "#pop"),
            (r"'(\\.|[^'\\])*'", String, "#pop"),
            (f"(?:{FLOAT}|{INTEGER}){_END}", Number, "#pop"),
            (f"(?:(?i:{'|'.join(BOOLEANS)})|{NULL}){_END}", Keyword.Constant, "#pop"),
            (r"\{|\[", Punctuation, ("#pop", "json")),
            (r"[^\s]+", String.Other, "#pop"),
        ],
        "json": [
            include("json-values"),
            (r"\{|\[", Punctuation, "#push"),
            (r"\}|\]", Punctuation, "#pop"),
        ],
        "json-values": [
            (r"\s+", Text),
            (r'"(\\.|[^"\\])*"(?=\s*:)', Name.Attribute),
            (r'"(\\.|[^"\\])*"', String),
            (r"'(\\.|[^'\\])*'", String),
            (r"-?\d+(\.\d+)?([eE][-+]?\d+)?", Number),
            (r"true|false|null|True|False|None", Keyword.Constant),
            (r"[:,]", Punctuation),
            (r"[^\s{}\[\]:,]+", Text),
        ],
    }
