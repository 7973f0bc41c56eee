"""Wallets: a credit balance per user and its append-only ledger, exact to the credit.

Everything of one user's wallet lives in the slot `{wallet:USER}` (see docs/architecture.md,
"Wallets"). Each operation is one Lua script there (`lua/wallet_apply.lua`,
`lua/wallet_refund.lua`): replay by idempotency key, never a negative balance, the ledger entry
and the operation's one event on the purchase stream, together. A gift also owes the host's
earnings leg, in the host's slot: the script leaves it in the sender's `pending` hash with a lease;
the request settles it right away (`lua/wallet_earn.lua`, once per gift entry), and a sweeper
(`sweep_once`, every node) settles what a dead request left once its lease has run out. With an
outbox (a Redis Cluster) the event waits in `pending` too and is appended to the purchase stream
by the same settlement: at least once, same `event_id` (consumers dedupe by it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from commerce import keys
from commerce.config import CommerceSettings
from commerce.errors import CommerceError
from commerce.schemas import MAX_BALANCE

LUA = Path(__file__).parent / "lua"
SWEEP_PAGE = 200  # wallets looked at per sweep pass, at most
CLAIM_BATCH = 100  # settlements one claim takes over, at most
RANKED_TTL_S = 86_400  # a gift stays marked counted on the leaderboards (far beyond any lease)
MAX_ENTRIES = 100  # ledger entries GET /api/wallet answers, at most


@dataclass(frozen=True, slots=True)
class Applied:
    entry: dict[str, Any]
    replayed: bool


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an operation left pending: the host's leg of a gift, and/or an outboxed event."""

    user: str
    entry_id: str
    leg: dict[str, Any] | None
    room: str
    show: str
    type: str | None
    data: str | None

    @classmethod
    def from_json(cls, raw: bytes | str) -> Settlement:
        p = json.loads(raw)
        leg = p.get("leg")
        return cls(
            p["user"], p["entry_id"], leg if isinstance(leg, dict) else None,
            str(p.get("room") or ""), str(p.get("show") or ""), p.get("type"), p.get("data"),
        )  # fmt: skip


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wallet_keys(user: str) -> list[str]:
    return [keys.wallet(user, part) for part in ("w", "ledger", "idem", "pending")]


