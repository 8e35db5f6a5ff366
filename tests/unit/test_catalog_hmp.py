"""fetch_hmp when the server has no HMP, or does not answer."""

from __future__ import annotations

import asyncio

from qmpsh.catalog import fetch_hmp
from qmpsh.hmp import HmpHelp
from qmpsh.transport import CommandError, TransportError


def _failing(error: Exception):
    async def query(command, arguments=None):
        raise error

    return query


def test_a_server_without_hmp_has_no_hmp_commands():
    assert asyncio.run(fetch_hmp(_failing(CommandError("CommandNotFound", "no HMP")))) == HmpHelp()


def test_no_answer_means_ask_again():
    assert asyncio.run(fetch_hmp(_failing(TransportError("gone")))) is None
