"""Unhandled errors of HTTP handlers logged once per cause per window, not once per request.

A bug hit by every request of a crowd would otherwise write a traceback per request: the log
fills, the disk and the CPU go to formatting, and the one useful traceback scrolls away. A cause
is the exception's type and where it was raised (the innermost frame).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("live.http.common")

# Distinct causes remembered; past it the oldest window is forgotten (a cause is a code location,
# so this is only reached by a flood of different bugs).
MAX_CAUSES = 256


@dataclass(slots=True)
class _Window:
    started: float
    suppressed: int = 0


def cause_of(exc: BaseException) -> tuple[str, str]:
    """(exception type, `file:line` of the frame that raised it)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return type(exc).__qualname__, where


class FaultLog:
    """Logs the first occurrence of a cause with its traceback, then at most one line per cause
    per `window_s` saying how many were suppressed since; `on_suppressed` counts the rest."""

    def __init__(
        self,
        window_s: float = 60.0,
        *,
        on_suppressed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._on_suppressed = on_suppressed
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def report(self, exc: BaseException, what: str) -> None:
        """Log (or count) `exc`, raised while serving `what` (e.g. `POST /api/rooms`)."""
        cause = cause_of(exc)
        now = self._clock()
        window = self._windows.get(cause)
        if window is None:
            if len(self._windows) >= MAX_CAUSES:
                del self._windows[next(iter(self._windows))]
            self._windows[cause] = _Window(now)
            log.error("unhandled error in %s", what, exc_info=exc)
            return
        if now - window.started < self.window_s:
            window.suppressed += 1
            self._on_suppressed()
            return
        log.error(
            "unhandled error in %s: %s: %s at %s (%d more like it in the last %.0f s)",
            what, cause[0], exc, cause[1], window.suppressed, now - window.started,
        )  # fmt: skip
        self._windows[cause] = _Window(now)