class Wallets:
    def __init__(self, redis: aioredis.Redis, config: CommerceSettings) -> None:
        self._redis = redis
        self._config = config
        self._outbox = "1" if config.outbox else "0"
        self._lease_ms = str(round(config.wallet_settle_lease_s * 1000))
        self._cursor = 0  # the sweeper's place in the index of marked wallets

        def load(name: str) -> AsyncScript:
            return redis.register_script((LUA / f"{name}.lua").read_text())

        self._apply = load("wallet_apply")
        self._refund = load("wallet_refund")
        self._earn = load("wallet_earn")
        self._claim = load("wallet_claim")
        self._unmark = load("wallet_unmark")
        self._rank = load("gift_rank")

    def _events_key(self, user: str) -> str:
        """The purchase stream, where the scripts append events directly; with an outbox they
        leave them in `pending` and get a key of the wallet's own slot, unused."""
        return keys.wallet(user, "pending") if self._config.outbox else self._config.purchase_stream

    async def _mark(self, user: str) -> None:
        """Before an operation that may leave a settlement: the sweeper then finds the wallet.
        Each mark changes the value, so a sweeper never unmarks a wallet marked after it looked."""
        await self._redis.hincrby(keys.WALLETS_PENDING, user, 1)

    def _answer(self, reply: list[Any]) -> Applied:
        outcome = _s(reply[0])
        if outcome in ("ok", "replay"):
            return Applied(json.loads(reply[1]), outcome == "replay")
        figure = _s(reply[1]) if len(reply) > 1 else ""
        if outcome == "insufficient_credits":
            raise CommerceError(
                "insufficient_credits", f"the balance is {figure} credits", balance=int(figure)
            )
        if outcome == "rate_limited":
            wait_ms = max(int(figure), 1)
            raise CommerceError(
                "rate_limited", "too many gifts; slow down", retry_after=-(-wait_ms // 1000)
            )
        if outcome == "balance_limit":
            raise CommerceError(
                "balance_limit", f"a wallet holds at most {MAX_BALANCE} credits",
                balance=int(figure),
            )  # fmt: skip
        if outcome == "already_refunded":
            raise CommerceError(
                "already_refunded", "the entry is refunded already", refund=json.loads(figure)
            )
        if outcome == "unknown_entry":
            raise CommerceError("unknown_entry", "no such entry in this wallet")
        if outcome == "not_refundable":
            raise CommerceError("not_refundable", f"a {figure} entry is not refunded")
        if outcome == "not_owner":
            raise CommerceError("not_owner", "the entry is another shop's")
        raise CommerceError("internal", f"wallet script answered {outcome!r}")

    async def _op(
        self, mode: str, user: str, key: str, amount: int, fields: dict[str, Any], host: str = "",
        settle: bool = True,
    ) -> Applied:  # fmt: skip
        cfg = self._config
        if mode == "gift" or cfg.outbox:
            await self._mark(user)
        reply = await self._apply(
            keys=[*_wallet_keys(user), self._events_key(user), keys.wallet(user, "rl")],
            args=[
                mode, user, key, amount, json.dumps(fields, separators=(",", ":")), self._outbox,
                host, cfg.gifts_platform_share_bps, cfg.gifts_user_rate,
                round(cfg.gifts_rate_window_s * 1000), MAX_BALANCE, self._lease_ms,
            ],
        )  # fmt: skip
        applied = self._answer(reply)
        if not applied.replayed and settle:
            await self._settle_own(applied.entry, mode)
        return applied

    async def credit(
        self, user: str, *, key: str, amount: int, reason: str, reference: str, by: str,
        seller: str,
    ) -> Applied:  # fmt: skip
        """A top-up of `amount` credits by the order system (`seller`: its shop, or ''), once
        per `key`."""
        fields = {"reason": reason, "reference": reference, "by": by, "seller": seller}
        return await self._op("credit", user, key, amount, fields)

    async def gift(
        self, user: str, *, key: str, host: str, room: str, seller: str, gift: dict[str, Any],
        count: int, show: str = "", settle: bool = True,
    ) -> Applied:  # fmt: skip
        """`count` gifts `gift` from `user` to the room's `host`, once per `key`. `settle`
        False leaves the host's leg (and an outboxed event) to the sweeper, as a request that
        died right after its debit would."""
        amount = int(gift["price"]) * count
        fields = {
            "room_id": room, "show_id": show, "seller": seller, "gift_id": gift["gift_id"],
            "gift_name": gift["name"], "tier": gift["tier"], "count": count,
            "price": gift["price"],
        }  # fmt: skip
        return await self._op("gift", user, key, amount, fields, host, settle)

    async def refund(
        self, user: str, *, key: str, entry_id: str, reason: str, reference: str, by: str,
        shop: str,
    ) -> Applied:  # fmt: skip
        """Reverse the entry `entry_id` of `user`'s ledger by a new entry, once per entry; a
        `shop` refunds only its own entries ('' refunds any)."""
        await self._mark(user)
        fields = {"reason": reason, "reference": reference, "by": by}
        reply = await self._refund(
            keys=[*_wallet_keys(user), self._events_key(user)],
            args=[user, key, entry_id, json.dumps(fields, separators=(",", ":")), self._outbox,
                  self._lease_ms, shop],
        )  # fmt: skip
        applied = self._answer(reply)
        if not applied.replayed:
            await self._settle_own(applied.entry, "refund")
        return applied

    async def _settle_own(self, entry: dict[str, Any], mode: str) -> None:
        """Settle what the request's own operation left pending (the sweeper's job if this
        fails: its lease runs out)."""
        leg = None
        if entry.get("host_id"):
            leg = {"host": entry["host_id"], "host_amount": entry["host_amount"],
                   "platform_amount": entry["platform_amount"]}  # fmt: skip
        if leg is None and not self._config.outbox:
            return
        kind = {"credit": "wallet.credited", "gift": "gift.sent", "refund": "wallet.refunded"}
        settlement = Settlement(
            entry["user_id"], entry["entry_id"], leg, str(entry.get("room_id") or ""),
            str(entry.get("show_id") or ""),
            kind[mode] if self._config.outbox else None,
            json.dumps(entry, separators=(",", ":")) if self._config.outbox else None,
        )  # fmt: skip
        await self.settle(settlement)

    async def settle(self, s: Settlement) -> None:
        """The host's leg (once per entry, by the earn script's key), the leaderboard, the
        outboxed event (at least once), then the pending record goes."""
        if s.leg is not None:
            host = s.leg["host"]
            await self._earn(
                keys=[keys.wallet(host, "w"), keys.wallet(host, "ledger"),
                      keys.wallet(host, "idem")],
                args=[f"{s.user}/{s.entry_id}", s.leg["host_amount"], s.leg["platform_amount"],
                      s.room],
            )  # fmt: skip
            if s.room:
                # Credits given, net of refunds: a refund's leg is negative.
                given = int(s.leg["host_amount"]) + int(s.leg["platform_amount"])
                board = keys.gifters(s.room, "all")
                await self._rank(
                    keys=[keys.ranked(s.room, s.user, s.entry_id), board,
                          keys.gifters(s.room, "show:" + s.show) if s.show else board],
                    args=[given, s.user, RANKED_TTL_S, "1" if s.show else "0"],
                )  # fmt: skip
        if s.type and s.data:
            await self._redis.xadd(self._config.purchase_stream, {"type": s.type, "data": s.data})
        await self._redis.hdel(keys.wallet(s.user, "pending"), s.entry_id)

    async def sweep_once(self) -> int:
        """Settle what requests left pending past its lease; returns how many were settled."""
        # One page of the index per pass (HSCAN, resumed next pass), however many are marked.
        self._cursor, marked = await self._redis.hscan(
            keys.WALLETS_PENDING, self._cursor, count=SWEEP_PAGE
        )
        settled = 0
        for raw_user, mark in marked.items():
            user = _s(raw_user)
            claimed = await self._claim(
                keys=[keys.wallet(user, "pending")], args=[self._lease_ms, CLAIM_BATCH]
            )
            left = int(claimed[0])
            for raw in claimed[1:]:
                await self.settle(Settlement.from_json(raw))
                settled += 1
            if left == 0:
                await self._unmark(keys=[keys.WALLETS_PENDING], args=[user, _s(mark)])
        return settled

    async def wallet(self, user: str, limit: int = 20) -> dict[str, Any]:
        """The balance, the host earnings and the last `limit` ledger entries, newest first."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.wallet(user, "w"), ["balance", "earned", "platform"])
            pipe.xrevrange(keys.wallet(user, "ledger"), count=min(limit, MAX_ENTRIES))
            (balance, earned, platform), rows = await pipe.execute()
        entries = []
        for entry_id, fields in rows:
            entry = json.loads(fields[b"e"])
            entry["entry_id"] = _s(entry_id)
            entries.append(entry)
        return {
            "user_id": user,
            "balance": int(balance or 0),
            "earned": int(earned or 0),
            "platform_share": int(platform or 0),
            "entries": entries,
        }
