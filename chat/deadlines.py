"""One timer per key on the event loop, for deadlines of connections: a socket that must join
`/live` in time, a session whose token runs out. No task sleeps per connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadlines:
    """Calls `on_due(key)` when a key's deadline passes, unless it was cancelled first."""

    def __init__(self, on_due: Callable[[str], None]) -> None:
        self._on_due = on_due
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def set(self, key: str, delay_s: float) -> None:
        """(Re)arm `key`'s deadline `delay_s` from now."""
        self.cancel(key)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(0.0, delay_s), self._fire, key)

    def cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _fire(self, key: str) -> None:
        del self._timers[key]
        self._on_due(key)

    def __contains__(self, key: str) -> bool:
        return key in self._timers

    def __len__(self) -> int:
        return len(self._timers)
