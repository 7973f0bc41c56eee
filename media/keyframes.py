"""Keyframe requests to the publisher, coalesced: however many viewers ask, at most one a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Send = Callable[[], Awaitable[bool]]


class KeyframeRequester:
    """Coalesces requests: the first goes out at once, later ones within the interval become one
    deferred request at the interval's end (a viewer that asked must still get its keyframe)."""

    def __init__(
        self,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_interval = min_interval
        self._clock = clock
        self._send: Send | None = None
        self._last_sent: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.coalesced = 0

    def bind(self, send: Send | None) -> None:
        """Point requests at the current publisher (None when there is none)."""
        self._send = send
        if send is None and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def request(self) -> None:
        """Ask for a keyframe; sent now, or coalesced into one sent when the interval is over."""
        if self._send is None:
            return
        now = self._clock()
        if self._last_sent is None or now - self._last_sent >= self._min_interval:
            self._fire()
            return
        self.coalesced += 1
        if self._timer is None:
            delay = self._min_interval - (now - self._last_sent)
            self._timer = asyncio.get_running_loop().call_later(delay, self._deferred)

    def _deferred(self) -> None:
        self._timer = None
        self._fire()

    def _fire(self) -> None:
        send = self._send
        if send is None:
            return
        self._last_sent = self._clock()
        self.sent += 1
        task = asyncio.ensure_future(self._run(send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, send: Send) -> None:
        try:
            if not await send():
                # The publisher's SSRC was not known yet: let the next request go out at once.
                self._last_sent = None
        except ConnectionError:
            pass
        except Exception:
            logger.exception("keyframe request failed")

    def close(self) -> None:
        self.bind(None)
        for task in self._tasks:
            task.cancel()
