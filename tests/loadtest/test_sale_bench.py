"""The flash-sale benchmark driver against a real node: the books balance and JSON is written."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from commerce import keys
from live.app import RunningNode
from live.cli.main import parser
from loadtest.benches.sale import check_invariants
from loadtest.clients.rest import start_sale
from loadtest.fleet.buyer_worker import Buyers
from loadtest.plan.workloads import BuyerPlan, SaleSpec, SaleWorkload
from tests.conftest import SECRET


async def test_tiny_sale_keeps_its_invariants_and_writes_json(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "sale.json"
    args = parser().parse_args(
        [
            "loadtest", "sale", "--target", node.url, "--secret", SECRET,
            "--redis-url", valkey_url, "--attempts", "200", "--quantity", "50",
            "--per-user-limit", "2", "--users", "40", "--duration", "10",
            "--concurrency", "32", "--workers", "2", "--direct", "python",
            "--direct-calls", "300", "--json", str(out), "--via", "http", "socket",
        ]
    )  # fmt: skip
    assert await args.run(args) == 0

    doc = json.loads(out.read_text())
    assert doc["ok"] is True
    run, socket_run = doc["runs"]
    assert (run["via"], run["label"]) == ("http", "target-http")
    assert run["attempts"]["http_answers"] == 200
    assert run["outcomes"]["201 reserved"] == 50
    assert sum(run["outcomes"].values()) == 200
    checks = run["invariants"]["checks"]
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["reserved_events_equal_reservations"]["events"] == 50
    assert run["invariants"]["sale"]["stock_left"] == 0
    assert run["latency_ms"]["count"] == 200
    assert run["direct"]["calls"] == 300 and run["direct"]["calls_per_s"] > 0
    assert run["direct"]["stock_balances"]["ok"]
    assert run["http_over_direct"] > 0
    # The same sale over each buyer's Socket.IO connection, beside it, against the same direct run.
    assert (socket_run["via"], socket_run["label"]) == ("socket", "target-socket")
    assert socket_run["outcomes"]["ack reserved"] == 50
    assert socket_run["attempts"]["http_answers"] == sum(socket_run["outcomes"].values()) == 200
    assert all(c["ok"] for c in socket_run["invariants"]["checks"].values())
    assert socket_run["direct"] == run["direct"] and socket_run["over_direct"] > 0


async def test_a_tampered_sale_breaches_the_invariants(
    node: RunningNode, redis: aioredis.Redis, valkey_url: str
) -> None:
    sale = await start_sale(node.url, SECRET, "tamper", SaleSpec(quantity=10))
    await redis.hincrby(keys.sale(sale["sale_id"], "meta"), "stock", -1)  # a lost unit
    result = await check_invariants(
        valkey_url, node.url, "tamper", sale["sale_id"], quantity=10, per_user_limit=1,
        reserved_201=0, units_by_user={"someone": 2},
    )  # fmt: skip
    assert result["ok"] is False
    checks = result["checks"]
    assert not checks["units_reserved_plus_stock_left_is_quantity"]["ok"]
    assert not checks["no_user_over_limit_http"]["ok"]
    assert checks["reserved_events_equal_reservations"]["ok"]


async def test_answers_lost_in_transit_are_settled_by_a_retry_with_the_same_key(
    node: RunningNode, valkey_url: str
) -> None:
    """A proxy takes every fourth attempt to the node but never passes the answer back: the
    buyers time out, ask again with the same Idempotency-Key and get the reservation replayed,
    so the HTTP answers agree with the store."""
    sale = await start_sale(node.url, SECRET, "lossy", SaleSpec(quantity=40, per_user_limit=1))
    seen: set[str] = set()
    release = asyncio.Event()

    async def forward(request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        headers = {k: request.headers[k] for k in ("Authorization", "Idempotency-Key")}
        async with http.post(
            f"{node.url}{request.path}", data=await request.read(), headers=headers
        ) as upstream:
            status, body = upstream.status, await upstream.read()
        first = key not in seen
        seen.add(key)
        if first and int(key.rsplit("k", 1)[1]) % 4 == 0:
            await release.wait()  # the answer is lost: the client gives up first
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/rooms/{room}/sales/{sale}/reservations", forward)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        work = SaleWorkload(
            users=40, attempts=40, rate=0, duration_s=10, room="lossy",
            sale_id=sale["sale_id"], concurrency=8, timeout_s=0.5,
        )  # fmt: skip
        plan = BuyerPlan(0, 1, (f"http://127.0.0.1:{port}",), SECRET, work, run_tag="lossy")
        buyers = Buyers(plan)
        await buyers.open()
        try:
            await buyers.fire(time.time())
        finally:
            await buyers.close()
            release.set()
            await runner.cleanup()
    assert buyers.outcomes["timeout"] == 10  # attempts 0, 4, ..., 36
    assert buyers.recovered == 10 and buyers.outcomes["retry 201"] == 10
    assert buyers.reserved == 40 and sum(buyers.units.values()) == 40
    result = await check_invariants(
        valkey_url, node.url, "lossy", sale["sale_id"], quantity=40, per_user_limit=1,
        reserved_201=buyers.reserved, units_by_user=dict(buyers.units),
    )  # fmt: skip
    assert result["ok"], result["checks"]
