"""Keyframe requests are coalesced to at most one per interval, and none is lost."""

from __future__ import annotations

import asyncio

from media.keyframes import KeyframeRequester
from tests.support.peers import Signal


async def test_requests_are_coalesced_and_the_last_is_deferred() -> None:
    sent: list[float] = []
    progress = Signal()
    loop = asyncio.get_running_loop()

    async def send() -> bool:
        sent.append(loop.time())
        progress.notify()
        return True

    requester = KeyframeRequester(min_interval=0.2)
    requester.bind(send)
    for _ in range(50):
        requester.request()
    async with asyncio.timeout(2):
        await progress.until(lambda: len(sent) == 2)
    assert requester.sent == 2 and requester.coalesced == 49
    assert sent[1] - sent[0] >= 0.19
    requester.close()


async def test_no_publisher_no_request() -> None:
    requester = KeyframeRequester()
    requester.request()
    assert requester.sent == 0


async def test_unknown_ssrc_lets_the_next_request_through() -> None:
    calls: list[int] = []
    progress = Signal()

    async def send() -> bool:
        calls.append(1)
        progress.notify()
        return False

    requester = KeyframeRequester(min_interval=60)
    requester.bind(send)
    requester.request()
    async with asyncio.timeout(1):
        await progress.until(lambda: len(calls) == 1)
        await asyncio.sleep(0)
        requester.request()
        await progress.until(lambda: len(calls) == 2)
    assert requester.coalesced == 0
    requester.close()
