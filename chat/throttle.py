"""Per-socket and per-user request limits of `/live`, decided on the node without a round trip.

Token buckets: `rate` tokens a second, at most `burst` saved up. They guard the node's CPU and
Redis from one client's flood (joins, likes, state requests), so they live in memory: a user's
sockets on one node share a bucket; across nodes each node has its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Buckets:
    """Token buckets by key (a socket id, a user id)."""

    __slots__ = ("_clock", "_state", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def _tokens(self, key: str, now: float) -> float:
        tokens, stamp = self._state.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def take(self, key: str, n: float = 1.0) -> float:
        """Take `n` tokens: 0.0 when taken, else the seconds until they would be there."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens >= n:
            self._state[key] = (tokens - n, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (n - tokens) / self.rate if self.rate > 0 else math.inf

    def take_up_to(self, key: str, n: int) -> int:
        """Take as many whole tokens as there are, at most `n`; how many were taken."""
        now = self._clock()
        tokens = self._tokens(key, now)
        taken = min(n, int(tokens))
        self._state[key] = (tokens - taken, now)
        return taken

    def wait(self, key: str, n: float = 1.0) -> float:
        """Seconds until `n` tokens are there (0.0: now)."""
        tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= n else (n - tokens) / self.rate if self.rate > 0 else math.inf

    def forget(self, key: str) -> None:
        self._state.pop(key, None)

    def __len__(self) -> int:
        return len(self._state)


def retry_after_s(wait: float) -> int:
    """A wait as whole seconds for `retry_after` (at least 1, as HTTP's Retry-After)."""
    return max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
