"""The coordinator's view of its worker processes: finished workers are not failed ones."""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

from loadtest.benches import chat
from loadtest.fleet.control import Fleet
from loadtest.plan.workloads import ChatWorkload


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


class JoiningFleet:
    """The coordinator's view of a crowd joining at `per_window` per wait (no processes)."""

    def __init__(self, viewers: int, per_window: int) -> None:
        self.viewers, self.per_window, self.joined = viewers, per_window, 0
        self.procs = [object()]
        self.ready: set[int] = set()
        self.waits = 0

    def total(self, key: str) -> int:
        return self.joined if key == "joined" else 0

    async def until(self, done: Callable[[], bool], seconds: float) -> bool:
        self.waits += 1
        self.joined = min(self.viewers, self.joined + self.per_window)
        if self.joined == self.viewers:
            self.ready.add(0)
        return done()


async def test_a_crowd_joining_slower_than_asked_gets_the_time_while_it_progresses() -> None:
    work = ChatWorkload(viewers=1000, rate=1, duration_s=1, room="r", senders=1, connect_rate=1e6)
    slow = JoiningFleet(1000, per_window=100)  # ten windows: far past viewers / connect_rate
    assert await chat._crowd_joined(slow, work, slow.until, None) == (True, "")  # type: ignore[arg-type]
    assert slow.waits == 10

    stuck = JoiningFleet(1000, per_window=0)
    stuck.joined = 400
    ok, why = await chat._crowd_joined(stuck, work, stuck.until, None)  # type: ignore[arg-type]
    assert not ok and why == "no join settled for 30 s (400 of 1000)"
