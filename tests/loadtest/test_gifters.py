"""The scenario's gifters: granted credits, gifts over two nodes, the books checked after; and
the chat crowd timing `gift` events for `live loadtest gifts`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from live.app import RunningNode
from live.cli.main import parser
from loadtest.benches.chat import run_chat
from loadtest.benches.gifts import Books, collect_books, judge
from loadtest.clients.rest import HOST_USER
from loadtest.plan.workloads import ChatWorkload
from tests.conftest import SECRET, NodeFactory


async def test_gifters_over_two_nodes_keep_the_books(
    start_node: NodeFactory, valkey_url: str, tmp_path: Path
) -> None:
    """20 gifters granted 30 credits each send 4 stars (10 credits: the host 7, the platform 3)
    over two nodes: 3 each are accepted, the 4th refused; the books hold; then the same books,
    tampered, do not."""
    nodes: list[RunningNode] = [await start_node(), await start_node()]
    path = tmp_path / "gifts.toml"
    path.write_text(
        f"""
duration_s = 3
[target]
urls = {json.dumps([n.url for n in nodes])}
secret = "{SECRET}"
redis_url = "{valkey_url}"
[roles]
gifters = 20
[gifts]
rate = 40
attempts = 80
grant = 30
gift_id = "star"
[generator]
workers = 1
[thresholds]
rules = ["gifts.invariants == 1", "gifts.accepted == 60", "errors.rate == 0"]
"""
    )
    args = parser().parse_args(["loadtest", "run", str(path), "--json", str(tmp_path / "r.json")])
    assert await args.run(args) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    gifts = doc["gifts"]
    assert gifts["gifters"] == {"granted": 20, "joined": 20}
    assert gifts["outcomes"] == {"ok": 60, "refused:insufficient_credits": 20}
    inv = gifts["invariants"]
    assert inv["ok"], inv
    assert inv["books"] == {"gifts": 60, "debits": 600, "host_credits": 420,
                            "platform_share": 180, "events": 80}  # fmt: skip
    balances = inv["checks"]["balances_equal_grants_minus_spent"]
    assert (balances["granted"], balances["spent"], balances["balances"]) == (600, 600, 0)
    assert doc["metrics"]["gifts.ack.p99"] > 0
    # The checker fails on books that do not add up: fed the run's own books, tampered.
    await _tampered_books_fail(valkey_url, gifts["workload"]["room"])


async def _tampered_books_fail(valkey_url: str, room: str) -> None:
    # The run's gifters, found through the host's earnings from the room.
    probe = await collect_books(valkey_url, room, HOST_USER, [])
    assert probe.earnings  # the host's earnings from this room
    users = sorted({e["source"].partition("/")[0] for e in probe.earnings})
    books = await collect_books(valkey_url, room, HOST_USER, users)
    granted = {u: 30 for u in users}
    accepted = {
        f"{u}/{e['entry_id']}": [u, -e["amount"], e["balance"]]
        for u, es in books.ledgers.items() for e in es if e["kind"] == "gift"
    }  # fmt: skip
    assert judge(books, granted, accepted)["ok"]

    def breached(b: Books, g: dict[str, int], a: dict[str, list[object]]) -> set[str]:
        verdict = judge(b, g, a)
        assert not verdict["ok"]
        return {name for name, c in verdict["checks"].items() if not c["ok"]}

    # A duplicated gift.sent event.
    twice = copy.deepcopy(books)
    twice.events.append(next(e for e in twice.events if e[0] == "gift.sent"))
    assert breached(twice, granted, accepted) == {
        "debits_equal_host_credits_plus_platform_share",
        "one_gift_event_per_ledger_entry_and_ack",
        "no_duplicate_events",
    }
    # A lost host earning (the host credited less than the debits).
    short = copy.deepcopy(books)
    short.earnings.pop()
    assert "debits_equal_host_credits_plus_platform_share" in breached(short, granted, accepted)
    # A balance below zero, and not the grant minus the spending.
    negative = copy.deepcopy(books)
    negative.balances[users[0]] = -2
    assert breached(negative, granted, accepted) == {
        "no_balance_below_zero",
        "balances_equal_grants_minus_spent",
    }
    # A gift acknowledged ok that the ledger does not have.
    ghost = {**accepted, f"{users[0]}/1-1": [users[0], 10, 0]}
    assert breached(books, granted, ghost) == {
        "one_gift_event_per_ledger_entry_and_ack",
        "balances_equal_grants_minus_spent",
    }


async def test_chat_crowd_times_every_gift_event(node: RunningNode) -> None:
    """The delivery half of `live loadtest gifts`: 4 of 30 viewers (over two workers) each send
    one gift; every viewer gets each one's `gift` event once, timed from its scheduled send."""
    work = ChatWorkload(
        viewers=30, rate=2.0, duration_s=2.0, room="r1", senders=1, drain_s=5.0, warmup_s=0.0,
        gifters=4, gift_rate=2.0, gift_id="rose", gift_price=1,
    )  # fmt: skip
    run = await run_chat(work, [node.url], SECRET, server_pids={}, workers=2)
    gifts = run["gifts"]
    assert (gifts["granted"], gifts["acked_ok"], gifts["outcomes"]) == (4, 4, {"ok": 4})
    assert gifts["expected"] == gifts["delivered"] == 4 * 30
    assert gifts["missing"] == 0
    assert gifts["delivery_ms"]["count"] == 4 * 30
    assert 0 < gifts["delivery_ms"]["p50"] < 5000
    assert run["deliveries"]["missing"] == 0  # the chat beside them is unharmed
