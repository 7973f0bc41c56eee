"""`live loadtest scale` through the command line, tiny and on loopback (the suite runs in
scripts/loopback-only): every part's JSON holds its figures and they add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCALE = [sys.executable, "-m", "live.cli.main", "loadtest", "scale"]


def scale(args: list[str], tmp_path: Path, timeout: float) -> dict[str, Any]:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [*SCALE, *args, "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pinned with taskset" in done.stdout  # the pinning is printed
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


@pytest.mark.timeout(300)  # the suite's 120 s is too short when the machine is shared
def test_media_part_every_viewer_gets_frames_from_every_node_count(tmp_path: Path) -> None:
    doc = scale(
        ["--parts", "media", "--nodes", "1", "2", "--rooms", "2", "--viewers-per-room", "2",
         "--seconds", "2", "--results", str(tmp_path / "results")],
        tmp_path, timeout=300,
    )  # fmt: skip
    media = doc["media"]
    assert media["ok"] is True
    assert doc["pinning"]["server_cpus"] != doc["pinning"]["client_cpus"]
    one, two = media["runs"]
    assert (one["nodes"], two["nodes"]) == (1, 2)
    for run in (one, two):
        assert run["watching"] == run["viewers"] == 4
        assert run["fps_min"] > 0  # every viewer got frames in the measured window
        assert run["errors"] == {}
        assert sum(p["local_viewers"] for p in run["per_node"]) == 4
        assert sum(p["publishes_rooms"] for p in run["per_node"]) == 2
        for node in run["per_node"]:
            assert node["egress_mbps"] > 0 and node["ingress_mbps"] > 0
            assert node["cpu_pct"] > 0
            assert node["idle_cpu_pct"] is not None and node["published_cpu_pct"] is not None
    # One node: no relay. Two: each node publishes one room and pulls the other's, so each
    # serves its two local viewers and the other node's upstream.
    assert one["per_node"][0]["upstreams"] == 0
    assert [p["upstreams"] for p in two["per_node"]] == [1, 1]
    assert [p["viewer_sessions"] for p in two["per_node"]] == [3, 3]
    [relay] = media["relay"]
    assert relay["nodes"] == 2 and relay["relays"] == 2


@pytest.mark.timeout(300)
def test_chat_and_sale_parts_deliver_everything_and_keep_the_books(tmp_path: Path) -> None:
    doc = scale(
        ["--parts", "chat", "sale", "--nodes", "1", "2", "--seconds", "1",
         "--chat-viewers", "20", "--chat-rate", "5", "10", "--sales", "3", "--sale-attempts", "300",
         "--sale-quantity", "50", "--sale-users", "50", "--sale-concurrency", "16"],
        tmp_path, timeout=400,
    )  # fmt: skip
    assert doc["ok"] is True
    rows = doc["chat"]["rows"]
    assert [(r["nodes"], r["rate"]) for r in rows] == [(1, 5), (2, 5), (1, 10), (2, 10)]
    for r in rows:
        assert r["held"] == 20
        assert r["expected"] == r["rate"] * 1 * 20  # every message to every member
        assert r["delivered"] == r["expected"] and r["missing"] == 0
        assert r["deliveries_per_s"] > 0 and r["latency_ms"]["count"] == r["expected"]
        assert len(r["node_cpu_pct"]) == r["nodes"]
    cost = doc["chat"]["node_cost"]
    assert [(e["nodes"], e["rate"]) for e in cost["per_added_node"]] == [(2, 5), (2, 10)]
    assert "ms_per_message_per_node" in cost and "fixed_cpu_pct_per_node" in cost

    runs = {(r["shards"], r["sales"]): r for r in doc["sale"]["runs"]}
    assert set(runs) == {(1, 1), (1, 3), (3, 1), (3, 3)}
    for (_, sales), run in runs.items():
        assert run["invariants_ok"] is True
        assert run["units_reserved"] == 50 * sales  # each sale sells out, never over
        assert run["attempts_per_s"] > 0
    # One sale lives in one slot: one shard. Three sales were placed on the three shards.
    assert len(runs[(3, 1)]["shards_used"]) == 1
    assert runs[(3, 3)]["shards_used"] == [0, 1, 2]
    assert set(runs[(3, 3)]["valkey_cpu_pct"]) == {"valkey-0", "valkey-1", "valkey-2"}
    assert set(runs[(1, 3)]["valkey_cpu_pct"]) == {"valkey"}
