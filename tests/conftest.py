"""Shared fixtures: a real embedded Valkey, nodes served on loopback, tokens, Socket.IO clients.

Store kinds: a test (or module, with `pytestmark`) marked `@pytest.mark.stores("single",
"cluster")` runs once against the single embedded Valkey and once against a 3-master Valkey
Cluster (`devtools/valkey_cluster.py`, started on first use, shared by the session);
`--stores single` (or `cluster`) narrows that. `valkey_url`, `redis`, `make_settings` and
`start_node` follow the kind: on the cluster, clients are cluster clients and nodes run with
`redis_cluster=True` (so commerce uses its outbox).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio
from pydantic import SecretStr

from core.auth import TokenAuthority
from core.store import connect as connect_redis
from core.store import embedded_valkey
from devtools.valkey_cluster import ValkeyCluster, valkey_cluster
from live.app import RunningNode, serve
from live.settings import Settings

SECRET = "test-secret-" + "x" * 32
# Nodes the tests start as processes (`live serve`, loadtest servers) serve viewers in-process
# unless a test asks for media workers; `live serve` alone would default to one per core.
os.environ.setdefault("LIVE_MEDIA_WORKERS", "0")
_node_ids = itertools.count(1)
# Nodes of the suite admit viewers by count, the ones it spawns as processes too (they inherit
# this environment): on a loaded test machine a node measuring its load refuses viewers in tests
# of something else. tests/media/test_admission.py (and the media benchmark's tests) turn it on.
os.environ.setdefault("LIVE_MEDIA_ADMISSION", "count")
STORES = ("single", "cluster")
CLUSTER_MASTERS = 3
_cluster_urls: set[str] = set()  # URLs of the session's Valkey Cluster: make_settings reads it


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stores",
        default=",".join(STORES),
        help="store kinds that tests marked `stores` run against, comma-separated "
        "(default single,cluster)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stores(*kinds): run against each store kind: single Valkey, Valkey Cluster"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("stores")
    if marker is None or "store" not in metafunc.fixturenames:
        return
    chosen = set(metafunc.config.getoption("stores").split(","))
    kinds = [kind for kind in marker.args if kind in chosen]
    metafunc.parametrize("store", kinds, indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """`single` (the default) or `cluster`, as the test's `stores` marker parametrizes it."""
    kind: str = getattr(request, "param", "single")
    if kind not in STORES:
        raise ValueError(f"unknown store kind {kind!r}")
    return kind


@pytest.fixture(scope="session")
def single_valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_valkey(Path(tmp_path_factory.mktemp("valkey"))) as url:
        yield url


@pytest.fixture(scope="session")
def cluster_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A 3-master Valkey Cluster, no replicas, started when a test first asks for it."""
    # No replica takes over: a long node timeout keeps a loaded box from marking a master failed.
    with valkey_cluster(
        Path(tmp_path_factory.mktemp("valkey-cluster")),
        masters=CLUSTER_MASTERS,
        node_timeout_ms=15_000,
    ) as cluster:
        # Formed on a loop of its own: a fixture may be set up while a test's loop runs.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, cluster.form()).result()
        _cluster_urls.add(cluster.url)
        yield cluster
        _cluster_urls.discard(cluster.url)


@pytest.fixture
def valkey_url(store: str, request: pytest.FixtureRequest) -> str:
    if store == "cluster":
        cluster: ValkeyCluster = request.getfixturevalue("cluster_valkey")
        return cluster.url
    url: str = request.getfixturevalue("single_valkey_url")
    return url


def is_cluster(valkey_url: str) -> bool:
    return valkey_url in _cluster_urls


@pytest.fixture
async def redis(valkey_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's store (a cluster client on the cluster), flushed first."""
    if is_cluster(valkey_url):
        client = connect_redis(valkey_url, cluster=True)
    else:
        client = aioredis.Redis.from_url(valkey_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def tokens() -> TokenAuthority:
    return TokenAuthority(SECRET)


def make_settings(valkey_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "node_id": f"node-{next(_node_ids)}",
        "host": "127.0.0.1",
        "port": 0,
        "redis_url": valkey_url,
        "redis_cluster": is_cluster(valkey_url),
        "jwt_secret": SecretStr(SECRET),
        "likes_flush_ms": 50,
        "viewer_count_interval_s": 0.1,
        # The count only: on a shared test machine a lagging loop must not refuse viewers in
        # tests about something else (tests/media/test_admission.py turns it on).
        "media_admission": "count",
        **overrides,
    }
    return Settings.of(**values)


NodeFactory = Callable[..., Awaitable[RunningNode]]


@pytest.fixture
async def start_node(valkey_url: str, redis: aioredis.Redis) -> AsyncIterator[NodeFactory]:
    """Start nodes on free loopback ports, each with its own Redis client; stop them after."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> RunningNode:
            settings = make_settings(valkey_url, **overrides)
            client = connect_redis(
                settings.store.redis_url or valkey_url, cluster=settings.store.redis_cluster
            )
            stack.push_async_callback(client.aclose)
            return await stack.enter_async_context(serve(settings, client))

        yield start


@pytest.fixture
async def node(start_node: NodeFactory, redis: aioredis.Redis) -> RunningNode:
    running = await start_node()
    await running.node.rooms.create(title="Test room", owner="host", room_id="r1")
    await running.node.rooms.create(title="Other room", owner="host", room_id="r2")
    return running


class Client:
    """A python-socketio client on `/live` that records every server event for awaiting."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: defaultdict[str, list[Any]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self.disconnected = asyncio.Event()
        self.sio.on("*", self._record, namespace="/live")
        self.sio.on("disconnect", self._on_disconnect, namespace="/live")
        self.sio.on("connect_error", self._on_connect_error, namespace="/live")

    async def _record(self, event: str, data: Any = None) -> None:
        async with self._changed:
            self.events[event].append(data)
            self._changed.notify_all()

    async def _on_connect_error(self, data: Any = None) -> None:
        await self._record("connect_error", data)

    async def _on_disconnect(self, *_: Any) -> None:
        self.disconnected.set()

    async def connect(self) -> Client:
        await self.sio.connect(
            self.url,
            namespaces=["/live"],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=5,
        )
        return self

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.sio.call(event, data, namespace="/live", timeout=5)
        return result

    async def join(self, room: str, since: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"room": room}
        if since:
            payload["since"] = since
        ack = await self.call("join", payload)
        assert ack["ok"], ack
        return ack

    async def wait_for(
        self, event: str, predicate: Callable[[Any], bool] = lambda _: True, within: float = 5
    ) -> Any:
        """The first recorded `event` matching `predicate`, waiting for it if needed."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for data in self.events[event]:
                    if predicate(data):
                        return data
                await self._changed.wait()

    async def close(self) -> None:
        await self.sio.disconnect()


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def connect(tokens: TokenAuthority) -> AsyncIterator[ClientFactory]:
    clients: list[Client] = []

    async def make(
        url: str,
        user: str,
        role: str = "viewer",
        rooms: list[str] | None = None,
        name: str | None = None,
        shop: str | None = None,
    ) -> Client:
        token = tokens.issue(
            user=user, role=role, name=name or user.title(), rooms=rooms, shop=shop
        )
        client = await Client(url, token).connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()
