"""Viewer routing: region, load, health and distance; the HTTP route and the drain admin call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.auth import TokenAuthority
from edge.registry import NodeRecord
from edge.selection import RegionDistances, select
from tests.conftest import NodeFactory
from tests.support.waiting import eventually

DISTANCES = RegionDistances({"na": {"eu": 90, "sea": 180}, "eu": {"sea": 160}})


def rec(node_id: str, role: str, region: str, viewers: int = 0, **kw: Any) -> NodeRecord:
    values: dict[str, Any] = {
        "url": f"http://127.0.0.1:1/{node_id}",
        "sockets": 0,
        "capacity": 100,
        "draining": False,
        "started_at": 1.0,
        "ts": 1.0,
        **kw,
    }
    return NodeRecord(node_id=node_id, role=role, region=region, viewers=viewers, **values)


ORIGIN = rec("origin", "origin", "na")


def pick(nodes: list[NodeRecord], region: str) -> tuple[str, str] | None:
    choice = select(nodes, region, DISTANCES)
    return None if choice is None else (choice.node.node_id, choice.reason)


def test_same_region_least_loaded_first() -> None:
    nodes = [ORIGIN, rec("eu-1", "edge", "eu", 50), rec("eu-2", "edge", "eu", 10)]
    assert pick(nodes, "eu") == ("eu-2", "region")


def test_equal_load_is_decided_by_id() -> None:
    nodes = [rec("eu-b", "edge", "eu", 5), rec("eu-a", "edge", "eu", 5)]
    assert pick(nodes, "eu") == ("eu-a", "region")


def test_a_node_refusing_by_its_measured_load_is_skipped() -> None:
    nodes = [ORIGIN, rec("eu-1", "edge", "eu", 5, admitting=False), rec("eu-2", "edge", "eu", 60)]
    assert pick(nodes, "eu") == ("eu-2", "region")
    assert pick([ORIGIN, rec("eu-1", "edge", "eu", admitting=False)], "eu") == ("origin", "origin")


def test_draining_and_full_nodes_are_skipped_for_the_nearest_region() -> None:
    nodes = [
        ORIGIN,
        rec("eu-1", "edge", "eu", draining=True),
        rec("eu-2", "edge", "eu", 100),  # at capacity
        rec("na-1", "edge", "na", 70),
        rec("sea-1", "edge", "sea", 0),
    ]
    assert pick(nodes, "eu") == ("na-1", "nearest")  # 90 beats 160, whatever the load
    assert pick(nodes, "sea") == ("sea-1", "region")


def test_origin_when_no_edge_is_reachable() -> None:
    assert pick([ORIGIN, rec("x-1", "edge", "mars")], "eu") == ("origin", "origin")
    assert pick([ORIGIN], "sea") == ("origin", "origin")
    assert pick([rec("o", "origin", "na", draining=True)], "eu") is None
    assert pick([], "eu") is None


def test_a_node_of_role_all_serves_its_region_and_is_an_origin() -> None:
    assert pick([rec("one", "all", "eu")], "eu") == ("one", "region")
    assert pick([rec("one", "all", "local")], "eu") == ("one", "origin")


def test_excluded_nodes_are_never_chosen() -> None:
    nodes = [ORIGIN, rec("eu-1", "edge", "eu"), rec("eu-2", "edge", "eu", 50)]
    nodes.append(rec("sea-1", "edge", "sea"))
    choice = select(nodes, "eu", DISTANCES, exclude={"eu-1"})
    assert choice is not None and (choice.node.node_id, choice.reason) == ("eu-2", "region")
    choice = select(nodes, "eu", DISTANCES, exclude={"eu-1", "eu-2"})
    assert choice is not None and (choice.node.node_id, choice.reason) == ("sea-1", "nearest")
    choice = select(nodes, "eu", DISTANCES, exclude={"eu-1", "eu-2", "sea-1"})
    assert choice is not None and choice.node.node_id == "origin"
    assert select(nodes, "eu", DISTANCES, exclude={n.node_id for n in nodes}) is None


def test_distance_table_is_symmetric() -> None:
    assert DISTANCES.distance("sea", "na") == 180
    assert DISTANCES.distance("eu", "eu") == 0
    assert DISTANCES.distance("eu", "mars") == float("inf")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json()


FAST = {"node_heartbeat_s": 0.1, "node_ttl_s": 0.6}


async def test_route_follows_region_load_and_health(
    start_node: NodeFactory, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    origin = await start_node(node_id="origin", role="origin", region="na", **FAST)
    eu = await start_node(
        node_id="edge-eu", role="edge", region="eu", origin_url=origin.url, **FAST
    )
    await origin.node.rooms.create(title="t", owner="h", room_id="r1")
    await eventually(origin.node.registry.nodes, lambda ns: len(ns) == 2)
    url = f"{origin.url}/api/rooms/r1/edge"

    assert await get(http, f"{url}?region=eu") == (
        200,
        {"node_id": "edge-eu", "region": "eu", "url": eu.url, "reason": "region"},
    )
    status, body = await get(http, f"{url}?region=sea")
    assert (status, body["node_id"], body["reason"]) == (200, "edge-eu", "nearest")
    status, body = await get(http, url)  # no region: the asked node's own (na): no na edge
    assert (status, body["node_id"]) == (200, "edge-eu")

    # A viewer that found edge-eu dead asks again excluding it: offered the next, at once.
    status, body = await get(http, f"{url}?region=eu&exclude=edge-eu,gone")
    assert (status, body["node_id"], body["reason"]) == (200, "origin", "origin")
    status, body = await get(http, f"{url}?region=eu&exclude=edge-eu,origin")
    assert (status, body["error"]) == (503, "no_node_available")
    status, body = await get(http, f"{url}?region=eu&exclude=" + ",".join("abcdefghi"))
    assert (status, body["error"]) == (400, "invalid_exclude")
    status, body = await get(http, f"{url}?region=eu&exclude=" + "x" * 513)
    assert (status, body["error"]) == (400, "invalid_exclude")

    # A dead edge (heartbeat stopped, record left to expire) drops out within the TTL.
    eu.node.registry._stopping = True
    await eventually(lambda: get(http, f"{url}?region=eu"), lambda r: r[1]["node_id"] == "origin")


async def test_route_refusals_are_json(
    start_node: NodeFactory, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    node = await start_node(region="eu", **FAST)
    await node.node.rooms.create(title="t", owner="h", room_id="r1")
    assert await get(http, f"{node.url}/api/rooms/nope/edge?region=eu") == (
        404,
        {"error": "unknown_room", "detail": "there is no room 'nope'"},
    )
    status, body = await get(http, f"{node.url}/api/rooms/r1/edge?region=EU!")
    assert (status, body["error"]) == (400, "invalid_region")
    status, body = await get(http, f"{node.url}/api/rooms/r1/edge?region=mars")
    assert (status, body["error"]) == (400, "unknown_region")
    assert "eu" in body["detail"]


async def test_drain_call_needs_a_node_token_and_stops_new_viewers(
    start_node: NodeFactory,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
) -> None:
    origin = await start_node(node_id="origin", role="origin", region="na", **FAST)
    await start_node(node_id="edge-eu", role="edge", region="eu", origin_url=origin.url, **FAST)
    await origin.node.rooms.create(title="t", owner="h", room_id="r1")
    await eventually(origin.node.registry.nodes, lambda ns: len(ns) == 2)

    async def drain(node_id: str, role: str | None, method: str = "POST") -> tuple[int, Any]:
        headers = {}
        if role:
            headers["Authorization"] = "Bearer " + tokens.issue(user="ops", role=role)
        url = f"{origin.url}/api/nodes/{node_id}/drain"
        async with http.request(method, url, headers=headers) as r:
            return r.status, await r.json()

    assert (await drain("edge-eu", None))[0] == 401
    assert (await drain("edge-eu", "host"))[0] == 403
    assert (await drain("nope", "node"))[1]["error"] == "unknown_node"
    assert await drain("edge-eu", "node") == (200, {"node_id": "edge-eu", "draining": True})
    status, body = await get(http, f"{origin.url}/api/rooms/r1/edge?region=eu")
    assert (status, body["node_id"]) == (200, "origin")
    status, body = await get(http, f"{origin.url}/api/nodes")
    assert [(n["node_id"], n["draining"]) for n in body["nodes"]] == [
        ("edge-eu", True),
        ("origin", False),
    ]
    assert await drain("edge-eu", "node", "DELETE") == (
        200,
        {"node_id": "edge-eu", "draining": False},
    )
    await eventually(
        lambda: get(http, f"{origin.url}/api/rooms/r1/edge?region=eu"),
        lambda r: r[1]["node_id"] == "edge-eu",
    )


def test_among_equally_near_origins_the_one_holding_the_host_is_chosen() -> None:
    nodes = [rec("origin-a", "origin", "na"), rec("origin-b", "origin", "na", 40)]
    assert pick(nodes, "eu") == ("origin-a", "origin")
    choice = select(nodes, "eu", DISTANCES, source="origin-b")
    assert choice is not None and choice.node.node_id == "origin-b"
    # Distance comes first: a nearer origin wins over the source.
    nodes.append(rec("origin-eu", "origin", "eu", 90))
    choice = select(nodes, "eu", DISTANCES, source="origin-b")
    assert choice is not None and choice.node.node_id == "origin-eu"
