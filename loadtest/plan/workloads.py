"""What a benchmark run asks of its workers: plain, picklable descriptions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loadtest.plan.arrivals import Arrivals

NAMESPACE = "/live"
MAX_VIEWERS = 50_000
MAX_MESSAGES = 100_000
MAX_DURATION_S = 600.0


@dataclass(frozen=True, slots=True)
class ChatWorkload:
    """N viewers in one room; `senders` of them share a room-wide chat `rate` for `duration_s`."""

    viewers: int
    rate: float
    duration_s: float
    room: str
    senders: int
    drain_s: float = 10.0
    warmup_s: float = 2.0  # unmeasured sending first, so JITs and caches are warm on every server
    connect_rate: float = 1000.0  # new connections per second, across all workers
    connect_concurrency: int = 200  # handshakes in flight, across all workers
    connect_timeout_s: float = 15.0
    sender_role: str = "viewer"
    likers: int = 0  # viewers after the senders that also like, sharing `like_rate`
    like_rate: float = 0.0  # room-wide likes per second
    # Closed (the default): everyone joins before the start at `connect_rate`. Open: senders and
    # likers join before the start, the rest arrive during the run at the steps' rates.
    arrivals: Arrivals = field(default_factory=Arrivals)
    # Gift delivery: viewers after the senders and likers that each send one gift, granted its
    # price first; gift `n` (of min(gifters, gift_rate x duration)) at `n / gift_rate` s after
    # the start, and every viewer measures its `gift` event from that moment.
    gifters: int = 0
    gift_rate: float = 0.0
    gift_id: str = "rose"
    gift_price: int = 1  # the grant: one gift's worth

    @property
    def gifts(self) -> int:
        return min(self.gifters, math.floor(self.gift_rate * self.duration_s))

    def gifter_of(self, index: int) -> int | None:
        """The gift viewer `index` sends (its `n`), or None."""
        n = index - self.senders - self.likers
        return n if 0 <= n < self.gifts else None

    def arrives_open(self, index: int) -> bool:
        """Whether viewer `index` arrives during the run (open model, not a sender or liker)."""
        return self.arrivals.model == "open" and index >= self.senders + self.likers

    @property
    def messages(self) -> int:
        return math.floor(self.rate * self.duration_s)

    @property
    def warmup_messages(self) -> int:
        return math.floor(self.rate * self.warmup_s)

    def sender_of(self, seq: int) -> int:
        """The viewer index that sends message `seq` (senders are viewers 0..senders-1)."""
        return seq % self.senders

    def send_offset_s(self, seq: int) -> float:
        return seq / self.rate

    def validate(self) -> None:
        if not 1 <= self.viewers <= MAX_VIEWERS:
            raise ValueError(f"viewers must be between 1 and {MAX_VIEWERS}")
        if not 0 < self.rate <= 1000:
            raise ValueError("rate must be above 0 and at most 1000 messages/s")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:.0f} s")
        if not 1 <= self.messages <= MAX_MESSAGES:
            raise ValueError(f"rate x duration must give between 1 and {MAX_MESSAGES} messages")
        if not 0 <= self.warmup_s <= 60:
            raise ValueError("warm-up must be between 0 and 60 s")
        if not 1 <= self.senders <= self.viewers:
            raise ValueError("senders must be between 1 and the number of viewers")
        if not 0 <= self.likers <= self.viewers - self.senders or not 0 <= self.like_rate <= 10_000:
            raise ValueError("likers must fit beside the senders; like rate 0..10,000/s")
        if self.gifters and (
            not 0 < self.gift_rate <= 1000
            or self.gifters > self.viewers - self.senders - self.likers
            or self.arrivals.model == "open"
        ):
            raise ValueError(
                "gifters need a gift rate of 0..1000/s, must fit beside the senders and likers,"
                " and a closed crowd"
            )
        self.arrivals.validate()
        if self.viewers * self.messages // 8 > 512 * 1024 * 1024:
            raise ValueError("viewers x messages is too large to track per viewer")


def senders_for(rate: float, viewers: int, per_user: int = 20, window_s: float = 30.0) -> int:
    """Enough senders that none exceeds the default per-user limit (with 25% headroom)."""
    needed = math.ceil(rate * window_s / per_user * 1.25)
    return max(1, min(viewers, needed))


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """One worker's share: viewers `index, index + workers, ...` spread over `targets`."""

    index: int
    workers: int
    targets: tuple[str, ...]
    secret: str
    workload: ChatWorkload
    cpus: tuple[int, ...] = ()
    run_tag: str = "lt"
    regions: tuple[str, ...] = ()  # the region of each target (`loadtest.plan.regions`); () none

    def viewer_indices(self) -> range:
        return range(self.index, self.workload.viewers, self.workers)

    def target_of(self, viewer: int) -> str:
        return self.targets[viewer % len(self.targets)]

    def region_of(self, viewer: int) -> str:
        return self.regions[viewer % len(self.regions)] if self.regions else "-"


