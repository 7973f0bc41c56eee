"""A Valkey Cluster formed by devtools/valkey_cluster.py (no valkey-cli), and `live cluster
--valkey-shards`: masters own even slot ranges, replicas follow their master, every node agrees,
and a whole cluster of nodes runs on it."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
from redis.crc import key_slot

from core.auth import TokenAuthority
from core.store import connect as connect_redis
from core.store import room_key
from devtools.valkey_cluster import ValkeyCluster, parse_nodes, slot_ranges
from tests.conftest import SECRET
from tests.support.waiting import eventually

READY = "Ctrl-C stops everything."
NODE = re.compile(r"^\s+(?:origin|edge)\s+(\S+)\s+region \S+\s+(http://\S+)")
AUTH = TokenAuthority(SECRET)
SHARDS = re.compile(r"^valkey cluster: (\d+) masters, (\d+) replicas each: (.+)$")


def test_slots_split_evenly_and_completely() -> None:
    assert slot_ranges(1) == [(0, 16383)]
    assert slot_ranges(3) == [(0, 5460), (5461, 10921), (10922, 16383)]
    ranges = slot_ranges(7)
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    sizes = [hi - lo + 1 for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1


async def test_the_suites_cluster_is_three_masters_that_agree(
    cluster_valkey: ValkeyCluster,
) -> None:
    views = []
    for i in range(len(cluster_valkey.servers)):
        client = cluster_valkey.client(i)
        try:
            info = (await client.execute_command("CLUSTER", "INFO")).decode()
            assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info
            views.append(parse_nodes((await client.execute_command("CLUSTER", "NODES")).decode()))
        finally:
            await client.aclose()
    maps = [{n.address: n.slots for n in view} for view in views]
    assert all(m == maps[0] for m in maps)
    expected = {
        f"127.0.0.1:{s.port}": (f"{lo}-{hi}",)
        for s, (lo, hi) in zip(cluster_valkey.servers, slot_ranges(3), strict=True)
    }
    assert maps[0] == expected
    # Rooms spread over the shards by their hash tag; all keys of one room share its slot.
    ranges = slot_ranges(3)

    def shard(key: str) -> int:
        slot = key_slot(key.encode())
        return next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)

    assert {shard(room_key(f"r{i}", "chat")) for i in range(30)} == {0, 1, 2}
    assert len({key_slot(room_key("r1", p).encode()) for p in ("chat", "bans", "bus")}) == 1


async def test_replicas_follow_their_masters_and_get_the_writes(tmp_path: Path) -> None:
    cluster = ValkeyCluster(tmp_path / "vc", masters=2, replicas=1, appendfsync="everysec")
    cluster.start()
    try:
        await asyncio.wait_for(cluster.form(), 30)
        masters = [cluster.client(i) for i in range(2)]
        replicas = [cluster.client(i) for i in range(2, 4)]
        try:
            for i, replica in enumerate(replicas):
                info: dict[str, Any] = await replica.info("replication")
                assert info["role"] == "slave"
                assert info["master_port"] == cluster.servers[cluster.master_of(2 + i)].port
                assert info["master_link_status"] == "up"
            client = connect_redis(cluster.url, cluster=True)
            try:
                for i in range(20):
                    await client.set(f"k{i}", i)  # keys on both masters
            finally:
                await client.aclose()
            for master, replica in zip(masters, replicas, strict=True):
                assert await master.execute_command("WAIT", 1, 5000) == 1
                await replica.execute_command("READONLY")
                assert await replica.dbsize() == await master.dbsize() > 0
        finally:
            for c in masters + replicas:
                await c.aclose()
    finally:
        cluster.stop()
    for server in cluster.servers:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", server.port)) != 0


async def test_live_cluster_runs_its_nodes_on_a_valkey_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LIVE_REDIS_CLUSTER")}
    env.update({"LIVE_JWT_SECRET": SECRET, "LIVE_LOG_JSON": "false", "LIVE_DRAIN_S": "0"})
    env.update({"LIVE_NODE_HEARTBEAT_S": "0.2"})
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "live.cli.main", "cluster", "--valkey-shards", "2"),
        *("--replicas", "1", "--regions", "na", "--port", "0", "--quiet"),
        *("--data-dir", str(tmp_path)),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    urls: dict[str, str] = {}
    ports: list[int] = []

    async def until_ready() -> None:
        assert proc.stdout is not None
        while line := (await proc.stdout.readline()).decode(errors="replace"):
            output.append(line)
            if m := SHARDS.match(line):
                assert m.group(1, 2) == ("2", "1")
                ports.extend(int(a.rsplit(":", 1)[1]) for a in m.group(3).split())
            elif m := NODE.match(line):
                urls[m.group(1)] = m.group(2)
            elif READY in line:
                return
        raise AssertionError(f"live cluster exited with {await proc.wait()}")

    try:
        await asyncio.wait_for(until_ready(), 60)
        assert len(ports) == 4 and set(urls) == {"origin", "edge-na"}
        async with aiohttp.ClientSession() as http:

            async def registered() -> set[str]:
                async with http.get(f"{urls['origin']}/api/nodes") as r:
                    return {n["node_id"] for n in (await r.json())["nodes"]}

            await eventually(registered, lambda ids: ids == {"origin", "edge-na"}, within=10)
            # A sale of the demo room, created on the origin and bought from on the edge:
            # room and sale keys on their shards, events through the outbox relay.
            host = {
                "Authorization": "Bearer " + AUTH.issue(user="host", role="host", rooms=["demo"])
            }
            body = {"product_id": "denim-jacket", "quantity": 5, "price_minor": 990,
                    "duration_s": 60, "per_user_limit": 2, "hold_s": 60}  # fmt: skip
            async with http.post(
                f"{urls['origin']}/api/rooms/demo/sales", json=body, headers=host
            ) as r:
                sale = await r.json()
                assert r.status == 201, sale
            token = AUTH.issue(user="v1", role="viewer", rooms=["demo"])
            viewer = {"Authorization": f"Bearer {token}", "Idempotency-Key": "key-0001"}
            path = f"/api/rooms/demo/sales/{sale['sale_id']}/reservations"
            async with http.post(urls["edge-na"] + path, json={"quantity": 2}, headers=viewer) as r:
                assert r.status == 201, await r.json()
            async with http.get(f"{urls['edge-na']}/api/rooms/demo") as r:
                state = await r.json()
                assert r.status == 200, state
            assert state["title"] == "Live cluster demo"
            assert [(s["quantity"], s["stock_left"]) for s in state["sales"]] == [(5, 3)]
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        print("".join(output)[-6000:])
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
