"""What commerce holds about a user, exported and erased (`core.privacy.PersonalData`):
reservations and the sale records around them, purchase and gift events, the wallet and its
ledger, the hosts' earning entries naming the user as sender, and gift leaderboards.

Orders and the ledger are records the shop must keep (accounting), so erasure keeps them with
the user's id and names replaced by the pseudonym; what only served the user (idempotency keys,
rate windows) goes. Sales are found from every room's sale list (`live:{room:ID}:sales`), events
by reading the purchase and dead-letter streams (and, with an outbox, each sale's): the cost of
an export is those streams' retained length (docs/privacy.md).
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from commerce import keys
from commerce.config import CommerceSettings
from core.auth import user_seller
from core.privacy import StreamRewriter, names_user, pseudonymise, stream_entries
from core.rooms import ROOMS_INDEX
from core.store import room_key

WALLET_MOVED = ("w", "ledger")  # kept under the pseudonym; idem and rl go; pending stays


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event_id(event_id: str, user: str, pseudo: str) -> str:
    """Wallet events are `wallet.USER.ENTRY`."""
    prefix = f"wallet.{user}."
    return (
        f"wallet.{pseudo}." + event_id[len(prefix) :] if event_id.startswith(prefix) else event_id
    )


def _entry(fields: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        name, text = k.decode(), v.decode()
        if name in ("data", "e"):
            try:
                out[name] = json.loads(text)
                continue
            except ValueError:
                pass
        out[name] = text
    return out


def _mentions(entry: dict[str, Any], user: str) -> bool:
    return names_user(entry, user) or str(entry.get("event_id", "")).startswith(f"wallet.{user}.")


def _rewritten(entry: dict[str, Any], user: str, pseudo: str) -> list[str]:
    flat: list[str] = []
    for name, value in pseudonymise(entry, user, pseudo).items():
        if isinstance(value, dict):
            if "event_id" in value:
                value = {**value, "event_id": _event_id(str(value["event_id"]), user, pseudo)}
            value = json.dumps(value, separators=(",", ":"))
        elif name == "event_id":
            value = _event_id(str(value), user, pseudo)
        flat += [name, str(value)]
    return flat


class CommercePersonalData:
    name = "commerce"

    def __init__(self, redis: aioredis.Redis, config: CommerceSettings) -> None:
        self._redis = redis
        self._config = config
        self._rewriter = StreamRewriter(redis)

    async def _rooms(self) -> list[str]:
        return sorted(_s(r) for r in await self._redis.smembers(ROOMS_INDEX))

    async def _sales(self) -> list[str]:
        sales: list[str] = []
        for room in await self._rooms():
            sales += [_s(s) for s in await self._redis.zrange(keys.room_sales(room), 0, -1)]
        return sales

    async def _streams(self, sales: list[str]) -> list[str]:
        streams = [self._config.purchase_stream, self._config.dead_letter_stream]
        if self._config.outbox:
            streams += [keys.sale(s, "outbox") for s in sales]
            streams += [room_key(r, "coupon_outbox") for r in await self._rooms()]
        return streams

    async def _coupons(self) -> list[tuple[str, str]]:
        """(room, coupon id) of every room's coupons."""
        found = []
        for room in await self._rooms():
            found += [
                (room, _s(c)) for c in await self._redis.zrange(keys.room_coupons(room), 0, -1)
            ]
        return found

    async def _coupon_export(self, user: str) -> dict[str, list[Any]]:
        claims: list[Any] = []
        created: list[Any] = []
        for room, coupon in await self._coupons():
            claims += (await self._claims(room, coupon, user)).values()
            creator = await self._redis.hget(keys.coupon(room, coupon, "meta"), "created_by")
            if creator == user.encode():
                created.append({"room_id": room, "coupon_id": coupon})
        return {"coupon_claims": claims, "coupons_created": created}

    async def _claims(self, room: str, coupon: str, user: str) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(keys.coupon(room, coupon, "claims"))
        claims = {_s(k): json.loads(v) for k, v in raw.items()}
        return {k: c for k, c in claims.items() if c.get("user_id") == user}

    async def _stream_hits(self, key: str, user: str) -> list[tuple[str, dict[str, Any]]]:
        hits = []
        async for entry_id, fields in stream_entries(self._redis, key, user):
            entry = _entry(fields)
            if _mentions(entry, user):
                hits.append((entry_id, entry))
        return hits

    async def _reservations(self, sale: str, user: str) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(keys.sale(sale, "res"))
        found = {}
        for rid, value in raw.items():
            r = json.loads(value)
            if r.get("user_id") == user:
                found[_s(rid)] = r
        return found

    async def _scan(self, pattern: str) -> list[tuple[str, str]]:
        """(room, rest) of every room key matching `live:{room:*}:PATTERN`: one SCAN of the
        keyspace (on a cluster, of every master), not one per room."""
        found = []
        async for key in self._redis.scan_iter(match=room_key("*", pattern), count=1000):
            room, _, rest = _s(key).removeprefix("live:{room:").partition("}:")
            found.append((room, rest))
        return found

    async def _gifters(self, user: str) -> dict[str, dict[str, int]]:
        boards: dict[str, dict[str, int]] = {}
        for room, rest in await self._scan("gifters:*"):
            score = await self._redis.zscore(room_key(room, rest), user)
            if score is not None:
                boards.setdefault(room, {})[rest.removeprefix("gifters:")] = int(score)
        return boards

    async def _ledger(self, user: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (i, json.loads(f[b"e"]))
            async for i, f in stream_entries(self._redis, keys.wallet(user, "ledger"))
        ]

    async def _earnings_named(self, user: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Entries of the hosts the user gifted to whose `source` (`SENDER/ENTRY`) is the user."""
        hosts = {str(e["host_id"]) for _, e in await self._ledger(user) if e.get("host_id")} - {
            user
        }
        named = {}
        for host in sorted(hosts):
            hits = [
                (i, e) for i, e in await self._ledger(host)
                if str(e.get("source", "")).startswith(user + "/")
            ]  # fmt: skip
            if hits:
                named[host] = hits
        return named

    async def _gifts_to(self, user: str) -> dict[str, list[str]]:
        """The senders' gift entries whose host leg the user (a host) earned: sender -> ids."""
        senders: dict[str, list[str]] = {}
        for _, e in await self._ledger(user):
            sender, _, entry_id = str(e.get("source", "")).rpartition("/")
            if e.get("kind") == "earning" and sender and sender != user:
                senders.setdefault(sender, []).append(entry_id)
        return senders

    async def _products(self, user: str) -> list[str]:
        """Products of the seller a user is without a shop (`user:ID`)."""
        found = []
        async for key in self._redis.scan_iter(match=keys.product("*"), count=500):
            if await self._redis.hget(key, "seller") == user_seller(user).encode():
                found.append(_s(key))
        return sorted(found)

    async def export(self, user: str) -> dict[str, Any]:
        sales = await self._sales()
        reservations: list[dict[str, Any]] = []
        units: dict[str, int] = {}
        for sale in sales:
            reservations += (await self._reservations(sale, user)).values()
            held = await self._redis.hget(keys.sale(sale, "users"), user)
            if held:
                units[sale] = int(held)
        events = []
        for stream in await self._streams(sales):
            events += [
                {"stream": stream, "id": i, **e} for i, e in await self._stream_hits(stream, user)
            ]
        wallet_raw = await self._redis.hgetall(keys.wallet(user, "w"))
        ledger = [{"id": i, **e} for i, e in await self._ledger(user)]
        earnings = {
            host: [{"id": i, **e} for i, e in hits]
            for host, hits in (await self._earnings_named(user)).items()
        }
        out: dict[str, Any] = {
            "reservations": reservations,
            "units_held": units,
            "events": events,
            "wallet": {_s(k): int(v) for k, v in wallet_raw.items()},
            "ledger": ledger,
            "gifts_received_by_hosts": earnings,
            "gifters": await self._gifters(user),
            **await self._coupon_export(user),
            "products": [p.removeprefix(keys.product("")) for p in await self._products(user)],
            "desk_buyer_in_rooms": [
                room
                for room in await self._rooms()
                if await self._redis.sismember(room_key(room, "desk", "buyers"), user)
            ],
        }
        return {k: v for k, v in out.items() if v}

    async def erase(self, user: str, pseudonym: str) -> dict[str, int]:
        r = self._redis
        counts = dict.fromkeys(
            (
                "reservations",
                "sale_records",
                "events",
                "ledger",
                "earnings",
                "gifts_received",
                "gifters",
                "products",
                "coupons",
                "desk_buyers",
            ),
            0,
        )
        sales = await self._sales()
        for sale in sales:
            found = await self._reservations(sale, user)
            if found:
                await r.hset(
                    keys.sale(sale, "res"),
                    mapping={
                        rid: json.dumps(pseudonymise(res, user, pseudonym))
                        for rid, res in found.items()
                    },
                )
                counts["reservations"] += len(found)
            idem = [
                f for f in await r.hkeys(keys.sale(sale, "idem")) if _s(f).startswith(user + "\n")
            ]
            held = await r.hget(keys.sale(sale, "users"), user)
            async with r.pipeline(transaction=False) as pipe:  # one slot: the sale's
                if idem:
                    pipe.hdel(keys.sale(sale, "idem"), *idem)
                if held is not None:
                    pipe.hincrby(keys.sale(sale, "users"), pseudonym, int(held))
                    pipe.hdel(keys.sale(sale, "users"), user)
                pipe.delete(keys.sale(sale, "rl:u:" + user))
                await pipe.execute()
            counts["sale_records"] += len(idem) + (held is not None)
        for stream in await self._streams(sales):
            hits = await self._stream_hits(stream, user)
            counts["events"] += await self._rewriter.rewrite(
                stream, {i: _rewritten(e, user, pseudonym) for i, e in hits}
            )
        # The hosts' earning entries (and idempotency fields) naming the user as the sender.
        for host, hits in (await self._earnings_named(user)).items():
            counts["earnings"] += await self._rewriter.rewrite(
                keys.wallet(host, "ledger"),
                {i: ["e", json.dumps({**e, "source": pseudonym + e["source"][len(user):]})]
                 for i, e in hits},
            )  # fmt: skip
            host_idem = keys.wallet(host, "idem")
            for _, e in hits:
                old = "earn\n" + e["source"]
                value = await r.hget(host_idem, old)
                if value is not None:
                    await r.hset(host_idem, "earn\n" + pseudonym + e["source"][len(user) :], value)
                    await r.hdel(host_idem, old)
        # The senders' gift entries (and their replay records) naming the user as the host.
        for sender, entry_ids in (await self._gifts_to(user)).items():
            ledger = dict(await self._ledger(sender))
            counts["gifts_received"] += await self._rewriter.rewrite(
                keys.wallet(sender, "ledger"),
                {i: ["e", json.dumps(pseudonymise(ledger[i], user, pseudonym))]
                 for i in entry_ids if i in ledger},
            )  # fmt: skip
            sender_idem = keys.wallet(sender, "idem")
            for field, value in (await r.hgetall(sender_idem)).items():
                record = json.loads(value) if value.startswith(b"{") else None
                if record is not None and names_user(record, user):
                    await r.hset(
                        sender_idem, field, json.dumps(pseudonymise(record, user, pseudonym))
                    )
        for product in await self._products(user):
            await r.hset(product, "seller", user_seller(pseudonym))
            counts["products"] += 1
        listed = await r.smembers(keys.seller_products(user_seller(user)))
        if listed:  # the index of a host's own products (another slot: moved by members)
            await r.sadd(keys.seller_products(user_seller(pseudonym)), *listed)
            await r.delete(keys.seller_products(user_seller(user)))
            counts["products"] += 1
        for room in await self._rooms():  # the desk's buyers of each room
            buyers = room_key(room, "desk", "buyers")
            if await r.sismember(buyers, user):
                async with r.pipeline(transaction=True) as pipe:  # one slot: the room's
                    pipe.srem(buyers, user)
                    pipe.sadd(buyers, pseudonym)
                    await pipe.execute()
                counts["desk_buyers"] += 1
        catalogue = await r.dump(keys.gift_catalogue(user_seller(user)))
        if catalogue is not None:
            await r.restore(keys.gift_catalogue(user_seller(pseudonym)), 0, catalogue, replace=True)
            await r.delete(keys.gift_catalogue(user_seller(user)))
            counts["products"] += 1
        counts["ledger"] += await self._move_wallet(user, pseudonym)
        for room, coupon in await self._coupons():
            counts["coupons"] += await self._erase_coupon(room, coupon, user, pseudonym)
        # The leaderboards' once-per-entry markers (`ranked:USER/ENTRY`, a day's TTL).
        for room, rest in await self._scan(f"ranked:{user}/*"):
            entry = rest.rsplit("/", 1)[1]
            await r.rename(room_key(room, rest), room_key(room, f"ranked:{pseudonym}/{entry}"))
            counts["gifters"] += 1
        for room, boards in (await self._gifters(user)).items():
            for scope, score in boards.items():
                key = keys.gifters(room, scope)
                async with r.pipeline(transaction=False) as pipe:  # one slot: the room's
                    pipe.zincrby(key, score, pseudonym)
                    pipe.zrem(key, user)
                    await pipe.execute()
                counts["gifters"] += 1
        return counts

    async def _erase_coupon(self, room: str, coupon: str, user: str, pseudo: str) -> int:
        """The user's claims pseudonymised (they back holds and orders), their per-user list
        moved to the pseudonym, their replay records gone, a creator's id pseudonymised."""
        r = self._redis
        changed = 0
        claims = await self._claims(room, coupon, user)
        if claims:
            await r.hset(
                keys.coupon(room, coupon, "claims"),
                mapping={k: json.dumps(pseudonymise(c, user, pseudo)) for k, c in claims.items()},
            )
            changed += len(claims)
        users = keys.coupon(room, coupon, "users")
        mine = await r.hget(users, user)
        idem = [
            f for f in await r.hkeys(keys.coupon(room, coupon, "idem"))
            if _s(f).split("\n")[1:2] == [user]
        ]  # fmt: skip
        async with r.pipeline(transaction=False) as pipe:  # one slot: the room's
            if mine is not None:
                pipe.hset(users, pseudo, mine)
                pipe.hdel(users, user)
            if idem:
                pipe.hdel(keys.coupon(room, coupon, "idem"), *idem)
            await pipe.execute()
        meta = keys.coupon(room, coupon, "meta")
        if await r.hget(meta, "created_by") == user.encode():
            await r.hset(meta, "created_by", pseudo)
            changed += 1
        return changed + (mine is not None) + len(idem)

    async def _move_wallet(self, user: str, pseudo: str) -> int:
        """The ledger (entries pseudonymised) and balances go to the pseudonym's wallet (another
        slot: DUMP and RESTORE, or appended to what an earlier erasure moved there); the
        idempotency records and the rate window go. Pending settlements stay (they settle and
        go within their lease). Returns the ledger entries moved."""
        r = self._redis
        ledger = await self._ledger(user)
        if ledger:
            await self._rewriter.rewrite(
                keys.wallet(user, "ledger"),
                {i: _rewritten({"e": e}, user, pseudo) for i, e in ledger},
            )
        for part in WALLET_MOVED:
            source, target = keys.wallet(user, part), keys.wallet(pseudo, part)
            dumped = await r.dump(source)
            if dumped is None:
                continue
            if not await r.exists(target):
                await r.restore(target, 0, dumped)
            elif part == "w":
                for field, value in (await r.hgetall(source)).items():
                    await r.hincrby(target, _s(field), int(value))
            else:  # entries newer than what an earlier erasure moved
                async for entry_id, fields in stream_entries(r, source):
                    await r.xadd(target, fields, id=entry_id)
            await r.delete(source)
        await r.delete(keys.wallet(user, "idem"), keys.wallet(user, "rl"))
        if not await r.exists(keys.wallet(user, "pending")):
            # Nothing owed any more: the sweeper's mark goes (else it unmarks it once settled).
            await r.hdel(keys.WALLETS_PENDING, user)
        return len(ledger)
