"""Every `/live` request event fuzzed with JSON-ish payloads over a real Socket.IO client to a real
node: each ack is `{ok: true, ...}` or `{ok: false, error: <a known code>, detail}`, the node logs
no error, and the room stays consistent (likes add up, the sockets stay connected and joined).

Hypothesis runs in a worker thread (its `@given` is synchronous) and hands each request to the
test's event loop, where the node and the clients live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat.schemas import ModAction
from tests.conftest import Client, ClientFactory, NodeFactory
from tests.support.waiting import eventually

# Every code an acknowledgement may carry (docs/protocol.md); `internal` and
# `store_unavailable` are not among them: the store is up, so either would be a bug.
KNOWN_CODES = {
    "invalid_payload",
    "invalid_since",
    "invalid_target",
    "invalid_term",
    "invalid_token",
    "unknown_room",
    "unknown_message",
    "forbidden",
    "not_joined",
    "banned",
    "muted",
    "slow",
    "rate_limited",
    "empty_message",
    "too_long",
    "token_expired",
}
EVENTS = ("join", "leave", "chat", "like", "mod", "mod_state", "refresh_token", "translate")
VIEWER = "fuzz-viewer"
HOST = "fuzz-host"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.binary(max_size=16)
)
json_ish = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
rooms = st.sampled_from(["r1", "r2", "nope", "", "../x", "r1" * 40]) | json_ish
stream_ids = (
    st.sampled_from(["0-0", "1-1", "99999999999999999999-1", "18446744073709551615-0", "h-x"])
    | st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 2**70), st.integers(0, 2**70))
    | json_ish
)
langs = (
    st.sampled_from(["en", "es-MX", "zh-Hans-CN", "pt", "EN", "e", "en_US", "x" * 40, None])
    | st.text(max_size=40)
    | json_ish
)
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "join": {"room": rooms, "since": stream_ids},
    "leave": {"room": rooms},
    "chat": {"room": rooms, "text": st.text(max_size=600) | json_ish, "lang": langs},
    "like": {"room": rooms, "count": st.integers(-5, 200) | json_ish},
    "mod": {
        "room": rooms,
        "action": st.sampled_from(ModAction.__args__) | json_ish,
        # Never the fuzzing viewer: a ban would disconnect it mid-run.
        "user_id": st.sampled_from(["someone", HOST, ""]) | st.text(max_size=130) | json_ish,
        "message_id": stream_ids | st.just("h-" + "0" * 32),
        "seconds": st.integers(-10, 10**7) | json_ish,
        "term": st.sampled_from(["spam", "***", "a*b", ""]) | st.text(max_size=120) | json_ish,
    },
    "mod_state": {"room": rooms},
    "refresh_token": {"token": st.text(max_size=100) | json_ish},
    "translate": {"room": rooms, "lang": langs, "ids": st.lists(stream_ids, max_size=60)},
}

# Known probes, always tried first: each once got a wrong answer.
EXAMPLES: dict[str, list[Any]] = {
    "join": [
        {"room": "r1", "since": "99999999999999999999-99999999999999999999"},  # store_unavailable
        {"room": "r1", "since": "18446744073709551616-0"},
    ],
    "like": [{"room": "r1", "count": 100}, {"room": "r1", "extra": "x" * 1000}],
    "mod": [{"room": "r1", "action": "delete", "message_id": "99999999999999999999-0"}],
}


def payloads(event: str) -> st.SearchStrategy[Any]:
    """Payloads shaped like the event's (known fields, sometimes unknown ones) or anything."""
    fields = FIELDS[event]
    shaped = st.fixed_dictionaries({}, optional={**fields, "extra": json_ish, "room ": rooms})
    return shaped | json_ish | st.tuples(json_ish, json_ish)


def check_ack(ack: Any) -> None:
    assert isinstance(ack, dict), ack
    if ack.get("ok") is True:
        return
    assert ack.get("ok") is False, ack
    assert ack.get("error") in KNOWN_CODES, ack
    assert isinstance(ack.get("detail"), str) and ack["detail"], ack


@pytest.mark.parametrize("event", EVENTS)
async def test_fuzzed_events_get_known_answers_and_leave_the_room_consistent(
    start_node: NodeFactory,
    connect: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    event: str,
) -> None:
    # Limits out of the way: the point is what the handlers do with what passes them.
    node = await start_node(
        chat_socket_rate=1e6, chat_socket_burst=10**6, chat_user_rate=1e6,
        chat_user_burst=10**6, chat_user_likes_per_s=1e6,
    )  # fmt: skip
    for room in ("r1", "r2"):
        await node.node.rooms.create(title="Fuzz room", owner=HOST, room_id=room)
    viewer = await connect(node.url, VIEWER)
    host = await connect(node.url, HOST, role="host", rooms=["r1"])
    await viewer.join("r1")
    await host.join("r1")
    loop = asyncio.get_running_loop()
    liked = 0

    def send(client: Client, payload: Any) -> Any:
        nonlocal liked
        call = client.sio.call(event, payload, namespace="/live", timeout=10)
        ack = asyncio.run_coroutine_threadsafe(call, loop).result(timeout=15)
        if event == "like" and isinstance(ack, dict) and ack.get("ok"):
            liked += ack["count"]
        return ack

    def attempt(payload: Any, as_host: bool) -> None:
        check_ack(send(host if as_host else viewer, payload))

    fuzz: Callable[..., Any] = attempt
    for known in EXAMPLES.get(event, []):
        for as_host in (False, True):
            fuzz = example(payload=known, as_host=as_host)(fuzz)
    fuzz = given(payload=payloads(event), as_host=st.booleans())(fuzz)
    fuzz = settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )(fuzz)

    with caplog.at_level(logging.WARNING):
        await asyncio.to_thread(fuzz)
        # Still connected, still able to use the room.
        await _rejoin(host)
        assert (await host.call("chat", {"room": "r1", "text": "after the fuzz"}))["ok"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert not viewer.disconnected.is_set() and not host.disconnected.is_set()
    # The room's books: every like acknowledged is counted, no more.
    await _eventually_equal(lambda: node.node.chat.likes.total("r1"), liked)
    chat = node.node.chat
    for sid, sock in chat._sockets.items():
        for room in sock.rooms:
            assert sid in chat._members[room]
    for room, sids in chat._members.items():
        assert all(room in chat._sockets[sid].rooms for sid in sids)
    for room, langs in chat._langs.items():
        asking = [s.translate.get(room) for s in chat._sockets.values()]
        assert dict(langs) == {lang: asking.count(lang) for lang in langs}


async def _rejoin(client: Client) -> None:
    ack = await client.call("join", {"room": "r1"})
    assert ack["ok"], ack


async def _eventually_equal(probe: Callable[[], Any], expected: int) -> None:
    await eventually(probe, lambda value: value >= expected, within=5)
    assert await probe() == expected
