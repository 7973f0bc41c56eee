"""Bad input and session bookkeeping: clear errors, no peer connection left open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from media import MediaError, MediaServer
from tests.support.peers import Events, Host, Viewer, open_peer_connections


@pytest.fixture(autouse=True)
async def no_leaks(server: MediaServer) -> AsyncIterator[None]:
    yield
    assert server.sessions == {}
    assert open_peer_connections() == 0


async def _offer(kinds: dict[str, str], mime: str | None = None) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind, direction in kinds.items():
            t = pc.addTransceiver(kind, direction=direction)
            if mime is not None:
                caps = aiortc_caps(kind)
                t.setCodecPreferences([c for c in caps if c.mimeType == mime])
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def aiortc_caps(kind: str) -> list[RTCRtpCodecCapability]:
    return list(RTCRtpSender.getCapabilities(kind).codecs)


async def _refused(coro: object, code: str) -> MediaError:
    with pytest.raises(MediaError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code == code, info.value.detail
    assert info.value.detail
    return info.value


async def test_garbage_sdp(server: MediaServer) -> None:
    await _refused(server.publish("r1", "hello"), "invalid_sdp")
    await _refused(server.play("r1", ""), "invalid_sdp")
    await _refused(server.publish("r1", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"), "invalid_sdp")
    assert "r1" not in server.rooms


async def test_offer_without_a_usable_codec(server: MediaServer) -> None:
    pcmu = await _offer({"audio": "sendonly"}, mime="audio/PCMU")
    await _refused(server.publish("r1", pcmu), "unsupported_codec")
    vp9 = (await _offer({"video": "sendonly"})).replace("VP8/90000", "VP9/90000")
    vp9 = vp9.replace("H264/90000", "VP9/90000")
    await _refused(server.publish("r1", vp9), "unsupported_codec")
    pcmu = await _offer({"audio": "recvonly"}, mime="audio/PCMU")
    await _refused(server.play("r1", pcmu), "unsupported_codec")
    assert server.rooms == {}


async def test_offer_in_the_wrong_direction(server: MediaServer) -> None:
    await _refused(server.publish("r1", await _offer({"video": "recvonly"})), "no_media")
    await _refused(server.play("r1", await _offer({"video": "sendonly"})), "no_media")


async def test_second_publisher_is_refused_then_accepted_after_the_first_leaves(
    server: MediaServer, events: Events
) -> None:
    first, second, third = Host(), Host(), Host()
    try:
        async with asyncio.timeout(10):
            sid = await first.publish(server, "r1")
            await _refused(second.publish(server, "r1"), "publisher_exists")
            await server.close(sid)
            await third.publish(server, "r1")
            await events.progress.until(lambda: events.kinds()[-1:] == ["live"])
            assert server.is_live("r1")
    finally:
        for h in (first, second, third):
            await h.close()
        await server.shutdown()


async def test_a_host_session_that_never_went_live_still_reports_closed(
    server: MediaServer, events: Events
) -> None:
    # The node frees the room's source (edge.sources) on `closed`, live or not.
    host = Host()
    try:
        sid = await host.publish(server, "r1")
        publisher = server.publisher("r1")
        assert publisher is not None and publisher.id == sid
        await server.close(sid)
        assert events.kinds() == ["closed"] and events.items[0].session_id == sid
        assert server.publisher("r1") is None
    finally:
        await host.close()


async def test_close_unknown_session(server: MediaServer) -> None:
    await _refused(server.close("nope"), "session_not_found")


async def test_viewer_closing_leaves_room_and_counts(server: MediaServer) -> None:
    viewer = Viewer()
    try:
        sid = await viewer.play(server, "r1")
        assert server.stats().viewers == 1
        await server.close(sid)
        assert server.stats().viewers == 0
        assert server.rooms == {}
        await _refused(server.close(sid), "session_not_found")
    finally:
        await viewer.close()


async def test_shutdown_refuses_new_sessions(server: MediaServer) -> None:
    await server.shutdown()
    await _refused(server.play("r1", await _offer({"video": "recvonly"})), "closed")
