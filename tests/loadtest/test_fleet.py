"""The coordinator's view of its worker processes: finished workers are not failed ones."""

from __future__ import annotations

from multiprocessing.connection import Connection

import pytest

from loadtest import chat
from loadtest.fleet import Fleet


def reports_then_exits(plan: str, conn: Connection) -> None:
    conn.send({"kind": "done", "plan": plan})
    conn.close()


def exits_silently(plan: str, conn: Connection) -> None:
    conn.close()


async def test_workers_that_reported_and_left_end_the_wait_without_an_error() -> None:
    fleet = Fleet.spawn(reports_then_exits, ["a", "b"])
    try:
        # The workers' clock ran ahead: they are gone while we still wait out the duration.
        assert await fleet.until(lambda: False, 30) is False
        assert sorted(m["plan"] for m in fleet.done.values()) == ["a", "b"]
    finally:
        await fleet.reap()


async def test_workers_that_left_without_results_are_an_error() -> None:
    fleet = Fleet.spawn(exits_silently, ["a"])
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            await fleet.until(lambda: False, 30)
    finally:
        await fleet.reap()


def test_a_crowd_larger_than_the_descriptor_limit_is_split_over_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A hard limit of 20,000 descriptors (this VM's) cannot hold 20,000 sockets in one process.
    monkeypatch.setattr(chat, "raise_open_files_limit", lambda: 20_000)
    assert chat.workers_for_descriptors(19_744) == 1
    assert chat.workers_for_descriptors(19_745) == 2
    assert chat.workers_for_descriptors(20_000) == 2
    assert chat.workers_for_descriptors(50_000) == 3
