"""Scenario runs end to end: open arrivals with WebRTC viewers, Ctrl-C, the report in Chromium.

WebRTC offers loopback candidates only: run these in a loopback-only network namespace
(`scripts/loopback-only`, as `make test` does).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from playwright.async_api import Browser

from live.app import RunningNode
from live.cli.main import parser
from tests.conftest import SECRET
from tests.support.browser import browser  # noqa: F401  (the fixture)


def _write(tmp_path: Path, node: RunningNode, valkey_url: str, body: str) -> Path:
    path = tmp_path / "show.toml"
    path.write_text(
        body
        + f"""
[target]
urls = ["{node.url}"]
secret = "{SECRET}"
redis_url = "{valkey_url}"
[generator]
workers = 1
drain_s = 2
"""
    )
    return path


async def _run(path: Path, tmp_path: Path) -> int:
    args = parser().parse_args(
        ["loadtest", "run", str(path), "--json", str(tmp_path / "r.json"),
         "--html", str(tmp_path / "r.html")]
    )  # fmt: skip
    code: int = await args.run(args)
    return code


async def test_open_arrivals_with_webrtc_viewers_pass_their_thresholds(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    rules = [
        "webrtc.viewers == 3", "webrtc.first_frame.p99 < 5s", "webrtc.loss < 5%",
        "webrtc.fps > 10", "chat.missing == 0", "chat.arrived >= 30", "likes.delay.p99 < 2s",
        "likes.unconfirmed == 0", "errors.rate < 1%",
    ]  # fmt: skip
    path = _write(tmp_path, node, valkey_url, f"""
name = "open crowd with webrtc"
duration_s = 3
[arrival]
model = "open"
steps = [[0, 15], [1, 30]]
[roles]
lurkers = 60
chatters = 3
chat_rate = 4
likers = 2
like_rate = 10
webrtc_viewers = 3
[webrtc]
join_rate = 10
[thresholds]
rules = {json.dumps(rules)}
""")  # fmt: skip
    assert await _run(path, tmp_path) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] and not doc["partial"]
    arrivals = doc["chat"]["arrivals"]
    assert arrivals["model"] == "open" and sum(arrivals["joins_per_s"][1:]) > 0
    assert doc["webrtc"]["frames"] > 0 and doc["webrtc"]["bitrate_kbps"] > 0
    totals = doc["server_metrics"]["totals"]
    assert totals["live_chat_messages_total"] >= 12 and totals["live_likes_total"] >= 1


async def test_webrtc_viewers_on_both_of_two_started_nodes_all_get_video(tmp_path: Path) -> None:
    # `[target] nodes = 2`: the publisher sends to the first node and viewers (and browser pages)
    # alternate between the two; the second node pulls the room from the first (its source).
    # It gave two of four viewers no first frame when nodes did not relay rooms to each other.
    path = tmp_path / "two.toml"
    path.write_text("""
name = "two nodes"
duration_s = 2
[target]
nodes = 2
[roles]
lurkers = 2
webrtc_viewers = 4
browsers = 2
[webrtc]
join_rate = 20
[generator]
workers = 1
drain_s = 1
[thresholds]
rules = ["webrtc.viewers == 4"]
""")  # fmt: skip
    assert await _run(path, tmp_path) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    pages = doc["browser"]["per_page"]
    assert len({p["node"] for p in pages}) == 2  # one page on each node
    assert all(p["frames"] > 0 for p in pages), pages
    rtc = doc["webrtc"]
    assert rtc["errors"] == {} and rtc["watching"] == 4
    assert rtc["first_frame_ms"]["count"] == 4 and rtc["frames"] > 0
    totals = doc["server_metrics"]["totals"]
    assert totals["live_edge_upstream_connects_total"] >= 1


async def test_ctrl_c_writes_a_partial_report_and_exits_130(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, node, valkey_url, """
name = "interrupted"
duration_s = 60
[roles]
lurkers = 30
chatters = 2
chat_rate = 4
[thresholds]
rules = ["chat.delivery.p99 < 1s"]
""")  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "live.cli.main", "loadtest", "run", str(path),
        "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            for _ in range(1000):
                line = (await proc.stdout.readline()).decode()
                seen.append(line)
                assert line, "".join(seen)
                if "[chat]" in line and " sent " in line and " sent 0 " not in line:
                    break  # the run is under way
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = "".join(seen) + rest.decode()
    assert proc.returncode == 130, out
    assert "PARTIAL" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["partial"] is True and doc["passed"] is False
    assert "interrupted" in doc["stopped"]
    assert doc["chat"]["messages"]["sent"] > 0
    assert "partial" in (tmp_path / "r.html").read_text()


async def test_report_opens_in_chromium_and_shows_its_charts(
    node: RunningNode,
    valkey_url: str,
    tmp_path: Path,
    browser: Browser,  # noqa: F811
) -> None:
    path = _write(tmp_path, node, valkey_url, """
name = "report"
duration_s = 2
[roles]
lurkers = 20
chatters = 2
chat_rate = 4
buyers = 10
[sale]
quantity = 5
attempts = 40
rate = 20
[thresholds]
rules = ["chat.missing == 0", "sale.invariants == 1", "sale.sell_through < 2s"]
""")  # fmt: skip
    assert await _run(path, tmp_path) == 0
    page = await browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto((tmp_path / "r.html").as_uri())
    charts = page.locator("svg.chart")
    assert await charts.count() >= 5
    for i in range(await charts.count()):
        chart = charts.nth(i)
        assert await chart.is_visible()
        box = await chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100
        points = await chart.locator("polyline").first.get_attribute("points")
        assert points and len(points.split()) >= 2
    assert await page.locator("h1").inner_text() == "report: PASSED"
    assert "live_chat_messages_total" in await page.content()
    assert problems == []
