"""`live cluster --wan` (root): nodes in network namespaces answer from the host, the RTT between
regions is the distance table's, and no namespace outlives the cluster, stopped or killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from devtools import wan as wan_net
from edge.config import EdgeSettings
from edge.selection import RegionDistances
from tests.conftest import SECRET
from tests.support.waiting import eventually

needs_root = pytest.mark.skipif(
    wan_net.available() is not None, reason=f"live cluster --wan {wan_net.available()}"
)

NODE = re.compile(r"^\s+(?:origin|edge)\s+(\S+)\s+region \S+\s+(http://\S+)")
DELAY = re.compile(r"^\s+(\S+)\s+<->\s+(\S+)\s+([\d.]+) ms")
READY = "Ctrl-C stops everything."
# Connects from inside a namespace; the fastest of a few handshakes is one RTT.
PROBE = """
import socket, sys, time
best = 1e9
for _ in range(5):
    with socket.socket() as s:
        t = time.monotonic()
        s.connect((sys.argv[1], int(sys.argv[2])))
        best = min(best, time.monotonic() - t)
print(best * 1000)
"""


@dataclass
class WanCluster:
    proc: asyncio.subprocess.Process
    urls: dict[str, str] = field(default_factory=dict)  # node id -> URL
    one_way_ms: dict[frozenset[str], float] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{wan_net.PREFIX}{self.proc.pid}"

    def left_behind(self) -> list[str]:
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        return wan_net.namespaces(self.tag) + ([f"{self.tag}h"] if f"{self.tag}h:" in links else [])


async def _read_until_ready(c: WanCluster) -> None:
    assert c.proc.stdout is not None
    while line := (await c.proc.stdout.readline()).decode(errors="replace"):
        c.output.append(line)
        if m := NODE.match(line):
            c.urls[m.group(1)] = m.group(2)
        elif m := DELAY.match(line):
            c.one_way_ms[frozenset(m.group(1, 2))] = float(m.group(3))
        elif READY in line:
            return
    raise AssertionError(f"cluster exited with {await c.proc.wait()}:\n{''.join(c.output)}")


async def _drain(c: WanCluster) -> None:
    assert c.proc.stdout is not None
    while line := await c.proc.stdout.readline():
        c.output.append(line.decode(errors="replace"))


@contextlib.asynccontextmanager
async def wan_cluster(tmp_path: Path) -> AsyncIterator[WanCluster]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update({"LIVE_JWT_SECRET": SECRET, "LIVE_LOG_JSON": "false", "LIVE_DRAIN_S": "0"})
    env.pop("LIVE_REGION_DISTANCES", None)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "live.cli.main", "cluster", "--wan", "--regions", "na,eu"),
        *("--quiet", "--data-dir", str(tmp_path)),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    c = WanCluster(proc)
    pump: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(_read_until_ready(c), 60)
        pump = asyncio.ensure_future(_drain(c))
        yield c
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if pump is not None:
            await asyncio.wait_for(pump, 10)
        print("".join(c.output)[-6000:])
        # Whatever the test did, the reaper must have left nothing behind.
        await eventually(c.left_behind, lambda left: not left, within=15)


async def rtt_ms(netns: str, address: str, port: int) -> float:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", PROBE, address, str(port)),
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=wan_net.netns_entry(netns),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    return float(out)


def test_one_way_delay_is_half_the_distance() -> None:
    table = RegionDistances({"na": {"eu": 90.0}})
    nodes = {"origin": "na", "edge-na": "na", "edge-eu": "eu", "edge-x": "x"}
    delays = wan_net.one_way_delays(nodes, table)
    assert delays["origin", "edge-eu"] == delays["edge-eu", "edge-na"] == 45.0
    assert ("origin", "edge-na") not in delays  # same region: no delay
    assert delays["edge-x", "origin"] == wan_net.UNNAMED_RTT_MS / 2


@needs_root
async def test_wan_cluster_answers_from_the_host_with_delays_between_regions(
    tmp_path: Path,
) -> None:
    async with wan_cluster(tmp_path) as c:
        assert set(c.urls) == {"origin", "edge-na", "edge-eu"}
        assert sorted(wan_net.namespaces(c.tag)) == sorted(
            f"{c.tag}-{n}" for n in ("origin", "edge-na", "edge-eu")
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for node_id, url in c.urls.items():
                assert url.startswith("http://10.77.")
                async with http.get(f"{url}/healthz") as r:
                    assert r.status == 200 and (await r.json())["node"] == node_id

        origin = re.match(r"http://([\d.]+):(\d+)", c.urls["origin"])
        assert origin is not None
        address, port = origin.group(1), int(origin.group(2))
        expected = 2 * c.one_way_ms[frozenset({"edge-eu", "origin"})]
        # The table (Settings' default) reads as RTTs; each direction carries half.
        assert expected == RegionDistances(EdgeSettings().region_distances).distance("na", "eu")
        far = await rtt_ms(f"{c.tag}-edge-eu", address, port)
        near = await rtt_ms(f"{c.tag}-edge-na", address, port)
        assert expected <= far < expected + 25, (far, expected)
        assert near < 10, near

        began = time.monotonic()
        c.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(c.proc.wait(), 30) == 0
        assert time.monotonic() - began < 30
        assert c.left_behind() == []


@needs_root
async def test_killed_wan_cluster_leaves_no_namespace(tmp_path: Path) -> None:
    async with wan_cluster(tmp_path) as c:
        assert wan_net.namespaces(c.tag)
        c.proc.kill()  # no chance to clean up: the reaper does
        await c.proc.wait()
        await eventually(c.left_behind, lambda left: not left, within=15)
