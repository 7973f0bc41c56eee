"""Kernel HTTP surface: health, metrics, rooms, and one JSON error shape for every failure."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from core.auth import TokenAuthority
from tests.conftest import NodeFactory, RunningNode


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(tokens: TokenAuthority, role: str, rooms: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + tokens.issue(user=f"{role}-1", role=role, rooms=rooms)}


async def test_healthz_and_metrics(node: RunningNode, http: aiohttp.ClientSession) -> None:
    async with http.get(node.url + "/healthz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body == {
        "status": "ok",
        "node": node.node.settings.server.node_id,
        "role": "all",
        "region": "local",
    }
    async with http.get(node.url + "/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'live_http_requests_total{route="/healthz",status="200"} 1.0' in text
    cpu = next(line for line in text.splitlines() if line.startswith("process_cpu_seconds_total"))
    assert float(cpu.split()[1]) > 0


async def test_create_and_read_room(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    a = await start_node()
    b = await start_node()
    async with http.post(
        a.url + "/api/rooms",
        json={"room_id": "show-1", "title": " Friday drop "},
        headers=bearer(tokens, "host"),
    ) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert created["room_id"] == "show-1" and created["title"] == "Friday drop"
    async with http.get(b.url + "/api/rooms/show-1") as resp:
        state = await resp.json()
    assert state["title"] == "Friday drop" and state["live"] is False and state["viewers"] == 0
    async with http.post(
        a.url + "/api/rooms",
        json={"room_id": "show-1", "title": "again"},
        headers=bearer(tokens, "host"),
    ) as resp:
        assert (resp.status, (await resp.json())["error"]) == (409, "room_exists")
    async with http.post(
        a.url + "/api/rooms", json={"title": "no id"}, headers=bearer(tokens, "host")
    ) as resp:
        generated = await resp.json()
    async with http.get(b.url + "/api/rooms/" + generated["room_id"]) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("role", "body", "status", "error"),
    [
        (None, {"title": "x"}, 401, "missing_token"),
        ("viewer", {"title": "x"}, 403, "forbidden"),
        ("moderator", {"title": "x"}, 403, "forbidden"),
        ("host", {}, 400, "invalid_request"),
        ("host", {"title": 5}, 400, "invalid_request"),
        ("host", {"title": "   "}, 400, "invalid_request"),
        ("host", {"title": "x", "room_id": "bad id!"}, 400, "invalid_request"),
        ("host", {"title": "x", "surprise": 1}, 400, "invalid_request"),
        ("host", [1, 2], 400, "invalid_json"),
        ("host", "not json", 400, "invalid_json"),
    ],
)
async def test_create_room_refusals(
    node: RunningNode,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
    role: str | None,
    body: object,
    status: int,
    error: str,
) -> None:
    headers = bearer(tokens, role) if role else {}
    data = body if isinstance(body, str) else None
    json_body = None if isinstance(body, str) else body
    async with http.post(
        node.url + "/api/rooms", json=json_body, data=data, headers=headers
    ) as resp:
        assert resp.status == status
        payload = await resp.json()
    assert payload["error"] == error and payload["detail"]


async def test_host_of_one_room_cannot_create_another(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    headers = bearer(tokens, "host", rooms=["mine"])
    async with http.post(
        node.url + "/api/rooms", json={"room_id": "theirs", "title": "x"}, headers=headers
    ) as resp:
        assert resp.status == 403


async def test_unknown_paths_and_methods_answer_json(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    async with http.get(node.url + "/api/rooms/nope") as resp:
        assert (resp.status, (await resp.json())["error"]) == (404, "unknown_room")
    async with http.get(node.url + "/no/such/page") as resp:
        assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    async with http.delete(node.url + "/api/rooms") as resp:
        assert (resp.status, (await resp.json())["error"]) == (405, "method_not_allowed")
    async with http.post(
        node.url + "/api/rooms",
        data=b"x" * 300_000,
        headers={"Content-Type": "application/json", **bearer(tokens, "host")},
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "payload_too_large"


async def test_pages_and_vendor_client_are_served(
    node: RunningNode, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/rooms/r1", "/rooms/r1/moderate", "/static/viewer.js"):
        async with http.get(node.url + path) as resp:
            assert resp.status == 200, path
    async with http.get(node.url + "/vendor/socket.io.min.js") as resp:
        assert resp.status == 200
        assert "Socket.IO" in (await resp.text())[:200]


BODIES = [
    b'{"quantity": 1}', b'{"quantity": 2.0}', b'{"quantity": "2"}', b'{"quantity": true}',
    b'{"quantity": 1e3}', b'{"quantity": 10000000000000000000000}', b'{"quantity": NaN}',
    b'{"quantity": 1, "quantity": 3}', b'{"quantity": 1, "x": 1}', b"{}", b"[]", b"null",
    b'{"title": " x "}', b'{"title": "x", "room_id": null}', b'{"title": "\\u00e9"}',
    b'{"product_id": "mug", "quantity": 1, "price_minor": 1, "duration_s": 60}',
    b'{"product_id": "mug", "quantity": 1, "price_minor": 1, "duration_s": Infinity}',
    b'{"product_id": "m", "title": "t", "price_minor": 0, "currency": "EUR", "image_url": null}',
]  # fmt: skip


@pytest.mark.parametrize("body", BODIES)
def test_json_in_one_pass_accepts_only_what_the_two_step_path_accepts(body: bytes) -> None:
    """`read_json` trusts `model_validate_json` when it accepts; it must agree with the old path."""
    import json

    from pydantic import ValidationError

    from commerce.schemas import PinIn, ProductIn, ReserveIn, SaleIn
    from live.http.rooms import CreateRoom

    for model in (ReserveIn, SaleIn, ProductIn, PinIn, CreateRoom):
        try:
            fast = model.model_validate_json(body)
        except ValidationError:
            continue
        slow = model.model_validate(json.loads(body))
        assert fast == slow, (model, body)


async def test_a_body_in_another_charset_is_read_in_it(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    headers = {**bearer(tokens, "host"), "Content-Type": "application/json; charset=latin-1"}
    data = '{"title": "caf\u00e9"}'.encode("latin-1")
    async with http.post(node.url + "/api/rooms", data=data, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["title"] == "caf\u00e9"


async def test_a_crowd_arriving_at_once_is_held_in_the_listen_backlog(
    start_node: NodeFactory,
) -> None:
    # While the node's loop is busy (here: this coroutine does not yield), the kernel completes
    # handshakes into the listen backlog. With aiohttp's 128 the 129th-odd connect would get no
    # answer (its SYN dropped) and time out; the node's backlog holds the whole crowd.
    running = await start_node(listen_backlog=600)
    port = int(running.url.rsplit(":", 1)[1])
    crowd: list[socket.socket] = []
    try:
        for _ in range(500):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            crowd.append(sock)
            sock.settimeout(2.0)
            sock.connect(("127.0.0.1", port))  # raises TimeoutError once the backlog is full
    finally:
        for sock in crowd:
            sock.close()
    assert len(crowd) == 500