MAX_ATTEMPTS = 10_000_000
MAX_USERS = 1_000_000


VIAS = ("http", "socket")


@dataclass(frozen=True, slots=True)
class SaleWorkload:
    """`attempts` reservation attempts by `users` buyers, at `rate` per second (0: as fast as
    `concurrency` in-flight requests allow), stopped after `duration_s` whatever is left."""

    users: int
    attempts: int
    rate: float
    duration_s: float
    room: str = ""
    sale_id: str = ""
    concurrency: int = 256  # requests in flight, across all workers
    quantity: int = 1  # units asked per attempt
    timeout_s: float = 5.0  # per request
    via: str = "http"  # http: a POST per attempt; socket: `buy` on each buyer's joined socket

    def validate(self) -> None:
        if not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be between 1 and {MAX_USERS}")
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"attempts must be between 1 and {MAX_ATTEMPTS}")
        if not 0 <= self.rate <= 1_000_000:
            raise ValueError("rate must be between 0 (as fast as possible) and 1,000,000/s")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:.0f} s")
        if not 1 <= self.concurrency <= 100_000:
            raise ValueError("concurrency must be between 1 and 100,000")
        if not 1 <= self.quantity <= 1000:
            raise ValueError("quantity per attempt must be between 1 and 1000")
        if self.via not in VIAS:
            raise ValueError(f"via must be one of {', '.join(VIAS)}")


@dataclass(frozen=True, slots=True)
class BuyerPlan:
    """One worker's share: attempts and users `index, index + workers, ...` over `targets`."""

    index: int
    workers: int
    targets: tuple[str, ...]
    secret: str
    workload: SaleWorkload
    cpus: tuple[int, ...] = ()
    run_tag: str = "lt"

    def user_indices(self) -> range:
        mine = range(self.index, self.workload.users, self.workers)
        # Fewer users than workers: share them rather than leave a worker idle.
        one = self.index % self.workload.users
        return mine if len(mine) else range(one, one + 1)

    def attempt_indices(self) -> range:
        return range(self.index, self.workload.attempts, self.workers)

    def user_id(self, index: int) -> str:
        return f"{self.run_tag}-b{index}"


@dataclass(frozen=True, slots=True)
class SaleSpec:
    """The sale the benchmark starts (POST /api/rooms/{room}/sales)."""

    quantity: int
    per_user_limit: int = 1
    duration_s: float = 600.0
    hold_s: float = 3600.0  # longer than the run: nothing expires before the check
    price_minor: int = 999

    def body(self, product_id: str) -> dict[str, Any]:
        return {
            "product_id": product_id, "quantity": self.quantity, "price_minor": self.price_minor,
            "duration_s": float(self.duration_s), "per_user_limit": self.per_user_limit,
            "hold_s": float(self.hold_s),
        }  # fmt: skip


MAX_GIFTERS = 100_000


@dataclass(frozen=True, slots=True)
class GiftWorkload:
    """`attempts` Socket.IO `gift`s by `gifters` senders, each granted `grant` credits first,
    at `rate` per second room-wide (0: as fast as `concurrency` in-flight gifts allow), stopped
    after `duration_s` whatever is left. A worker's attempts take turns over its gifters."""

    gifters: int
    attempts: int
    rate: float
    duration_s: float
    room: str = ""
    grant: int = 100  # credits each gifter gets through POST /api/wallets/{user}/credits
    gift_id: str = "rose"
    count: int = 1
    concurrency: int = 64  # gifts in flight, across all workers (rate 0)
    timeout_s: float = 5.0  # per acknowledgement
    connect_rate: float = 500.0  # gifters' connections per second, across all workers

    def validate(self) -> None:
        if not 1 <= self.gifters <= MAX_GIFTERS:
            raise ValueError(f"gifters must be between 1 and {MAX_GIFTERS}")
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"gift attempts must be between 1 and {MAX_ATTEMPTS}")
        if not 0 <= self.rate <= 1_000_000:
            raise ValueError("gift rate must be between 0 (as fast as possible) and 1,000,000/s")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:.0f} s")
        if not 1 <= self.grant <= 1_000_000:
            raise ValueError("the grant must be between 1 and 1,000,000 credits")
        if not 1 <= self.count <= 100 or not 1 <= self.concurrency <= 100_000:
            raise ValueError("gift count must be 1..100 and concurrency 1..100,000")


@dataclass(frozen=True, slots=True)
class GifterPlan:
    """One worker's share: gifters and attempts `index, index + workers, ...` over `targets`
    (gifter `i` connects to `targets[i % n]`)."""

    index: int
    workers: int
    targets: tuple[str, ...]
    secret: str
    workload: GiftWorkload
    cpus: tuple[int, ...] = ()
    run_tag: str = "lt"

    def gifter_indices(self) -> range:
        return range(self.index, self.workload.gifters, self.workers)

    def attempt_indices(self) -> range:
        return range(self.index, self.workload.attempts, self.workers)

    def user_id(self, index: int) -> str:
        return f"{self.run_tag}-g{index}"
