"""The chat benchmark driver against a real node on loopback: every viewer gets every message."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from live.app import RunningNode
from live.cli.main import parser
from loadtest.plan.safety import UnsafeTarget, check_targets
from loadtest.report.histogram import Histogram
from tests.conftest import SECRET


async def test_driver_delivers_every_message_to_every_viewer(
    node: RunningNode, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    args = parser().parse_args(
        [
            "loadtest", "chat", "--target", node.url, "--secret", SECRET,
            "--viewers", "50", "--rate", "10", "--duration", "2", "--warmup", "0.5",
            "--drain", "10", "--workers", "2", "--json", str(out),
        ]
    )  # fmt: skip
    assert await args.run(args) == 0

    doc = json.loads(out.read_text())
    [run] = doc["runs"]
    assert run["connections"]["joined"] == 50
    assert run["connections"]["held"] == 50
    assert run["messages"]["acked_ok"] == 20 == run["messages"]["scheduled"]
    deliveries = run["deliveries"]
    assert deliveries["expected"] == 20 * 50
    assert deliveries["delivered"] == deliveries["expected"]
    assert deliveries["missing"] == 0
    assert deliveries["duplicates"] == 0
    assert run["latency_ms"]["count"] == 20 * 50
    assert run["errors"] == {}


async def test_remote_target_is_refused_without_allow_remote(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = parser().parse_args(
        ["loadtest", "chat", "--target", "http://192.0.2.10:8080", "--json", str(out)]
    )
    assert await args.run(args) == 2
    assert not out.exists()
    with pytest.raises(UnsafeTarget):
        check_targets(["http://192.0.2.10"], allow_remote=False)
    check_targets(["http://127.0.0.1:1", "http://[::1]:2", "http://localhost"], False)


def test_histograms_merged_across_workers_match_one_recorder() -> None:
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(9, 1.5)) for _ in range(20_000)]
    whole, parts = Histogram(), [Histogram() for _ in range(3)]
    for i, value in enumerate(samples):
        whole.record(value)
        parts[i % 3].record(value)
    merged = Histogram()
    for part in parts:
        merged.merge(Histogram.from_wire(json.loads(json.dumps(part.to_wire()))))
    assert merged.summary_ms() == whole.summary_ms()
    exact = sorted(samples)[int(len(samples) * 0.99) - 1]
    assert merged.percentile(99) == pytest.approx(exact, rel=0.01)
