"""`live loadtest fsync`, tiny: both policies applied on fresh servers, figures and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from live.cli.main import parser


async def test_tiny_fsync_bench_compares_both_policies(tmp_path: Path) -> None:
    out = tmp_path / "fsync.json"
    args = parser().parse_args(
        [
            "loadtest", "fsync", "--calls", "200", "--clients", "4", "--pipeline", "4",
            "--dir", str(tmp_path / "servers"), "--json", str(out),
        ]
    )  # fmt: skip
    assert await args.run(args) == 0

    doc = json.loads(out.read_text())
    results = {r["policy"]: r for r in doc["results"]}
    assert set(results) == {"always", "everysec"}
    for policy, r in results.items():
        assert r["applied"] == policy  # the server really ran with it
        assert r["batched"]["calls_per_s"] > 0 and r["one_by_one"]["calls_per_s"] > 0
    assert results["always"]["power_loss_holds_at_risk"] == 0
    assert results["everysec"]["power_loss_holds_at_risk"] > 0
