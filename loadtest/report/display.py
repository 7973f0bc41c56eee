"""Live progress while a scenario runs, and what can stop it early (Ctrl-C, a failing rule).

On a terminal, one status line per driver is redrawn in place at most `REDRAW_S` apart; anywhere
else (a log, a CI job) the same lines are printed as plain log lines every `LOG_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

from loadtest.report import thresholds

REDRAW_S = 0.5
LOG_EVERY_S = 2.0

# Where a driver writes its progress lines without a `Monitor` (`print`, `Display.log`).
Progress = Callable[[str], None]


class Display:
    """Status lines by driver label; permanent log lines go above them."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._lines: dict[str, str] = {}
        self._drawn = 0
        self._last_draw = 0.0
        self._last_log: dict[str, float] = {}

    def log(self, line: str) -> None:
        """A line that stays (setup steps, warnings)."""
        self._clear()
        self.stream.write(line + "\n")
        self._draw()

    def status(self, label: str, line: str) -> None:
        """The current state of one driver; shown in place, or logged now and then."""
        self._lines[label] = line
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= REDRAW_S:
                self._clear()
                self._draw()
        elif now - self._last_log.get(label, 0.0) >= LOG_EVERY_S:
            self._last_log[label] = now
            self.stream.write(f"  [{label}] {line}\n")
            self.stream.flush()

    def close(self) -> None:
        """Leave the last status lines on screen as they were."""
        if self.tty and self._drawn:
            self._clear()
            for label, line in self._lines.items():
                self.stream.write(f"  [{label}] {line}\n")
        self._lines.clear()
        self._drawn = 0
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._drawn:
            # Up to the first status line, then erase to the end of the screen.
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if self.tty:
            for label, line in self._lines.items():
                self.stream.write(f"  [{label}] {line}\x1b[K\n")
            self._drawn = len(self._lines)
            self._last_draw = time.monotonic()
        self.stream.flush()


class Monitor:
    """Shared by the drivers of one run: the display, a stop flag, and the abort rule check.

    Drivers report live metrics (`chat.delivery.p99` over the last second, ...); a rule that
    names one and fails continuously for `abort_after_s` sets `stop` with a reason.
    """

    def __init__(
        self,
        display: Display,
        rules: list[thresholds.Rule] | None = None,
        abort_after_s: float | None = None,
    ) -> None:
        self.display = display
        self.stop = asyncio.Event()
        self.reason: str | None = None
        self.rules = rules or []
        self.abort_after_s = abort_after_s
        self._failing_since: dict[str, float] = {}
        self.latest: dict[str, float] = {}

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()
            self.display.log(f"stopping: {reason}")

    def status(self, label: str, line: str) -> None:
        self.display.status(label, line)

    def live(self, metrics: dict[str, float]) -> None:
        """Latest live values; checks the abort rules against them."""
        self.latest.update(metrics)
        if self.abort_after_s is None:
            return
        now = time.monotonic()
        for rule in self.rules:
            if rule.metric not in metrics:
                continue
            if rule.holds(metrics[rule.metric]):
                self._failing_since.pop(rule.text, None)
                continue
            since = self._failing_since.setdefault(rule.text, now)
            if now - since >= self.abort_after_s:
                self.request_stop(
                    f"rule {rule.text!r} failed for {self.abort_after_s:g} s "
                    f"(now {metrics[rule.metric]:.4g})"
                )
