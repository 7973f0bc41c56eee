"""Node registry: every node heartbeats its record into Redis with a TTL, so a node that stops
heartbeating drops out within `ttl_s`; a draining node stays listed but takes no new viewers.

Keys share the hash tag `{nodes}` so the scripts and pipelines run unchanged on Redis Cluster:
`live:{nodes}:node:ID` (hash, PEXPIRE ttl), `live:{nodes}:index` (set of ids, pruned on read) and
`live:{nodes}:drain:ID` (an operator's drain order, outlives restarts of the node for a day).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from core.store import STORE_ERRORS

log = logging.getLogger(__name__)

PREFIX = "live:{nodes}"
INDEX = f"{PREFIX}:index"

# KEYS: record, index, drain flag. ARGV: ttl ms, node id, field, value, ...
# Returns 1 when an operator asked this node to drain.
HEARTBEAT_LUA = """
local ordered = redis.call('EXISTS', KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ordered == 1 then redis.call('HSET', KEYS[1], 'draining', '1') end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return ordered
"""

# KEYS: record, drain flag. ARGV: '1' to drain or '0' to resume, flag ttl s. 0 if no such node.
DRAIN_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('HSET', KEYS[1], 'draining', '1')
else
  redis.call('DEL', KEYS[2])
end
return 1
"""


def record_key(node_id: str) -> str:
    return f"{PREFIX}:node:{node_id}"


def drain_key(node_id: str) -> str:
    return f"{PREFIX}:drain:{node_id}"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """What a node last said about itself."""

    node_id: str
    role: str  # "all", "origin" or "edge"
    region: str
    url: str
    viewers: int
    sockets: int
    capacity: int
    draining: bool
    started_at: float  # changes when the node restarts: upstreams to it must be redone
    ts: float
    # False while the node's measured load refuses new viewers (media.admission); a record from
    # a node that does not say counts as admitting.
    admitting: bool = True

    @property
    def load(self) -> float:
        """Share of capacity in use (media viewers), 0.0 to 1.0 and beyond."""
        return self.viewers / max(1, self.capacity)

    @property
    def accepts_viewers(self) -> bool:
        return not self.draining and self.admitting and self.load < 1.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "load": round(self.load, 4)}

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> NodeRecord | None:
        try:
            f = {k.decode(): v.decode() for k, v in raw.items()}
            return cls(
                node_id=f["node_id"],
                role=f["role"],
                region=f["region"],
                url=f["url"],
                viewers=int(f.get("viewers", "0")),
                sockets=int(f.get("sockets", "0")),
                capacity=int(f.get("capacity", "1")),
                draining=f.get("draining") == "1",
                started_at=float(f.get("started_at", "0")),
                ts=float(f.get("ts", "0")),
                admitting=f.get("admitting", "1") != "0",
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return None


class NodeRegistry:
    """This node's heartbeat and everyone's records.

    `url` is read at each beat because a node on port 0 learns its URL only once it listens; no
    beat goes out before it is known. `count_viewers`/`count_sockets`/`admitting` are plugged in
    by the parts that know them (media, chat).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        node_id: str,
        role: str,
        region: str,
        capacity: int,
        url: Callable[[], str | None],
        heartbeat_s: float = 1.0,
        ttl_s: float = 3.0,
        drain_order_ttl_s: int = 24 * 3600,
    ) -> None:
        self._redis = redis
        self.node_id = node_id
        self.role = role
        self.region = region
        self.capacity = capacity
        self._url = url
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self._drain_order_ttl_s = drain_order_ttl_s
        self.count_viewers: Callable[[], int] = lambda: 0
        self.count_sockets: Callable[[], int] = lambda: 0
        self.admitting: Callable[[], bool] = lambda: True
        self.started_at = time.time()
        self.local_drain = False  # SIGTERM or shutdown: never undone
        self.ordered_drain = False  # an operator's order, read back at every beat
        self._beat_script = redis.register_script(HEARTBEAT_LUA)
        self._drain_script = redis.register_script(DRAIN_LUA)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.beats = 0

    @property
    def draining(self) -> bool:
        return self.local_drain or self.ordered_drain

    # -- own heartbeat -------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("node-registry")

    def wake(self) -> None:
        """Beat now (the URL became known, or the node's state changed)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.beat()
            except STORE_ERRORS as exc:
                log.warning("registry heartbeat failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat_s)
            self._wake.clear()

    async def beat(self) -> bool:
        """Write this node's record with a fresh TTL; False when its URL is not known yet."""
        url = self._url()
        if url is None or self._stopping:
            return False
        fields = {
            "node_id": self.node_id,
            "role": self.role,
            "region": self.region,
            "url": url,
            "viewers": self.count_viewers(),
            "sockets": self.count_sockets(),
            "capacity": self.capacity,
            "draining": "1" if self.local_drain else "0",
            "started_at": repr(self.started_at),
            "ts": repr(time.time()),
            "admitting": "1" if self.admitting() else "0",
        }
        args: list[Any] = [int(self.ttl_s * 1000), self.node_id]
        for k, v in fields.items():
            args += [k, v]
        keys = [record_key(self.node_id), INDEX, drain_key(self.node_id)]
        ordered = await self._beat_script(keys=keys, args=args)
        was = self.draining
        self.ordered_drain = bool(ordered)
        if self.draining != was:
            log.info("node %s draining=%s", self.node_id, self.draining)
        self.beats += 1
        return True

    async def drain(self) -> None:
        """Take no new viewers from now on and say so at once."""
        self.local_drain = True
        with contextlib.suppress(*STORE_ERRORS):
            await self.beat()

    async def stop(self) -> None:
        """Stop heartbeating and leave the registry (selection stops offering this node at once)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*STORE_ERRORS):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(record_key(self.node_id))
                pipe.srem(INDEX, self.node_id)
                await pipe.execute()

    # -- everyone's records ---------------------------------------------------------------------

    async def nodes(self) -> list[NodeRecord]:
        """Every node that heartbeated within its TTL, sorted by id."""
        ids = sorted(m.decode() for m in await self._redis.smembers(INDEX))
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(record_key(node_id))
            raws: list[dict[bytes, bytes]] = await pipe.execute()
        records, gone = [], []
        for node_id, raw in zip(ids, raws, strict=True):
            record = NodeRecord.from_hash(raw) if raw else None
            if record is None:
                gone.append(node_id)
            else:
                records.append(record)
        if gone:
            # Expired records leave their id behind in the index; tidy up as we pass.
            await self._redis.srem(INDEX, *gone)
        return records

    async def get(self, node_id: str) -> NodeRecord | None:
        raw = await self._redis.hgetall(record_key(node_id))
        return NodeRecord.from_hash(raw) if raw else None

    async def order_drain(self, node_id: str, drain: bool = True) -> bool:
        """Tell `node_id` to drain (or to take viewers again); False if no such live node."""
        keys = [record_key(node_id), drain_key(node_id)]
        done = await self._drain_script(
            keys=keys, args=["1" if drain else "0", self._drain_order_ttl_s]
        )
        if node_id == self.node_id:
            self.wake()
        return bool(done)
