"""`live loadtest media` and `live loadtest latency` through the command line, tiny and on loopback
(the suite runs in scripts/loopback-only): JSON with the expected figures comes out."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

LIVE = [sys.executable, "-m", "live.cli.main", "loadtest"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def live(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*LIVE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("workers", [0, 2])
def test_media_fanout_reaches_every_viewer_without_loss(tmp_path: Path, workers: int) -> None:
    out = tmp_path / "media.json"
    args = ["media", "--viewers", "2", "--seconds", "2", "--port", str(free_port())]
    args += ["--media-workers", str(workers)]
    done = live([*args, "--json", str(out)], tmp_path, timeout=90)

    [run] = json.loads(out.read_text())["runs"]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert json.loads(line) == run  # printed as it ran, then a table
    assert "forward" in done.stdout.split(line)[1]
    assert run["mode"] == "forward" and run["viewers"] == 2 and run["viewer_kind"] == "lean"
    assert run["lean_viewers"] == 2 and run["undecryptable"] == 0
    assert run["loss_pct_max"] == 0.0
    assert run["fps_min"] > 20
    assert run["stream_kbps"] > 500
    assert run["server_cpu_cores"] > 0 and run["viewers_per_core"] > 0
    assert run["ttff_max_ms"] >= run["ttff_median_ms"] > 0
    # with workers, each serves one of the two viewers
    assert run["media_workers"] == workers
    assert run["worker_viewers"] == ([1, 1] if workers else [])


def test_media_past_capacity_reports_admitted_and_refused_viewers(tmp_path: Path) -> None:
    # A batch of 10 offers against a server that sets up at most 8 viewers at once: it refuses
    # what it cannot take yet (503 full, reason "setup"), the refused viewers offer again. (Lag
    # and CPU bounds off: a busy test machine must not refuse every viewer.)
    out = tmp_path / "media.json"
    args = ["media", "--viewers", "10", "--batch", "10", "--seconds", "1", "--admission"]
    args += ["--admit-max-cpu", "0", "--admit-max-lag-ms", "0"]
    live([*args, "--port", str(free_port()), "--json", str(out)], tmp_path, timeout=120)

    [run] = json.loads(out.read_text())["runs"]
    assert run["admission"] is True and run["viewers"] == 10 and run["admit_max_cpu"] == 0
    assert run["admitted"] + run["refused"] == 10 and run["admitted"] >= 1
    assert run["lean_viewers"] == run["admitted"]
    assert run["refusals_with_retries"] == sum(run["server_refusals"].values())
    assert sum(run["refused_reasons"].values()) == run["refused"]
    assert run["fps_min"] <= run["fps_p5"] <= run["fps_median"]
    assert set(run["server_loads"]) == {"node"} and "lag_s" in run["server_loads"]["node"]


def test_media_refuses_an_unknown_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [*LIVE, "media", "--modes", "forward,nope"], cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "nope" in done.stderr


def test_latency_through_an_edge_yields_percentiles(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    live(["latency", "--viewers", "1", "--seconds", "1", "--json", str(out)], tmp_path, 90)

    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "latency" and doc["viewers_per_node"] == 1
    for side in ("origin", "edge"):
        figures = doc[side]
        assert figures["frames"] > 10
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] < 1000
    assert all(math.isfinite(doc[k]) for k in ("edge_hop_p50_ms", "edge_hop_p95_ms"))
    assert doc["origin_egress_kbps"] > 0
    assert doc["origin_viewer_sessions"] == 2  # one viewer, one edge upstream
