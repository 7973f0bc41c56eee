"""Bad input gets a clear error; the connection, the room and the server log stay healthy."""

from __future__ import annotations

import logging
import time

import jwt
import pytest
import socketio

from tests.conftest import SECRET, Client, ClientFactory, RunningNode

BAD_PAYLOADS = [
    ("join", None, "invalid_payload"),
    ("join", "r1", "invalid_payload"),
    ("join", {}, "invalid_payload"),
    ("join", {"room": 5}, "invalid_payload"),
    ("join", {"room": "../etc"}, "invalid_payload"),
    ("join", {"room": "nope"}, "unknown_room"),
    ("join", {"room": "r1", "since": "yesterday"}, "invalid_since"),
    ("join", {"room": "r1", "since": "99999999999999999999-99999999999999999999"}, "invalid_since"),
    ("join", {"room": "r1", "since": "18446744073709551616-0"}, "invalid_since"),
    ("join", {"room": "r1", "since": 5}, "invalid_payload"),
    ("chat", {"room": "r1"}, "invalid_payload"),
    ("chat", {"room": "r1", "text": 42}, "invalid_payload"),
    ("chat", {"room": "r1", "text": ["a"]}, "invalid_payload"),
    ("chat", {"room": "r1", "text": "   \x00\x07 "}, "empty_message"),
    ("chat", {"room": "r1", "text": "x" * 501}, "too_long"),
    ("chat", {"room": "r1", "text": "x" * 60_000}, "too_long"),  # under the 64 KiB frame cap
    ("chat", {"room": "r2", "text": "not joined"}, "not_joined"),
    ("like", {"room": "r1", "count": -3}, "invalid_payload"),
    ("like", {"room": "r1", "count": "10"}, "invalid_payload"),
    ("like", {"room": "r1", "count": 10**9}, "invalid_payload"),
    ("mod", {"room": "r1", "action": "ban", "user_id": "x"}, "forbidden"),
    ("mod", {"room": "r1", "action": "explode"}, "invalid_payload"),
    ("mod_state", {"room": "r1"}, "forbidden"),
]


@pytest.mark.parametrize(("event", "payload", "error"), BAD_PAYLOADS)
async def test_bad_payloads_get_a_clear_error_and_the_connection_survives(
    node: RunningNode,
    connect: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    event: str,
    payload: object,
    error: str,
) -> None:
    viewer = await connect(node.url, "alice")
    await viewer.join("r1")
    with caplog.at_level(logging.WARNING):
        ack = await viewer.call(event, payload)
    assert ack["ok"] is False
    assert ack["error"] == error
    assert isinstance(ack["detail"], str) and ack["detail"]
    # Still connected, still in the room, and the server logged no error.
    assert (await viewer.call("chat", {"room": "r1", "text": "still here"}))["ok"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_moderator_bad_payloads(node: RunningNode, connect: ClientFactory) -> None:
    moderator = await connect(node.url, "mia", role="moderator", rooms=["r1"])
    await moderator.join("r1")
    cases = [
        ({"action": "mute"}, "invalid_payload"),
        ({"action": "mute", "user_id": "mia"}, "invalid_target"),
        ({"action": "delete", "message_id": "1-1"}, "unknown_message"),
        ({"action": "delete", "message_id": "<script>"}, "invalid_payload"),
        ({"action": "delete", "message_id": "99999999999999999999-0"}, "invalid_payload"),
        ({"action": "pin_message", "message_id": "99-0"}, "unknown_message"),
        ({"action": "approve", "message_id": "h-" + "0" * 32}, "unknown_message"),
        ({"action": "slow"}, "invalid_payload"),
        ({"action": "slow", "seconds": 99999}, "invalid_payload"),
        ({"action": "block_term", "term": "***"}, "invalid_term"),
        ({"action": "mute", "user_id": "a", "seconds": -1}, "invalid_payload"),
    ]
    for fields, error in cases:
        ack = await moderator.call("mod", {"room": "r1", **fields})
        assert (ack["ok"], ack["error"]) == (False, error), fields
    assert (await moderator.call("mod_state", {"room": "r1"}))["audit"] == []


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (None, "missing_token"),
        ("not-a-jwt", "invalid_token"),
        (jwt.encode({"sub": "a", "role": "viewer", "exp": 1}, SECRET), "token_expired"),
        (
            jwt.encode({"sub": "a", "role": "viewer", "exp": time.time() + 3600}, "wrong" * 8),
            "invalid_token",
        ),
        (
            jwt.encode({"sub": "a", "role": "king", "exp": time.time() + 3600}, SECRET),
            "invalid_token",
        ),
        (jwt.encode({"role": "viewer", "exp": time.time() + 3600}, SECRET), "invalid_token"),
    ],
)
async def test_connect_refused_with_a_reason(
    node: RunningNode, token: str | None, error: str
) -> None:
    client = Client(node.url, token or "")
    client.token = token  # type: ignore[assignment]
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    refusal = await client.wait_for("connect_error")
    assert refusal["data"]["error"] == error
    assert refusal["message"] == refusal["data"]["detail"]
    await client.close()


async def test_join_since_the_last_possible_id_is_an_empty_history(
    node: RunningNode, connect: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The largest id is a valid one, but Redis refuses it as an exclusive range start: the node
    # answered "store_unavailable" (retry) and logged a store error for every such join.
    client = await connect(node.url, "alice")
    last = f"{(1 << 64) - 1}-{(1 << 64) - 1}"
    with caplog.at_level(logging.WARNING):
        ack = await client.join("r1", since=last)
    assert ack["ok"] is True and ack["history"] == [], ack
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
