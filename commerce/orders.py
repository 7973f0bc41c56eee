"""A reference core order system: consumes the purchase stream with a consumer group and confirms
each reservation, or cancels a chosen share of them, through the REST API (role `orders`); and
books wallet events (`wallet.credited`, `gift.sent`, `wallet.refunded`) into payouts per host,
from the events alone."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, OrderedDict

import aiohttp
import redis.asyncio as aioredis

from commerce.delivery import PurchaseEvent, StreamConsumer

log = logging.getLogger(__name__)
SEEN_MAX = 100_000
WALLET_EVENTS = frozenset({"wallet.credited", "gift.sent", "wallet.refunded"})


def fails(reservation_id: str, failure_rate: float) -> bool:
    """Deterministic per reservation, so a redelivered event gets the same decision."""
    digest = hashlib.sha256(reservation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < failure_rate


class ReferenceOrderSystem:
    def __init__(
        self,
        redis: aioredis.Redis,
        session: aiohttp.ClientSession,
        *,
        stream: str,
        base_url: str,
        token: str,
        failure_rate: float = 0.0,
        group: str = "orders",
        consumer: str = "orders-1",
        claim_idle_ms: int = 30_000,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._failure_rate = failure_rate
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.confirmed = 0
        self.cancelled = 0
        self.refused = 0
        self.duplicates = 0
        # Wallet books: gifts (sends), credits spent on gifts net of refunds, each host's
        # earnings and the platform's share (net of refunds), top-ups.
        self.gifts = 0
        self.gift_credits = 0
        self.earnings: Counter[str] = Counter()
        self.platform = 0
        self.topups = 0
        self.refunds = 0
        self.consumer = StreamConsumer(
            redis, stream, group, consumer, self.handle, claim_idle_ms=claim_idle_ms
        )

    async def handle(self, event: PurchaseEvent) -> bool:
        if event.type in WALLET_EVENTS:
            if self._first(event):
                self._book(event)
            return True
        if event.type != "purchase.reserved":
            return True
        if event.event_id in self._seen:
            self.duplicates += 1
            return True
        rid = str(event.data.get("reservation_id", ""))
        action = "cancel" if fails(rid, self._failure_rate) else "confirm"
        url = f"{self._base}/api/reservations/{rid}/{action}"
        async with self._session.post(url, headers=self._headers) as response:
            await response.read()
            if response.status >= 500:
                return False  # stays pending; retried after re-claim
        if response.status == 200:
            if action == "confirm":
                self.confirmed += 1
            else:
                self.cancelled += 1
        else:
            self.refused += 1  # expired meanwhile, or unknown: nothing to do
        self._seen[event.event_id] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def _first(self, event: PurchaseEvent) -> bool:
        if event.event_id in self._seen:
            self.duplicates += 1
            return False
        self._seen[event.event_id] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def _book(self, event: PurchaseEvent) -> None:
        d = event.data
        if event.type == "wallet.credited":
            self.topups += 1
            return
        if event.type == "wallet.refunded":
            self.refunds += 1
            if d.get("refunded_kind") != "gift":
                return
        else:
            self.gifts += 1
            log.info("gift: %s sent %s x%s to %s in %s", d.get("user_id"), d.get("gift_id"),
                     d.get("count"), d.get("host_id"), d.get("room_id"))  # fmt: skip
        # A gift's amount is negative (a debit); its refund's positive, with negative legs.
        self.gift_credits -= int(d.get("amount", 0))
        self.earnings[str(d.get("host_id"))] += int(d.get("host_amount", 0))
        self.platform += int(d.get("platform_amount", 0))

    async def run(self) -> None:
        await self.consumer.run()
