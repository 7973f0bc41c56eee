"""`[[faults]]`: an edge killed (SIGKILL) mid-show under WebRTC viewers; they fail over like the
viewer page (frames stop, the node does not answer, selection excluding it, play elsewhere), and
the document says how many were back within 5 s and what the origin's CPU did meanwhile.

WebRTC offers loopback candidates only: run in a loopback-only namespace (`scripts/loopback-only`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live.cli.main import parser
from loadtest.scenario.spec import ScenarioError, load

SCENARIO = """
name = "edge killed mid-show"
duration_s = 9
[target]
edges = ["eu", "sea"]
[[faults]]
at_s = 3
kill = "edge-eu"
[roles]
lurkers = 4
webrtc_viewers = 6
[webrtc]
join_rate = 20
[generator]
workers = 1
drain_s = 1
[thresholds]
rules = ["failover.lost == 3", "failover.back_5s == 1", "webrtc.viewers == 6"]
"""


async def test_viewers_of_a_killed_edge_are_back_within_5_s(tmp_path: Path) -> None:
    path = tmp_path / "kill.toml"
    path.write_text(SCENARIO)
    args = parser().parse_args(["loadtest", "run", str(path), "--json", str(tmp_path / "r.json")])
    assert await args.run(args) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    failover = doc["failover"]
    # Six viewers alternate between the two edges: the three on eu lose it and all come back.
    assert (failover["on_node"], failover["lost"], failover["back"]) == (3, 3, 3)
    assert failover["back_within_5s"] == 3 and failover["recovery_ms"]["max"] < 5000
    [kill] = failover["kills"]
    assert kill["kill"] == "edge-eu" and kill["origin_cpu_pct"]["5s_after"] is not None
    assert len(kill["origin_cpu_pct"]["by_second"]) == 8
    assert set(kill["nodes_cpu_pct"]) == {"python-1", "edge-eu", "edge-sea"}
    assert doc["webrtc"]["errors"] == {} and doc["webrtc"]["watching"] == 6


def test_the_documented_failover_scenario_loads() -> None:
    example = Path(__file__).parents[2] / "docs" / "examples" / "edge-failover.toml"
    s = load(example)
    assert s.edges == ["eu", "sea"] and [f.kill for f in s.faults] == ["edge-eu"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[target]\nurls = ["http://127.0.0.1:1"]\nedges = ["eu"]\n', "drop urls and regions"),
        ('[target]\nnodes = 2\nedges = ["eu"]\n', "nodes must be 1"),
        ('[target]\nedges = ["EU"]\n', "distinct regions"),
        ('[[faults]]\nat_s = 1\nkill = "python-1"\n', "holds the room"),
        ('[target]\nedges = ["eu"]\n[[faults]]\nat_s = 1\nkill = "edge-na"\n', "one of"),
        ('[target]\nedges = ["eu"]\n[[faults]]\nat_s = 99\nkill = "edge-eu"\n', "within the run"),
        ('[target]\nurls = ["http://127.0.0.1:1"]\n[[faults]]\nat_s = 1\nkill = "edge-eu"\n',
         "nodes this run starts"),
    ],
)  # fmt: skip
def test_edges_and_faults_are_checked(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("duration_s = 5\n" + body + "[roles]\nwebrtc_viewers = 1\n")
    with pytest.raises(ScenarioError, match=message):
        load(path)
