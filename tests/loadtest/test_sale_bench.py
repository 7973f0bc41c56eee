"""The flash-sale benchmark driver against a real node: the books balance and JSON is written."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from commerce import keys
from live.app import RunningNode
from live.cli import parser
from loadtest.sale import SaleSpec, check_invariants, start_sale
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
            "--direct-calls", "300", "--json", str(out),
        ]
    )  # fmt: skip
    assert await args.run(args) == 0

    doc = json.loads(out.read_text())
    assert doc["ok"] is True
    [run] = doc["runs"]
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
