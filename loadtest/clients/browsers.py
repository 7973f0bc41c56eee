"""Real browsers in a scenario: a few headless Chromium pages on the real viewer page.

One Chromium (Playwright) with one context per page opens `/rooms/{room}#token=...` of the page's
target node (with `?region=R` when the region map asks the selection API, so the page chooses its
node itself). The viewer page is not changed: an init script, run before the page's own scripts,
keeps the page's RTCPeerConnections, watches the chat list and the status pill, and notes when
the first video frame is presented. Measured per page: load (navigation start to `load`), join
(to the chat's "connected"), delivery of the scenario's chatters' messages (`lt:<seq>:<sent_us>`
rendered in the list), first frame (navigation start to the first presented frame) and decoded
frames per second from `getStats()`, plus page errors by kind.

Chromium runs with the flags of the project's browser tests (`--allow-loopback-in-peer-connection`
among them); unless remote targets are allowed, any request a page makes outside loopback is
refused and counted as a `blocked_remote` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.auth import TokenAuthority
from loadtest.plan.regions import Placement
from loadtest.plan.safety import is_loopback
from loadtest.report.display import Monitor, Progress
from loadtest.report.histogram import Histogram

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

MAX_BROWSERS = 20
LAUNCH_TIMEOUT_S = 30.0
PAGE_TIMEOUT_S = 30.0  # load, then join, each (a busy 2-core machine needs the slack)
FIRST_FRAME_TIMEOUT_S = 15.0
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    # Media permission granted (fake devices): without it Chromium hides its host candidates
    # behind mDNS names the server cannot resolve, and WHEP never connects.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Every page is a viewer in the foreground: no background priority (Chromium renices
    # renderers it deems backgrounded, which starves them on a busy machine), no throttled timers.
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-background-timer-throttling",
    "--autoplay-policy=no-user-gesture-required",
]

# Runs in every page before its own scripts. Times: `performance.now()` (ms since navigation
# start) for the page's own milestones, wall-clock microseconds for chat delivery.
_INIT = r"""
(() => {
  const lt = { pcs: [], chat: [], joinedAt: null, joinedWallUs: null, firstFrameAt: null };
  Object.defineProperty(window, "__lt", { value: lt });
  // The wall clock the senders use (time.time()); performance.timeOrigin can stand seconds
  // away from it in a busy Chromium.
  const wallUs = () => Date.now() * 1000;
  // The page's peer connections, noted when they make their offer (the class is left alone).
  const proto = window.RTCPeerConnection && window.RTCPeerConnection.prototype;
  if (proto) {
    const createOffer = proto.createOffer;
    proto.createOffer = function (...args) {
      if (!lt.pcs.includes(this)) lt.pcs.push(this);
      return createOffer.apply(this, args);
    };
  }
  const watched = new WeakSet();
  function watchVideo(video) {
    if (watched.has(video) || !video.requestVideoFrameCallback) return;
    watched.add(video);
    video.requestVideoFrameCallback(() => {
      if (lt.firstFrameAt === null) lt.firstFrameAt = performance.now();
    });
  }
  function start() {
    const messages = document.getElementById("messages");
    const status = document.getElementById("status");
    if (messages) {
      new MutationObserver((records) => {
        const at = wallUs();
        for (const record of records) {
          for (const node of record.addedNodes) {
            const text = node.querySelector && node.querySelector(".text");
            const m = text && /^lt:(\d+):(\d+)$/.exec(text.textContent);
            if (m) lt.chat.push([Number(m[1]), Number(m[2]), at]);
          }
        }
      }).observe(messages, { childList: true });
    }
    if (status) {
      const check = () => {
        if (lt.joinedAt === null && status.classList.contains("live")) {
          lt.joinedAt = performance.now();
          lt.joinedWallUs = wallUs();
        }
      };
      new MutationObserver(check).observe(status, { attributes: true, childList: true });
      check();
    }
    const videos = () => document.querySelectorAll("video").forEach(watchVideo);
    new MutationObserver(videos).observe(document.body, { childList: true, subtree: true });
    videos();
  }
  document.addEventListener("DOMContentLoaded", start);
  lt.stats = async () => {
    let frames = 0, dropped = 0;
    for (const pc of lt.pcs) {
      if (pc.connectionState === "closed") continue;
      (await pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          frames += s.framesDecoded || 0;
          dropped += s.framesDropped || 0;
        }
      });
    }
    return { t: performance.now(), frames, dropped };
  };
})();
"""


class BrowserUnavailable(ValueError):
    """Chromium or Playwright is missing: browsers cannot run."""


def default_executable() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


def check_available(executable: str) -> None:
    """Raise with what to do when Playwright or the Chromium at `executable` is missing."""
    if importlib.util.find_spec("playwright") is None:
        raise BrowserUnavailable(
            "browsers need Playwright (pip install playwright); none is installed"
        )
    path = Path(executable)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BrowserUnavailable(
            f"browsers need Chromium: {executable!r} is not an executable file; install chromium "
            "or set [browser] executable = '/path/to/chromium'"
        )


@dataclass(frozen=True, slots=True)
class BrowserPlan:
    pages: int
    room: str
    secret: str
    placement: Placement
    executable: str
    live: bool  # the room is live: every page should play video
    allow_remote: bool = False
    join_rate: float = 5.0  # pages opened per second
    client_cpus: tuple[int, ...] = ()  # Chromium's CPUs (inherited from its launcher)
    run_tag: str = "lt"


@dataclass
class _Page:
    index: int
    region: str
    page: Page | None = None
    load_ms: float | None = None
    join_ms: float | None = None
    node: str | None = None
    stats0: dict[str, float] | None = None
    closing: bool = False


async def run_pages(
    plan: BrowserPlan,
    hold: Callable[[], Awaitable[None]],
    *,
    ready: asyncio.Event | None = None,
    label: str = "browser",
    progress: Progress = print,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Open the pages, set `ready`, keep them while `hold()` runs (the other drivers), then
    measure them."""
    from playwright.async_api import Error as PlaywrightError

    errors: Counter[str] = Counter()
    samples: list[str] = []
    pages = [_Page(i, plan.placement.regions[i % len(plan.placement.regions)])
             for i in range(plan.pages)]  # fmt: skip

    def error(kind: str, text: str) -> None:
        errors[kind] += 1
        if len(samples) < 20:
            samples.append(f"{kind}: {text[:300]}")

    def status(phase: str) -> None:
        line = (
            f"{phase}: pages {sum(p.page is not None for p in pages)}/{plan.pages}"
            f" joined {sum(p.join_ms is not None for p in pages)}"
            f" errors {sum(errors.values())}"
        )
        if monitor is None:
            progress(f"  [{label}] {line}")
        else:
            monitor.status(label, line)
            monitor.live({"browser.errors": float(sum(errors.values()))})

    async with _chromium(plan) as browser:
        status("opening")
        gap = 1.0 / plan.join_rate
        opening = []
        for p in pages:
            opening.append(asyncio.create_task(_open(browser, plan, p, error)))
            await asyncio.sleep(gap)
        await asyncio.gather(*opening)
        if ready is not None:
            ready.set()
        status("watching")
        for p in pages:
            if p.page is not None and p.join_ms is not None:
                with contextlib.suppress(PlaywrightError):
                    p.stats0 = await p.page.evaluate("window.__lt.stats()")
        ticker = asyncio.create_task(_tick(status))
        try:
            await hold()
        finally:
            ticker.cancel()
        status("measuring")
        per_page = [await _measure(p, plan, error) for p in pages]
        for p in pages:
            p.closing = True
    return _merge(plan, per_page, errors, samples)


