"""The event window that /wait looks at."""

from __future__ import annotations

import asyncio

import pytest

from qmpsh.events import EventLog, data_matches, event_filter


def ev(name: str, **data: object) -> dict:
    return {"event": name, "data": data, "timestamp": {"seconds": 0, "microseconds": 0}}


def test_data_matches_subsets_and_nesting():
    assert data_matches({"device": "job0", "len": 5}, {"device": "job0"})
    assert not data_matches({"device": "job1"}, {"device": "job0"})
    assert not data_matches({}, {"device": "job0"})
    assert data_matches({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}})
    assert not data_matches({"a": 3}, {"a": {"b": 1}})
    assert data_matches({"port": "49153"}, {"port": 49153})  # typed as a number, sent as a string


def run(coro):
    return asyncio.run(coro)


def test_an_event_that_already_arrived_counts_and_is_consumed():
    async def main():
        log = EventLog()
        log.add(ev("BLOCK_JOB_COMPLETED", device="job0"))
        got = await log.wait(event_filter("BLOCK_JOB_COMPLETED", {"device": "job0"}), 0.1)
        assert got["data"]["device"] == "job0"
        with pytest.raises(TimeoutError):
            await log.wait(event_filter("BLOCK_JOB_COMPLETED", {}), 0.05)

    run(main())


def test_a_later_event_wakes_the_waiter():
    async def main():
        log = EventLog()
        waiter = asyncio.ensure_future(log.wait(event_filter("STOP", {}), 5))
        await asyncio.sleep(0)
        log.add(ev("RESUME"))
        log.add(ev("STOP"))
        assert (await waiter)["event"] == "STOP"
        # The RESUME that nobody waited for stays in the window.
        assert (await log.wait(event_filter("RESUME", {}), 0.1))["event"] == "RESUME"

    run(main())


def test_window_restarts_at_the_first_command_after_a_wait():
    async def main():
        log = EventLog()
        log.command_sent()
        log.add(ev("A"))
        log.command_sent()  # no /wait yet: A stays
        log.add(ev("B"))
        await log.wait(event_filter("B", {}), 0.1)
        log.add(ev("C"))  # after the /wait, before the next command: a stale event
        log.command_sent()
        with pytest.raises(TimeoutError):
            await log.wait(event_filter("A", {}), 0.05)
        with pytest.raises(TimeoutError):
            await log.wait(event_filter("C", {}), 0.05)

    run(main())


def test_a_new_job_with_the_same_id_drops_the_old_jobs_events_only():
    async def main():
        log = EventLog()
        log.add(ev("BLOCK_JOB_COMPLETED", device="job0", type="stream"))
        log.add(ev("JOB_STATUS_CHANGE", id="job0", status="null"))
        log.add(ev("BLOCK_JOB_COMPLETED", device="job1", type="stream"))
        log.add(ev("STOP"))
        log.add(ev("JOB_STATUS_CHANGE", id="job0", status="created"))  # job0 again: a new job
        with pytest.raises(TimeoutError):
            await log.wait(event_filter("BLOCK_JOB_COMPLETED", {"device": "job0"}), 0.05)
        assert (await log.wait(event_filter("BLOCK_JOB_COMPLETED", {}), 0.1))["data"]["device"] == "job1"
        assert (await log.wait(event_filter("STOP", {}), 0.1))["event"] == "STOP"
        log.add(ev("BLOCK_JOB_COMPLETED", device="job0", type="backup"))
        got = await log.wait(event_filter("BLOCK_JOB_COMPLETED", {"device": "job0"}), 0.1)
        assert got["data"]["type"] == "backup"

    run(main())
