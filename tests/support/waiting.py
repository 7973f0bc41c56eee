"""Waiting on state that fires no event (Redis TTLs, another process's /metrics)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(
    probe: Callable[[], Any],
    accept: Callable[[Any], bool] = bool,
    within: float = 5.0,
    every: float = 0.05,
) -> Any:
    """Re-run `probe` (sync or async) until `accept` holds for its value, for state with no event
    to wait on (Redis TTLs, another process's /metrics); fail after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            if accept(value):
                return value
            await asyncio.sleep(every)
