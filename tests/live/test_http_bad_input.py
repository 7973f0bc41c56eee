"""Bad input is a 4xx naming the problem, never a 500; internal errors are logged once per cause
per minute, not a traceback per request."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from core.auth import TokenAuthority
from core.metrics import Metrics
from live.http.common import METRICS, error_middleware
from live.http.faults import FaultLog
from tests.conftest import RunningNode


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


def host(tokens: TokenAuthority) -> dict[str, str]:
    return {"Authorization": "Bearer " + tokens.issue(user="h", role="host", rooms=["*"])}


@pytest.mark.parametrize("path", ["/api/rooms", "/whip/r1", "/whep/r1"])
async def test_an_unknown_charset_is_415(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority, path: str
) -> None:
    kind = "application/json" if path == "/api/rooms" else "application/sdp"
    headers = {**host(tokens), "Content-Type": f"{kind}; charset=foo"}
    async with http.post(node.url + path, data=b'{"title": "x"}', headers=headers) as resp:
        body = await resp.json()
    assert (resp.status, body["error"]) == (415, "unsupported_media_type"), body
    assert "foo" in body["detail"]


@pytest.mark.parametrize("field", ["price_minor", "title", "currency"])
async def test_a_5000_digit_number_is_400(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority, field: str
) -> None:
    product = {"product_id": '"m"', "title": '"t"', "price_minor": "1", "currency": '"EUR"'}
    product[field] = "9" * 5000
    data = "{" + ", ".join(f'"{k}": {v}' for k, v in product.items()) + "}"
    headers = {**host(tokens), "Content-Type": "application/json"}
    async with http.post(node.url + "/api/products", data=data, headers=headers) as resp:
        body = await resp.json()
    assert (resp.status, body["error"]) == (400, "invalid_json"), body


async def test_a_bug_hit_by_every_request_is_logged_once(
    aiohttp_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics("n")

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[error_middleware])
    app[METRICS] = metrics
    app.router.add_get("/broken", broken)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)  # type: ignore[operator]
    with caplog.at_level(logging.ERROR):
        for _ in range(20):
            async with client.get("/broken") as resp:
                assert resp.status == 500
                assert (await resp.json())["error"] == "internal"
    records = [r for r in caplog.records if "unhandled error" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is not None
    assert b"live_http_internal_errors_unlogged_total 19.0" in metrics.render()


def test_one_line_per_cause_per_window() -> None:
    now = [0.0]
    suppressed: list[int] = []
    faults = FaultLog(60, on_suppressed=lambda: suppressed.append(1), clock=lambda: now[0])

    def fail(kind: type[Exception]) -> Exception:
        try:
            raise kind("x")
        except Exception as exc:
            return exc

    logger = logging.getLogger("live.http.common")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        for second in range(0, 150, 10):  # the same cause every 10 s for 150 s
            now[0] = second
            faults.report(fail(RuntimeError), "GET /x")
        faults.report(fail(KeyError), "GET /x")  # another cause: logged at once
    finally:
        logger.removeHandler(handler)
    # t=0 (traceback), t=60 and t=120 (one line each, counting those in between), then KeyError
    assert [r.exc_info is not None for r in records] == [True, False, False, True]
    assert "5 more like it" in records[1].getMessage()
    assert len(suppressed) == 15 - 3


async def test_deeply_nested_json_is_400(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    data = '{"title": ' + "[" * 100_000 + "]" * 100_000 + "}"
    headers = {**host(tokens), "Content-Type": "application/json"}
    async with http.post(node.url + "/api/rooms", data=data, headers=headers) as resp:
        body = await resp.json()
    assert (resp.status, body["error"]) == (400, "invalid_json"), body
