"""Admission by measured load (media.admission): a node whose event loop lags refuses viewers with
503 `full` and its reason, says so on /metrics and in the registry, and admits again once the load
has gone; the decision rules (hysteresis, setups in flight, projected headroom) on explicit
samples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from core.auth import TokenAuthority
from live.http.media import MEDIA
from loadtest.report.scrape import parse
from media.admission import AdmissionLimits, LoadGovernor, Sample
from media.config import MediaSettings
from tests.conftest import NodeFactory
from tests.support.peers import Viewer, offer, open_peer_connections
from tests.support.waiting import eventually

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def quiet(**values: float) -> Sample:
    """0.1 s of an idle process, with `values` changed."""
    fields: dict[str, float] = {"wall_s": 0.1, "lag_s": 0.001, "cpu_s": 0.01, "wait_s": 0.0}
    fields.update(values)
    return Sample(
        wall_s=fields["wall_s"],
        lag_s=fields["lag_s"],
        cpu_s=fields["cpu_s"],
        wait_s=fields["wait_s"],
        skips=int(values.get("skips", 0)),
        queued=0,
    )


def governor(**limits: float) -> LoadGovernor:
    return LoadGovernor(AdmissionLimits(**limits), lambda: (0, 0, 0, 0))  # type: ignore[arg-type]


def test_lag_refuses_until_well_below_its_bound() -> None:
    g = governor(max_lag_s=0.05)
    for _ in range(20):
        assert g.observe(quiet(), viewers=0, setups=0).admitting
    # Two late ticks in twenty are past the 95th percentile: one is not.
    load = g.observe(quiet(lag_s=0.2), 0, 0)
    assert load.admitting
    load = g.observe(quiet(lag_s=0.2), 0, 0)
    assert not load.admitting and load.reason == "lag" and load.lag_s == pytest.approx(0.2)
    assert g.refusal(setups=0) == "lag" and g.refusals["lag"] == 1
    # Back under the bound but not under half of it: still refusing (no flapping).
    for _ in range(20):
        load = g.observe(quiet(lag_s=0.04), 0, 0)
    assert not load.admitting and load.reason == "lag"
    for _ in range(20):
        load = g.observe(quiet(lag_s=0.01), 0, 0)
    assert load.admitting and load.reason is None and g.refusal(setups=0) is None


def test_a_busy_core_refuses_counting_the_wait_for_it() -> None:
    g = governor(max_cpu=0.85)
    # Its own CPU is 50 %, but it waited 40 % of the time for the core: the core is full.
    for _ in range(20):
        load = g.observe(quiet(cpu_s=0.05, wait_s=0.04), 0, 0)
    assert not load.admitting and load.reason == "cpu"
    assert load.cpu == pytest.approx(0.5) and load.wait == pytest.approx(0.4)
    for _ in range(20):
        load = g.observe(quiet(cpu_s=0.08), 0, 0)  # 0.8: under the bound, not under 0.75
    assert not load.admitting
    for _ in range(20):
        load = g.observe(quiet(cpu_s=0.07), 0, 0)
    assert load.admitting


def test_a_skip_refuses_for_the_window() -> None:
    g = governor(window_s=1.0)
    load = g.observe(quiet(skips=1), 0, 0)
    assert not load.admitting and load.reason == "backlog" and load.skips_per_s > 0
    for _ in range(9):
        assert not g.observe(quiet(), 0, 0).admitting
    assert g.observe(quiet(), 0, 0).admitting  # the skip left the window


def test_offers_in_setup_and_the_projected_cost_bound_a_burst() -> None:
    g = governor(max_cpu=0.85, max_setups=4)
    for _ in range(20):
        load = g.observe(quiet(cpu_s=0.06), viewers=100, setups=0)
    assert load.admitting and load.cpu_per_viewer == pytest.approx(0.006)
    assert g.refusal(setups=3) is None
    assert g.refusal(setups=4) == "setup"
    # 0.6 busy + 0.006 each: the 41st viewer in setup would pass 0.85.
    unbounded = governor(max_cpu=0.85, max_setups=0)
    for _ in range(20):
        unbounded.observe(quiet(cpu_s=0.06), viewers=100, setups=0)
    assert unbounded.refusal(setups=40) is None
    assert unbounded.refusal(setups=41) == "headroom"
    # Viewers connected too recently for the CPU to show their cost count as well.
    assert unbounded.refusal(setups=10, fresh=31) == "headroom"
    assert unbounded.refusals == {"headroom": 2}


def test_the_ceiling_follows_the_admission_policy() -> None:
    # Explicit: the suite's environment says count (tests/conftest.py).
    assert MediaSettings(max_viewers="auto", workers=0, admission="measured").viewer_limit == 500
    assert MediaSettings(max_viewers="auto", workers=2, admission="measured").viewer_limit == 1000
    assert MediaSettings(max_viewers="auto", workers=2, admission="count").viewer_limit == 600
    config = MediaSettings(
        admission="measured", admit_max_lag_ms=20, admit_max_cpu=0.5, admit_max_setups=3
    ).config()
    assert (config.admission, config.admit_max_lag_s, config.admit_max_cpu) == (True, 0.02, 0.5)
    assert config.admit_max_setups == 3


class LoopHog:
    """Blocks the event loop for `block_s` every `every_s`: a node with more work than its core."""

    def __init__(self, block_s: float = 0.12, every_s: float = 0.03) -> None:
        self._block_s, self._every_s = block_s, every_s
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self._every_s, self._hog)

    def _hog(self) -> None:
        time.sleep(self._block_s)  # really busy: nothing else runs on the loop meanwhile
        self.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def samples(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(f"{url}/metrics") as r:
        return {key: value for key, (_, value) in parse(await r.text()).items()}


async def test_a_lagging_node_refuses_viewers_and_admits_again_when_the_load_goes(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    other = await start_node()  # the count only: the loop's lag does not concern it
    running = await start_node(
        media_admission="measured", media_admit_max_lag_ms=50, media_admit_max_cpu=0
    )
    await running.node.rooms.create(title="Test room", owner="host", room_id="r1")
    other_id = other.node.settings.server.node_id
    await eventually(lambda: running.node.registry.get(other_id), within=10)
    media = running.runner.app[MEDIA]
    registry = running.node.registry
    url = f"{running.url}/whep/r1"
    viewer, later = Viewer(), Viewer()

    async def whep(peer: Viewer, user: str) -> tuple[int, dict[str, str], object]:
        auth = "Bearer " + tokens.issue(user=user, role="viewer", rooms=["r1"])
        body = (await offer(peer.pc)).encode()
        async with http.post(url, data=body, headers={**SDP, "Authorization": auth}) as r:
            payload = await (r.json() if r.content_type == "application/json" else r.text())
            return r.status, dict(r.headers), payload

    hog = LoopHog()
    try:
        metrics = await samples(http, running.url)
        assert metrics['live_media_admission_admitting{process="node"}'] == 1
        assert metrics["live_media_admitting"] == 1
        assert metrics["live_media_admission_ceiling"] == 500

        hog.start()
        await eventually(lambda: not media.admitting, within=10)
        status, headers, body = await whep(viewer, "v1")
        assert status == 503 and headers["Retry-After"] == "2", body
        assert isinstance(body, dict) and body["error"] == "full" and body["reason"] == "lag"
        # It names a node that takes viewers (as selection would choose for its region).
        assert (body["node_id"], body["url"]) == (other_id, other.url)
        assert media.viewer_total == 0  # nothing set up for the refused offer
        metrics = await samples(http, running.url)
        assert metrics['live_media_admission_refusals_total{reason="lag"}'] == 1
        assert metrics['live_whep_refused_total{reason="full"}'] == 1
        assert metrics['live_media_admission_admitting{process="node"}'] == 0
        assert metrics["live_media_admitting"] == 0
        assert metrics['live_media_admission_loop_lag_seconds{process="node"}'] > 0.05
        # Selection stops offering it: its heartbeat says it refuses.
        await registry.beat()
        record = await registry.get(registry.node_id)
        assert record is not None and not record.admitting and not record.accepts_viewers

        hog.stop()
        await eventually(lambda: media.admitting, within=10)
        status, _, body = await whep(later, "v2")
        assert status == 201, body
        await registry.beat()
        record = await registry.get(registry.node_id)
        assert record is not None and record.admitting and record.accepts_viewers
        metrics = await samples(http, running.url)
        assert metrics['live_media_admission_admitting{process="node"}'] == 1
        assert metrics['live_media_admission_viewers{process="node"}'] >= 0
    finally:
        hog.stop()
        for peer in (viewer, later):
            await peer.close()
        await media.shutdown()
    assert open_peer_connections() == 0


async def test_each_worker_measures_itself_and_a_refusing_one_is_passed_over(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    # One viewer session in setup at a time per process: offers whose answers are never used stay
    # in setup (until the connect timeout), so each worker refuses the next one it is given. Lag
    # and CPU bounds off: a busy test machine must not decide this test.
    running = await start_node(
        media_workers=2,
        media_admission="measured",
        media_admit_max_setups=1,
        media_admit_max_lag_ms=0,
        media_admit_max_cpu=0,
    )
    await running.node.rooms.create(title="Test room", owner="host", room_id="r1")
    media = running.runner.app[MEDIA]
    assert media.workers is not None
    url = f"{running.url}/whep/r1"
    peers = [Viewer(audio=False) for _ in range(3)]

    async def whep(peer: Viewer, user: str) -> tuple[int, object]:
        auth = "Bearer " + tokens.issue(user=user, role="viewer", rooms=["r1"])
        body = (await offer(peer.pc)).encode()
        async with http.post(url, data=body, headers={**SDP, "Authorization": auth}) as r:
            return r.status, await (r.json() if r.content_type == "application/json" else r.text())

    try:
        # Every worker reports its own measured load, shown per process on /metrics.
        metrics = await eventually(
            lambda: samples(http, running.url),
            lambda m: all(
                f'live_media_admission_admitting{{process="worker-{i}"}}' in m for i in (0, 1)
            ),
            within=15,
        )
        assert metrics['live_media_admission_admitting{process="worker-0"}'] == 1
        assert metrics['live_media_admission_admitting{process="node"}'] == 1
        assert (await whep(peers[0], "v0"))[0] == 201
        assert (await whep(peers[1], "v1"))[0] == 201  # on the other worker
        assert [w.viewers for w in media.stats().workers] == [1, 1]
        # Both workers have a session in setup: the first refuses, the node passes it over, the
        # second refuses too: the node is full, with the workers' reason.
        status, body = await whep(peers[2], "v2")
        assert status == 503, body
        assert isinstance(body, dict) and body["error"] == "full" and body["reason"] == "setup"
        assert media.viewer_total == 2
        metrics = await samples(http, running.url)
        assert metrics['live_media_admission_refusals_total{reason="setup"}'] == 1
        assert metrics['live_media_admission_setups{process="worker-0"}'] in (0, 1)
    finally:
        for peer in peers:
            await peer.close()
        await media.shutdown()
    assert open_peer_connections() == 0
