"""Real browser pages and region maps in scenario runs, against real nodes.

WebRTC offers loopback candidates only: run these in a loopback-only network namespace
(`scripts/loopback-only`, as `make test` does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live.app import RunningNode
from live.cli.main import parser
from loadtest.plan.regions import RegionError, RegionMap
from tests.conftest import SECRET, NodeFactory
from tests.support.waiting import eventually

FAST = {"node_heartbeat_s": 0.2, "node_ttl_s": 1.0, "edge_upstream_grace_s": 1.0}


async def _run(path: Path, tmp_path: Path) -> int:
    args = parser().parse_args(
        ["loadtest", "run", str(path), "--json", str(tmp_path / "r.json"),
         "--html", str(tmp_path / "r.html")]
    )  # fmt: skip
    code: int = await args.run(args)
    return code


async def test_browser_pages_measure_chat_and_video_for_thresholds(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    # Generous limits: the machine is shared; the impossible rule is what must fail.
    rules = [
        "browser.pages == 2", "browser.playing == 2", "browser.load.p99 < 30s",
        "browser.join.p99 < 30s", "browser.chat.delivery.p99 < 20s",
        "browser.chat.delivered >= 10", "browser.video.first_frame.p99 < 45s",
        "browser.video.fps > 1", "chat.missing == 0",
        "browser.chat.delivery.p50 < 0.001ms",  # impossible: must fail
    ]  # fmt: skip
    path = tmp_path / "show.toml"
    path.write_text(f"""
name = "browsers"
duration_s = 3
[target]
urls = ["{node.url}"]
secret = "{SECRET}"
redis_url = "{valkey_url}"
[roles]
lurkers = 10
chatters = 2
chat_rate = 4
browsers = 2
[browser]
join_rate = 10
[generator]
workers = 1
drain_s = 1
[thresholds]
rules = {json.dumps(rules)}
""")  # fmt: skip
    assert await _run(path, tmp_path) == 1  # the impossible rule
    doc = json.loads((tmp_path / "r.json").read_text())
    verdicts = {r["rule"]: r["passed"] for r in doc["thresholds"]}
    assert verdicts.pop("browser.chat.delivery.p50 < 0.001ms") is False
    assert all(verdicts.values()), (doc["thresholds"], doc["browser"])
    browser = doc["browser"]
    assert browser["chat"]["delivered"] > 0 and browser["chat"]["latency_ms"]["count"] > 0
    assert all(p["chat_delivered"] > 0 and p["fps"] for p in browser["per_page"])
    # The viewer page itself runs clean (a retried WHEP request under load is not its error).
    assert not {"console", "pageerror", "crash"} & set(browser["errors"]), browser["error_samples"]
    report = (tmp_path / "r.html").read_text()
    assert "browser.chat.delivery.p99" in report and "Browser pages" in report


async def test_region_map_spreads_viewers_and_reports_per_region(
    start_node: NodeFactory, valkey_url: str, tmp_path: Path
) -> None:
    origin = await start_node(node_id="lt-origin", role="all", region="na", **FAST)
    edge = await start_node(
        node_id="lt-edge-eu", role="edge", region="eu", origin_url=origin.url, **FAST
    )
    await eventually(origin.node.registry.nodes, lambda ns: len(ns) >= 2)
    rules = [
        "region.na.chat.joined > 0", "region.eu.chat.joined > 0",
        "region.eu.chat.delivery.p99 < 10s", "region.na.webrtc.viewers == 1",
        "region.eu.webrtc.viewers == 1", "region.eu.webrtc.first_frame.p99 < 30s",
        "chat.missing == 0", "region.eu.browser.pages == 1",
        "region.na.browser.chat.delivery.p99 < 20s",
        "region.eu.browser.video.first_frame.p99 < 45s",
    ]  # fmt: skip
    path = tmp_path / "regions.toml"
    path.write_text(f"""
name = "regions"
duration_s = 2
[target]
urls = ["{origin.url}"]
regions = {{na = "{origin.url}", eu = "{origin.url}"}}
weights = {{na = 1, eu = 1}}
select = true
secret = "{SECRET}"
redis_url = "{valkey_url}"
[roles]
lurkers = 16
chatters = 2
chat_rate = 4
webrtc_viewers = 2
browsers = 2
[browser]
join_rate = 10
[generator]
workers = 1
drain_s = 1
[thresholds]
rules = {json.dumps(rules)}
""")  # fmt: skip
    assert await _run(path, tmp_path) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    regions = doc["regions"]
    assert regions["eu"]["nodes"] == [edge.url] and regions["na"]["nodes"] == [origin.url]
    assert regions["na"]["chat"]["joined"] == regions["eu"]["chat"]["joined"] == 9
    assert regions["eu"]["chat"]["delivery_ms"]["count"] > 0
    assert regions["eu"]["webrtc"]["first_frame_ms"]["count"] == 1
    # The pages opened the origin with ?region= and the viewer page chose its node itself.
    assert regions["eu"]["browser"]["nodes"] == [edge.url]
    assert regions["na"]["browser"]["nodes"] == [origin.url]
    assert "region.eu.chat.delivery.p99" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[target]\nurls = ["http://127.0.0.1:9"]\nregions = {na = "http://127.0.0.1:9"}\n'
         "weights = {na = 1, mars = 2}\n[roles]\nlurkers = 1\n", "unknown regions ['mars']"),
        ("[roles]\nbrowsers = 21\n", "browsers must be 0..20"),
        ('[roles]\nbrowsers = 1\n[browser]\nexecutable = "/nonexistent/chromium"\n',
         "browsers need Chromium: '/nonexistent/chromium'"),
    ],
)  # fmt: skip
async def test_invalid_scenarios_are_refused_clearly(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nduration_s = 1\n' + body)
    assert await _run(path, tmp_path) == 2
    assert message in capsys.readouterr().err


def test_region_weights_interleave_into_slots() -> None:
    region_map = RegionMap.parse(
        {"na": "http://127.0.0.1:1", "eu": "http://127.0.0.1:2"}, {"na": 6, "eu": 2}, False
    )
    slots = region_map.pattern()
    assert sorted(slots) == ["eu", "na", "na", "na"] and slots[0] == "na" and slots[1] != "eu"
    with pytest.raises(RegionError, match="at least one region"):
        RegionMap.parse({"na": "http://127.0.0.1:1"}, {"na": 0}, False)
