"""How a crowd arrives: a closed crowd joins before the start, an open one arrives during the run.

Closed: every viewer connects before the measured window, paced by a token bucket at the join
rate. Open: viewers arrive while the show runs, at a rate given in steps (`[[0, 50], [5, 200]]`:
50 arrivals a second from the start, 200 from second 5), until the crowd or the duration ends.
Both are paced by `TokenBucket`, each worker taking its share of the rate.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

MAX_STEPS = 100


class TokenBucket:
    """Tokens refill at `rate` per second up to `burst`; `take()` waits for one (loop clock)."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a rate above 0")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = 1.0
        self._stamp: float | None = None

    def set_rate(self, rate: float) -> None:
        self._refill()
        self.rate = max(rate, 1e-9)

    def _refill(self) -> float:
        now = asyncio.get_running_loop().time()
        if self._stamp is None:
            self._stamp = now
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return now

    async def take(self, limit_s: float = 3600.0) -> bool:
        """Wait for a token; False if none comes within `limit_s`."""
        waited = 0.0
        for _ in range(1_000_000):
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            wait = (1.0 - self._tokens) / self.rate
            if waited + wait > limit_s:
                return False
            await asyncio.sleep(wait)
            waited += wait
        return False


@dataclass(frozen=True, slots=True)
class Arrivals:
    """The arrival model of a crowd: `closed` (join rate before the start) or `open` (steps)."""

    model: str = "closed"
    join_rate: float = 1000.0  # closed: joins per second, across all workers
    steps: tuple[tuple[float, float], ...] = ()  # open: (from second, arrivals per second)

    def validate(self) -> None:
        if self.model not in ("closed", "open"):
            raise ValueError("arrival model must be 'closed' or 'open'")
        if not 0 < self.join_rate <= 100_000:
            raise ValueError("join rate must be above 0 and at most 100,000/s")
        if self.model == "open":
            if not 1 <= len(self.steps) <= MAX_STEPS:
                raise ValueError(f"open arrivals need 1..{MAX_STEPS} steps [second, rate]")
            if any(t < 0 or not 0 <= r <= 100_000 for t, r in self.steps):
                raise ValueError("steps are [second >= 0, rate 0..100,000/s]")
            if [t for t, _ in self.steps] != sorted({t for t, _ in self.steps}):
                raise ValueError("steps must start at increasing seconds")

    def rate_at(self, t: float) -> float:
        """Arrivals per second at `t` seconds after the start (open model)."""
        rate = 0.0
        for at, r in self.steps:
            if t >= at:
                rate = r
        return rate

    def expected(self, duration_s: float) -> int:
        """Arrivals the steps produce within `duration_s` (before the crowd size caps them)."""
        total = 0.0
        for i, (at, r) in enumerate(self.steps):
            end = self.steps[i + 1][0] if i + 1 < len(self.steps) else duration_s
            total += max(0.0, min(end, duration_s) - at) * r
        return math.floor(total)

    def describe(self) -> str:
        if self.model == "closed":
            return f"closed crowd, joins paced at {self.join_rate:g}/s"
        steps = ", ".join(f"{r:g}/s from {t:g} s" for t, r in self.steps)
        return f"open arrivals: {steps}"
