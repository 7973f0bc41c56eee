"""The OpenAPI document names every route the app serves, from the models requests are read
with, and is served with a docs page that needs no outside script."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from live.http.errors import STATUS
from live.http.openapi import OPERATIONS, document, served, without_operation
from tests.conftest import RunningNode


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_every_route_served_has_an_operation_and_back(node: RunningNode) -> None:
    app = node.runner.app
    missing = sorted(without_operation(app))
    assert not missing, f"routes with no operation in live/http/openapi.py: {missing}"
    documented = {f"{m.upper()} {path}" for path, ops in document()["paths"].items() for m in ops}
    assert documented <= served(app), f"operations of no route: {documented - served(app)}"


async def test_a_route_with_no_operation_is_found() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/api/rooms/{room}/polls", handler)
    app.router.add_get("/socket.io/", handler)  # left out by name, with any method
    app.router.add_post("/api/products", handler)
    assert without_operation(app) == {"GET /api/rooms/{room}/polls"}


def test_request_bodies_are_the_models_read_json_validates() -> None:
    doc = document()
    for op in OPERATIONS:
        if op.body is None:
            continue
        body = doc["paths"][op.path][op.method.lower()]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{op.body.__name__}"
        schema = doc["components"]["schemas"][op.body.__name__]
        assert schema["properties"].keys() == op.body.model_fields.keys()
        assert schema.get("additionalProperties") is False  # the models forbid unknown fields


def test_error_responses_use_the_status_table() -> None:
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            for status, response in op["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                for code in schema.get("properties", {}).get("error", {}).get("enum", []):
                    expected = STATUS[code].status if code in STATUS else None
                    assert expected in (None, int(status)), (method, path, code)


async def test_document_and_docs_page_are_served(
    node: RunningNode, http: aiohttp.ClientSession
) -> None:
    async with http.get(node.url + "/api/openapi.json") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == document()
    async with http.get(node.url + "/api/docs") as resp:
        page = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert resp.status == 200 and "script-src 'self'" in csp
    assert '<script src="/static/api-docs.js"></script>' in page and "<script>" not in page
    for asset in ("/static/api-docs.js", "/static/api-docs.css"):
        async with http.get(node.url + asset) as resp:
            assert resp.status == 200, asset


def test_document_is_valid_openapi_3_1() -> None:
    import schemathesis

    schemathesis.openapi.from_dict(document()).validate()  # against the OpenAPI 3.1 meta-schema
