"""Forwarder and Downtrack without sockets: GOP cache, late joiners, slow viewers, timelines."""

from __future__ import annotations

import asyncio

import pytest

from media.forwarder import Downtrack, DowntrackClosed, Forwarder
from media.frames import AUDIO_FRAME_TICKS, VIDEO_FRAME_TICKS, EncodedFrame


def video(i: int, key: bool = False, epoch: int = 1, codec: str = "VP8") -> EncodedFrame:
    return EncodedFrame(codec, bytes([i % 256]) * 100, i * VIDEO_FRAME_TICKS, key, epoch)


def audio(i: int) -> EncodedFrame:
    return EncodedFrame("opus", bytes([i % 256]) * 10, i * AUDIO_FRAME_TICKS, True, 1)


async def drain(d: Downtrack) -> list[EncodedFrame]:
    return [await d.next() for _ in range(d.queued)]


async def test_late_joiner_gets_the_gop_first() -> None:
    fwd = Forwarder("video")
    for i in range(5):
        fwd.push(video(i, key=i == 2))
    d = Downtrack("video", 100)
    fwd.subscribe(d)
    fwd.push(video(5))
    out = await drain(d)
    assert [f.data[0] for f in out] == [2, 3, 4, 5]
    assert out[0].keyframe and out[0].timestamp == 0


async def test_long_gop_is_dropped_and_a_joiner_asks_for_a_keyframe() -> None:
    asked: list[int] = []
    fwd = Forwarder("video", gop_max_frames=3, request_keyframe=lambda: asked.append(1))
    for i in range(5):
        fwd.push(video(i, key=i == 0))
    assert fwd.gop == []
    d = Downtrack("video", 100)
    fwd.subscribe(d)
    assert asked == [1]
    fwd.push(video(5))
    assert d.queued == 0  # waits for a keyframe
    fwd.push(video(6, key=True))
    assert d.queued == 1


async def test_gop_cache_is_bounded_in_bytes() -> None:
    fwd = Forwarder("video", gop_max_bytes=250)
    fwd.push(video(0, key=True))
    fwd.push(video(1))
    assert len(fwd.gop) == 2
    fwd.push(video(2))
    assert fwd.gop == []


async def test_slow_viewer_skips_to_the_next_keyframe_without_slowing_others() -> None:
    asked: list[int] = []
    fwd = Forwarder("video")
    slow = Downtrack("video", 4, on_need_keyframe=lambda: asked.append(1))
    fast = Downtrack("video", 100)
    fwd.subscribe(slow)
    fwd.subscribe(fast)
    fwd.push(video(0, key=True))
    await fast.next()
    assert (await slow.next()).timestamp == 0  # then the slow viewer stops reading
    for i in range(1, 10):
        fwd.push(video(i))
        await fast.next()
    assert slow.waiting_keyframe and slow.queued == 0 and asked == [1]
    assert slow.skips == 1 and slow.dropped == 9
    fwd.push(video(10, key=True))
    fwd.push(video(11))
    out = await drain(slow)
    assert [f.data[0] for f in out] == [10, 11]
    # the viewer's clock jumps with the skipped time and never goes back
    assert out[0].timestamp == 10 * VIDEO_FRAME_TICKS


async def test_full_queue_taking_a_keyframe_restarts_from_it() -> None:
    d = Downtrack("video", 2)
    d.offer(video(0, key=True))
    d.offer(video(1))
    d.offer(video(2, key=True))
    assert not d.waiting_keyframe
    assert [f.data[0] for f in await drain(d)] == [2]


async def test_audio_overflow_drops_the_oldest() -> None:
    d = Downtrack("audio", 3)
    for i in range(5):
        d.offer(audio(i))
    assert [f.data[0] for f in await drain(d)] == [2, 3, 4]
    assert d.dropped == 2


async def test_frames_of_another_codec_are_dropped() -> None:
    d = Downtrack("video", 10, codec="VP8")
    d.offer(video(0, key=True, codec="H264"))
    assert d.queued == 0 and d.dropped == 1


async def test_new_publisher_continues_the_timeline() -> None:
    d = Downtrack("video", 10)
    for i in range(50, 53):
        d.offer(video(i, key=i == 50, epoch=1))
    d.offer(video(0, key=True, epoch=2))
    d.offer(video(1, epoch=2))
    stamps = [f.timestamp for f in await drain(d)]
    assert stamps == [i * VIDEO_FRAME_TICKS for i in range(5)]


async def test_next_waits_and_close_wakes_it() -> None:
    d = Downtrack("video", 10)
    waiting = asyncio.ensure_future(d.next())
    await asyncio.sleep(0)
    d.offer(video(0, key=True))
    assert (await waiting).data[0] == 0
    waiting = asyncio.ensure_future(d.next())
    await asyncio.sleep(0)
    d.close()
    with pytest.raises(DowntrackClosed):
        await waiting
    d.offer(video(1, key=True))
    assert d.queued == 0


async def test_unsubscribed_viewer_gets_nothing() -> None:
    fwd = Forwarder("video")
    d = Downtrack("video", 10)
    fwd.subscribe(d)
    fwd.unsubscribe(d)
    fwd.push(video(0, key=True))
    assert d.queued == 0
