"""A pygments lexer for the input line: command, keys, ``=``, values, JSON, built-ins."""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import Comment, Generic, Keyword, Name, Number, Operator, Punctuation, String, Text


class QmpLexer(RegexLexer):
    name = "qmpsh"
    aliases = ["qmpsh"]

    tokens = {
        "root": [
            (r"\s+", Text),
            (r"#.*$", Comment),
            (r"(\(QEMU\)|TRANS>|->|<-)(?=\s)", Generic.Prompt),
            (r"\{|\[", Punctuation, "json"),
            (r"/[A-Za-z_-]+", Keyword),
            (r"transaction\(|\)", Keyword),
            (r"!?[A-Za-z_][\w.+-]*\??", Name.Function, "arguments"),
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
            (r"[-+]?\d+(\.\d+)?(?=\s|$)", Number, "#pop"),
            (r"(true|false|null|True|False|None)(?=\s|$)", Keyword.Constant, "#pop"),
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
