"""Arrival pacing and the abort rule, without servers."""

from __future__ import annotations

import asyncio
import io

import pytest

from loadtest.plan.arrivals import Arrivals, TokenBucket
from loadtest.report import thresholds
from loadtest.report.display import Display, Monitor


async def test_token_bucket_paces_takes_at_its_rate() -> None:
    bucket = TokenBucket(200.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    for _ in range(41):
        assert await bucket.take()
    assert 0.18 <= loop.time() - began < 0.5  # 40 waits at 5 ms
    bucket.set_rate(1.0)
    assert not await bucket.take(limit_s=0.05)


def test_open_arrivals_step_up() -> None:
    a = Arrivals(model="open", steps=((0.0, 10.0), (2.0, 50.0)))
    a.validate()
    assert (a.rate_at(0.5), a.rate_at(2.0), a.rate_at(9.0)) == (10.0, 50.0, 50.0)
    assert a.expected(4.0) == 10 * 2 + 50 * 2
    with pytest.raises(ValueError, match="increasing"):
        Arrivals(model="open", steps=((2.0, 1.0), (1.0, 1.0))).validate()
    with pytest.raises(ValueError, match="closed"):
        Arrivals(model="sometimes").validate()


async def test_a_rule_failing_for_the_abort_time_stops_the_run() -> None:
    out = io.StringIO()
    rule = thresholds.parse("chat.delivery.p99 < 100ms")
    monitor = Monitor(Display(out, tty=False), [rule], abort_after_s=0.1)
    monitor.live({"chat.delivery.p99": 500.0})
    await asyncio.sleep(0.05)
    monitor.live({"chat.delivery.p99": 50.0})  # recovered: the clock starts again
    monitor.live({"chat.delivery.p99": 500.0})
    assert not monitor.stop.is_set()
    await asyncio.sleep(0.12)
    monitor.live({"chat.delivery.p99": 500.0})
    assert monitor.stop.is_set() and "chat.delivery.p99 < 100ms" in (monitor.reason or "")


def test_tty_status_is_redrawn_in_place() -> None:
    out = io.StringIO()
    display = Display(out, tty=True)
    display.status("chat", "joined 1")
    display.log("a note")
    display.close()
    text = out.getvalue()
    assert "\x1b[1F\x1b[J" in text and text.endswith("  [chat] joined 1\n")