async def _tick(status: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(1.0)
        status("watching")


@contextlib.asynccontextmanager
async def _chromium(plan: BrowserPlan) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    # Chromium inherits its launcher's CPUs: start the driver on the generator's CPUs.
    own = os.sched_getaffinity(0)
    if plan.client_cpus:
        os.sched_setaffinity(0, plan.client_cpus)
    try:
        pw = await async_playwright().start()
    finally:
        os.sched_setaffinity(0, own)
    try:
        browser = await pw.chromium.launch(
            executable_path=plan.executable, headless=True, args=ARGS,
            timeout=LAUNCH_TIMEOUT_S * 1000,
        )  # fmt: skip
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await browser.close()
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await pw.stop()


async def _open(
    browser: Browser, plan: BrowserPlan, p: _Page, error: Callable[[str, str], None]
) -> None:
    from playwright.async_api import Error as PlaywrightError

    token = TokenAuthority(plan.secret).issue(
        user=f"{plan.run_tag}-p{p.index}", role="viewer", name=f"Browser {p.index}",
        rooms=[plan.room], ttl_s=3600 * 6,
    )  # fmt: skip
    url = plan.placement.page_url(p.index, plan.room, token)
    try:
        context = await browser.new_context()
        if not plan.allow_remote:
            await context.route("**/*", _loopback_only(error))
        page = await context.new_page()
    except PlaywrightError as exc:
        error("open", str(exc))
        return
    p.page = page
    page.on("console", lambda m: error("console", m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: error("pageerror", str(e)))
    page.on("crash", lambda _: error("crash", f"page {p.index}"))
    page.on("requestfailed", lambda r: None if p.closing else error(
        "requestfailed", f"{r.url} {r.failure}"))  # fmt: skip
    await page.add_init_script(_INIT)
    try:
        await page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_S * 1000)
        p.load_ms = await page.evaluate(
            "performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
    except PlaywrightError as exc:
        error("load", str(exc).splitlines()[0])
        return
    try:
        await page.wait_for_function(
            "() => window.__lt.joinedAt !== null", timeout=PAGE_TIMEOUT_S * 1000, polling=50
        )
        p.join_ms = await page.evaluate("window.__lt.joinedAt")
        p.node = await page.evaluate("window.liveEdge && window.liveEdge.url")
    except PlaywrightError as exc:
        error("join", str(exc).splitlines()[0])


def _loopback_only(error: Callable[[str, str], None]) -> Callable[[Route], Awaitable[None]]:
    allowed: dict[str, bool] = {}

    async def guard(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host not in allowed:
            allowed[host] = is_loopback(host)
        if allowed[host]:
            await route.continue_()
        else:
            error("blocked_remote", route.request.url)
            await route.abort("blockedbyclient")

    return guard


async def _measure(
    p: _Page, plan: BrowserPlan, error: Callable[[str, str], None]
) -> dict[str, Any]:
    from playwright.async_api import Error as PlaywrightError

    out: dict[str, Any] = {"index": p.index, "region": p.region, "node": p.node,
                           "load_ms": p.load_ms, "join_ms": p.join_ms, "first_frame_ms": None,
                           "fps": None, "frames": 0, "chat": []}  # fmt: skip
    if p.page is None or p.join_ms is None:
        return out
    try:
        if plan.live:
            # A page that joined late may still be starting its video: give it a little time.
            with contextlib.suppress(PlaywrightError):
                await p.page.wait_for_function(
                    "() => window.__lt.firstFrameAt !== null", timeout=FIRST_FRAME_TIMEOUT_S * 1000
                )
        state = await p.page.evaluate(
            "async () => ({first: window.__lt.firstFrameAt, joinedWallUs: window.__lt.joinedWallUs,"
            " chat: window.__lt.chat, stats: await window.__lt.stats(),"
            " skew: performance.timeOrigin + performance.now() - Date.now()})"
        )
    except PlaywrightError as exc:
        error("measure", str(exc).splitlines()[0])
        return out
    first, stats, start = state["first"], state["stats"], p.stats0
    out["first_frame_ms"] = first
    out["clock_skew_ms"] = round(state["skew"], 1)  # the page's performance clock - Date.now()
    out["frames"] = stats["frames"]
    if first is not None and stats["frames"]:
        # Frames decoded per second over the run; from the first frame if none was in at its start.
        if start is None or not start["frames"]:
            start = {"t": first, "frames": 0}
        span_s = (stats["t"] - start["t"]) / 1000
        if span_s > 0.5:
            out["fps"] = round((stats["frames"] - start["frames"]) / span_s, 2)
    elif plan.live:
        error("no_video", f"page {p.index} presented no video frame")
    # Only messages sent after the page joined: the join's history is older news.
    joined_us = state["joinedWallUs"] or 0
    out["chat"] = [[seq, sent, recv] for seq, sent, recv in state["chat"] if sent >= joined_us]
    return out


def _merge(
    plan: BrowserPlan, per_page: list[dict[str, Any]], errors: Counter[str], samples: list[str]
) -> dict[str, Any]:
    load, join, first, chat = Histogram(), Histogram(), Histogram(), Histogram()
    regions: dict[str, dict[str, Any]] = {}
    for page in per_page:
        r = regions.setdefault(
            page["region"],
            {"pages": 0, "joined": 0, "playing": 0, "chat": Histogram(), "first": Histogram()},
        )
        r["pages"] += 1
        if page["load_ms"] is not None:
            load.record(int(page["load_ms"] * 1000))
        if page["join_ms"] is not None:
            join.record(int(page["join_ms"] * 1000))
            r["joined"] += 1
        if page["first_frame_ms"] is not None:
            first.record(int(page["first_frame_ms"] * 1000))
            r["first"].record(int(page["first_frame_ms"] * 1000))
            r["playing"] += 1
        for _seq, sent, recv in page["chat"]:
            chat.record(max(0, int(recv - sent)))
            r["chat"].record(max(0, int(recv - sent)))
        page["chat_delivered"] = len(page.pop("chat"))
    fps = [p["fps"] for p in per_page if p["fps"] is not None]
    return {
        "pages": plan.pages,
        "executable": plan.executable,
        "live": plan.live,
        "opened": sum(1 for p in per_page if p["load_ms"] is not None),
        "joined": sum(1 for p in per_page if p["join_ms"] is not None),
        "playing": sum(1 for p in per_page if p["first_frame_ms"] is not None),
        "load_ms": load.summary_ms(),
        "join_ms": join.summary_ms(),
        "first_frame_ms": first.summary_ms(),
        "fps": round(sum(fps) / len(fps), 2) if fps else 0.0,
        "chat": {"delivered": chat.count, "latency_ms": chat.summary_ms()},
        "errors": dict(errors),
        "error_samples": samples,
        "regions": {
            name: {
                "pages": r["pages"],
                "joined": r["joined"],
                "playing": r["playing"],
                "chat_latency_ms": r["chat"].summary_ms(),
                "first_frame_ms": r["first"].summary_ms(),
            }
            for name, r in sorted(regions.items())
        },
        "per_page": per_page,
    }
