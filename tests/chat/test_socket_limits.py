"""Connection and request limits of `/live`: sockets that never join, oversized frames, request
and like rates per socket and per user, strict payloads, tokens that run out on live sockets."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from core.auth import TokenAuthority
from loadtest.report.scrape import metric
from tests.conftest import Client, ClientFactory, NodeFactory, RunningNode
from tests.support.waiting import eventually


async def _node(start_node: NodeFactory, **overrides: Any) -> RunningNode:
    running = await start_node(**overrides)
    await running.node.rooms.create(title="Test room", owner="host", room_id="r1")
    return running


async def _metric(url: str, sample: str) -> float:
    async with aiohttp.ClientSession() as http:
        return await metric(http, url, sample) or 0.0


def _limit(limit: str, decision: str) -> str:
    return f'live_chat_limit_decisions_total{{decision="{decision}",limit="{limit}"}}'


async def test_engineio_connections_that_never_join_live_are_closed(
    start_node: NodeFactory, connect: ClientFactory
) -> None:
    node = await _node(start_node, chat_join_timeout_s=0.5)
    joined = await connect(node.url, "alice")
    async with aiohttp.ClientSession() as http:
        sockets = [
            await http.ws_connect(f"{node.url}/socket.io/?EIO=4&transport=websocket")
            for _ in range(20)
        ]
        for ws in sockets:
            assert (await ws.receive_str(timeout=2)).startswith("0{")  # engine.io open
        for ws in sockets:  # never a "40/live": closed by the server at the deadline
            msg = await ws.receive(timeout=3)
            if msg.type == aiohttp.WSMsgType.TEXT:
                assert msg.data == "1"  # engine.io's close packet, then the close frame
                msg = await ws.receive(timeout=1)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    assert len(node.node.chat.sio.eio.sockets) == 1
    assert await _metric(node.url, _limit("join_timeout", "closed")) == 20
    # The socket that connected to /live in time stays.
    assert not joined.disconnected.is_set()
    assert (await joined.call("join", {"room": "r1"}))["ok"]


async def test_a_frame_over_the_cap_closes_the_connection(
    node: RunningNode, connect: ClientFactory
) -> None:
    viewer = await connect(node.url, "alice")
    await viewer.join("r1")
    await viewer.sio.emit("like", {"room": "r1", "extra": "x" * 912_000}, namespace="/live")
    await eventually(viewer.disconnected.is_set, within=3)
    sample = _limit("frame_size", "closed")
    await eventually(lambda: _metric(node.url, sample), lambda n: n == 1, within=3)
    watcher = await connect(node.url, "bob")
    assert (await watcher.join("r1"))["state"]["likes"] == 0


async def test_requests_are_rate_limited_per_socket(
    node: RunningNode, connect: ClientFactory
) -> None:
    viewer = await connect(node.url, "alice")
    acks = [await viewer.call("join", {"room": "r1"}) for _ in range(60)]
    refused = [a for a in acks if not a["ok"]]
    # The burst (20) and what refills meanwhile (10/s) pass; the rest is refused.
    assert 20 <= sum(a["ok"] for a in acks) < 40
    assert {a["error"] for a in refused} == {"rate_limited"}
    assert all(a["retry_after"] >= 1 for a in refused)
    assert await _metric(node.url, _limit("socket_rate", "refused")) == len(refused)
    # Another user's socket is not affected.
    other = await connect(node.url, "bob")
    assert (await other.call("join", {"room": "r1"}))["ok"]


async def test_requests_are_rate_limited_per_user_across_sockets(
    start_node: NodeFactory, connect: ClientFactory
) -> None:
    node = await _node(start_node, chat_user_burst=10, chat_user_rate=0.5, chat_socket_burst=100)
    first = await connect(node.url, "alice")
    second = await connect(node.url, "alice")
    acks = [await c.call("join", {"room": "r1"}) for _ in range(10) for c in (first, second)]
    assert sum(a["ok"] for a in acks) == 10
    assert {a["error"] for a in acks if not a["ok"]} == {"rate_limited"}
    assert await _metric(node.url, _limit("user_rate", "refused")) == 10
    other = await connect(node.url, "bob")
    assert (await other.call("join", {"room": "r1"}))["ok"]


async def test_likes_carry_a_small_count_and_a_users_likes_are_capped(
    start_node: NodeFactory, connect: ClientFactory
) -> None:
    node = await _node(
        start_node, chat_user_likes_per_s=15, chat_socket_burst=1000, chat_user_burst=1000
    )
    liker = await connect(node.url, "alice")
    await liker.join("r1")
    too_many = await liker.call("like", {"room": "r1", "count": 100})
    assert (too_many["ok"], too_many["error"]) == (False, "invalid_payload")
    assert "count" in too_many["detail"]
    first = await liker.call("like", {"room": "r1", "count": 10})
    clamped = await liker.call("like", {"room": "r1", "count": 10})
    started = time.monotonic()
    refused = [await liker.call("like", {"room": "r1", "count": 10}) for _ in range(300)]
    elapsed = time.monotonic() - started
    assert first == {"ok": True, "count": 10}
    assert clamped["ok"] and 5 <= clamped["count"] < 10
    # Only what refills (15 a second) while 300 are sent gets through.
    assert sum(a.get("count", 0) for a in refused) <= 15 * elapsed + 1
    assert refused[0]["error"] == "rate_limited" and refused[0]["retry_after"] >= 1
    counted = 10 + clamped["count"] + sum(a.get("count", 0) for a in refused)
    await eventually(lambda: node.node.chat.likes.total("r1"), lambda t: t == counted)
    assert counted <= 15 * (1 + elapsed) + 1  # not 300 x 100
    assert await _metric(node.url, _limit("user_likes", "clamped")) >= 1
    assert await _metric(node.url, _limit("user_likes", "refused")) >= 300 - 15 * elapsed - 1


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("join", {"room": "r1", "extra": "x"}, "extra"),
        ("like", {"room": "r1", "count": 1, "big": "y" * 1000}, "big"),
        ("chat", {"room": "r1", "text": "hi", "user": {"role": "host"}}, "user"),
        ("leave", {"room": "r1", "why": 1}, "why"),
        ("mod_state", {"room": "r1", "all": True}, "all"),
    ],
)
async def test_unknown_fields_are_refused_by_name(
    node: RunningNode, connect: ClientFactory, event: str, payload: dict[str, Any], field: str
) -> None:
    client = await connect(node.url, "host-1", role="host")
    await client.join("r1")
    ack = await client.call(event, payload)
    assert (ack["ok"], ack["error"]) == (False, "invalid_payload")
    assert ack["detail"].startswith(f"{field}: ")


async def _connect_with(url: str, token: str) -> Client:
    return await Client(url, token).connect()


async def test_a_live_socket_is_told_and_disconnected_when_its_token_expires(
    node: RunningNode, tokens: TokenAuthority
) -> None:
    token = tokens.issue(user="alice", role="viewer", ttl_s=2)
    exp = int(time.time()) + 2
    client = await _connect_with(node.url, token)
    await client.join("r1")
    expired = await client.wait_for("token_expired", within=4)
    assert "expired" in expired["detail"]
    await eventually(client.disconnected.is_set, within=2)
    assert time.time() >= exp - 1
    assert node.node.chat._sockets == {}
    sample = _limit("token_expiry", "disconnected")
    assert await _metric(node.url, sample) == 1
    await client.close()


async def test_refresh_token_keeps_the_socket_past_the_first_tokens_expiry(
    node: RunningNode, tokens: TokenAuthority
) -> None:
    short = tokens.issue(user="alice", role="viewer", ttl_s=2)
    old_exp = int(time.time()) + 2
    client = await _connect_with(node.url, short)
    await client.join("r1")
    other = tokens.issue(user="mallory", role="viewer")
    refused = await client.call("refresh_token", {"token": other})
    assert (refused["ok"], refused["error"]) == (False, "invalid_token")
    bad = await client.call("refresh_token", {"token": "nope"})
    assert (bad["ok"], bad["error"]) == (False, "invalid_token")
    fresh = tokens.issue(user="alice", role="viewer", ttl_s=3600)
    ack = await client.call("refresh_token", {"token": fresh})
    assert ack["ok"] and ack["exp"] > time.time() + 3000
    await eventually(lambda: time.time() > old_exp + 0.5, within=4)
    assert (await client.call("chat", {"room": "r1", "text": "still here"}))["ok"]
    assert (await client.call("join", {"room": "r1"}))["ok"]
    assert client.events["token_expired"] == []
    assert not client.disconnected.is_set()
    await client.close()
