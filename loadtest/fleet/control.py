"""Load-generator worker processes and the pipe protocol the coordinator speaks with them.

Workers send `progress` (about once a second), `ready` (set up) and `done` (results); the
coordinator sends `go` (a wall-clock start shared by every worker) or `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any


@dataclass
class Fleet:
    """The worker processes of one run and what they reported."""

    procs: list[BaseProcess] = field(default_factory=list)
    conns: list[Connection] = field(default_factory=list)
    ready: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    progress: dict[int, dict[str, Any]] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)

    @classmethod
    def spawn(cls, target: Callable[[Any, Connection], None], plans: list[Any]) -> Fleet:
        """One `spawn`ed process per plan, each running `target(plan, conn)`."""
        ctx = multiprocessing.get_context("spawn")
        fleet = cls()
        for index, plan in enumerate(plans):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(plan, child), name=f"loadtest-{index}")
            proc.start()
            child.close()
            fleet.procs.append(proc)
            fleet.conns.append(parent)
        return fleet

    def pump(self, timeout: float) -> None:
        """Read whatever the workers sent within `timeout` (blocking; run in a thread)."""
        live = [c for i, c in enumerate(self.conns) if i not in self.dead]
        for conn in wait(live, timeout):
            assert isinstance(conn, Connection)
            index = self.conns.index(conn)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self.dead.add(index)
                continue
            kind = message.get("kind")
            if kind == "progress":
                self.progress[index] = message
            elif kind == "ready":
                self.ready[index] = message
            elif kind == "done":
                self.done[index] = message

    def total(self, key: str) -> int:
        return sum(int(p.get(key, 0)) for p in self.progress.values())

    def broadcast(self, message: dict[str, Any]) -> None:
        for conn in self.conns:
            if not conn.closed:
                with contextlib.suppress(BrokenPipeError, OSError):
                    conn.send(message)

    @property
    def pids(self) -> dict[str, int]:
        return {f"worker-{i}": p.pid for i, p in enumerate(self.procs) if p.pid}

    async def until(
        self,
        done: Callable[[], bool],
        seconds: float,
        tick: Callable[[], None] | None = None,
        every: float = 2.0,
        stop: asyncio.Event | None = None,
    ) -> bool:
        """Pump messages until `done()`, `seconds` pass or `stop` is set; `tick` every `every` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        next_tick = loop.time() + every
        while not done():
            if stop is not None and stop.is_set():
                return False
            left = deadline - loop.time()
            if left <= 0:
                return False
            if len(self.dead) == len(self.procs):
                if self.dead <= self.done.keys():
                    # Each sent its results before it left: a worker whose clock ran ahead of
                    # ours (a coordinator busy with other roles) finished, it did not fail.
                    return done()
                raise RuntimeError("every load-generator worker exited early")
            await asyncio.to_thread(self.pump, min(0.2, left))
            if tick is not None and loop.time() >= next_tick:
                next_tick = max(next_tick + every, loop.time())
                tick()
        return True

    async def reap(self) -> None:
        """Ask every worker to stop, wait, then terminate the stragglers (ours only)."""
        self.broadcast({"kind": "stop"})
        for proc in self.procs:
            await asyncio.to_thread(proc.join, 15)
            if proc.is_alive():
                proc.terminate()
                await asyncio.to_thread(proc.join, 5)
            proc.close()
        for conn in self.conns:
            conn.close()


class Commands:
    """The worker side of the pipe: `go` (a start time) and `stop`, read as they arrive."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.go: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)
        # uvloop leaves the watched fd non-blocking; a report bigger than the pipe's buffer
        # (a long run's per-answer times) would then fail with EAGAIN in `conn.send`.
        os.set_blocking(conn.fileno(), True)

    def _readable(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            message = {"kind": "stop"}
        if message.get("kind") == "go" and not self.go.done():
            self.go.set_result(float(message["t0"]))
        elif message.get("kind") == "stop" or message.get("kind") is None:
            self.stop.set()
            if not self.go.done():
                self.go.cancel()
            asyncio.get_running_loop().remove_reader(self.conn.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())

    async def run_until_stopped(self, work: Any) -> bool:
        """Run the coroutine `work`; cancel it when `stop` arrives. True if it ran to the end."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False


def worker_signals() -> None:
    """Ctrl-C reaches the whole process group: workers leave stopping to the coordinator."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
