"""Scenario runs against a node: thresholds decide the exit code; unknown metrics are errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from live.app import RunningNode
from live.cli.main import parser
from loadtest.report import thresholds
from loadtest.scenario.spec import ScenarioError, load
from tests.conftest import SECRET


def _scenario(tmp_path: Path, node: RunningNode, valkey_url: str, rules: list[str]) -> Path:
    path = tmp_path / "show.toml"
    path.write_text(
        f"""
name = "test show"
duration_s = 2
[target]
urls = ["{node.url}"]
secret = "{SECRET}"
redis_url = "{valkey_url}"
[roles]
lurkers = 40
chatters = 5
chat_rate = 5
likers = 5
like_rate = 10
buyers = 20
[sale]
quantity = 10
per_user_limit = 1
attempts = 60
concurrency = 16
[generator]
workers = 1
drain_s = 3
[thresholds]
rules = {json.dumps(rules)}
"""
    )
    return path


async def _run(path: Path, tmp_path: Path, *extra: str) -> int:
    args = parser().parse_args(
        ["loadtest", "run", str(path), "--json", str(tmp_path / "r.json"),
         "--html", str(tmp_path / "r.html"), *extra]
    )  # fmt: skip
    code: int = await args.run(args)
    return code


async def test_short_scenario_passes_and_writes_json_and_html(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    rules = ["chat.delivery.p99 < 2000ms", "errors.rate < 0.1%", "sale.invariants == 1"]
    assert await _run(_scenario(tmp_path, node, valkey_url, rules), tmp_path) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] is True
    assert doc["chat"]["connections"]["joined"] == 50
    assert doc["sale"]["attempts"]["reserved"] == 10
    assert doc["sale"]["invariants"]["ok"]
    assert [r["passed"] for r in doc["thresholds"]] == [True, True, True]
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") >= 3
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", page)  # self-contained: no CDN
    assert "PASSED" in page


async def test_impossible_threshold_exits_non_zero(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    rules = ["chat.delivery.p99 < 0.001ms"]
    assert await _run(_scenario(tmp_path, node, valkey_url, rules), tmp_path, "--lang", "ja") == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] is False
    # The report's labels in the language --lang names (its catalogue, live/web/locales/ja.json).
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<html lang="ja">' in page
    assert "不合格" in page and "しきい値" in page and "FAILED" not in page


async def test_unknown_metric_is_an_error(
    node: RunningNode, valkey_url: str, tmp_path: Path
) -> None:
    rules = ["chat.delivery.p99 < 250ms", "chat.teleport.p99 < 1ms"]
    assert await _run(_scenario(tmp_path, node, valkey_url, rules), tmp_path) == 2
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(thresholds.ThresholdError, match="unknown metric"):
        thresholds.parse("nope.p99 < 1ms")
    with pytest.raises(thresholds.ThresholdError, match="not in"):
        thresholds.parse("errors.rate < 5ms")
    assert thresholds.parse("errors.rate < 0.1%").value == pytest.approx(0.001)
    assert thresholds.parse("chat.delivery.p99 < 0.25s").value == pytest.approx(250)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('colour = "red"\n[roles]\nlurkers = 1\n', "unknown top-level keys ['colour']; known: "),
        ("[roles]\nlurkers = 1\nviewers = 3\n", "[roles] has unknown keys ['viewers']; known: "),
        ('[target]\nurl = "x"\n[roles]\nlurkers = 1\n', "[target] has unknown keys ['url']"),
        ("target = 3\n[roles]\nlurkers = 1\n", "[target] must be a table"),
        ('[roles]\nlurkers = "many"\n', "[roles] lurkers: Input should be a valid integer"),
        ("[roles]\nbuyers = 5\n[sale]\nattempts = 10\n", "buyers need [sale] quantity"),
    ],
)
def test_scenario_files_are_refused_naming_the_key_and_its_table(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ScenarioError) as refused:
        load(path)
    assert message in str(refused.value)
