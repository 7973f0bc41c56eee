"""schemathesis against a live node: every operation of /api/openapi.json, with tokens of the
roles it names and seeded data to reach past the 404s, answers no 5xx and only what the
document says (status, content type, body schema)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.auth import TokenAuthority
from tests.conftest import NodeFactory
from tests.support.shop import PRODUCT, ROOM, Shop

EXAMPLES = 20
# WHIP/WHEP offers are text: sent as text/plain bodies are, with their own content type.
schemathesis.serializer.alias("application/sdp", "text/plain")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


def examples(
    operation: Any,
    mode: GenerationMode,
    path_parameters: dict[str, str],
    headers: dict[str, str],
    checks: list[Any],
    url: str,
    session: requests.Session,
) -> Callable[[], None]:
    """A Hypothesis test sending `operation`'s bounded, derandomized examples."""
    strategy = operation.as_strategy(
        mode, path_parameters=path_parameters or None, headers=headers or None
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=url, session=session, timeout=10)
        case.validate_response(response, checks=checks)

    return run


def fuzz(url: str, auth: Callable[[str], dict[str, str]], seeded: dict[str, str]) -> list[str]:
    """Run every operation's examples; the failures as `METHOD path: error`."""
    schema = schemathesis.openapi.from_url(url + "/api/openapi.json")
    failures: list[str] = []
    with requests.Session() as session:
        operations = [result.ok() for result in schema.get_all_operations()]
        # Ending the seeded sale last, so reservations are tried while it is active.
        for operation in sorted(operations, key=lambda o: o.path.endswith("/end")):
            roles: list[str] = operation.definition.raw["x-roles"]
            headers = auth(roles[0]) if roles else {}
            names = [p.name for p in operation.path_parameters]
            known = {n: seeded[n] for n in names if n in seeded}
            # Valid requests with generated, then with seeded path parameters (to get past the
            # 404s); then invalid ones (bodies, headers, queries), of which only 4xx is asked.
            for mode, path_parameters, checks in (
                (GenerationMode.POSITIVE, {}, CHECKS),
                (GenerationMode.POSITIVE, known, CHECKS),
                (GenerationMode.NEGATIVE, known, NEGATIVE_CHECKS),
            ):
                run = examples(operation, mode, path_parameters, headers, checks, url, session)
                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing of it can be made invalid
                except Exception as exc:
                    failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


async def test_every_operation_answers_as_documented(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    running = await start_node()
    shop = Shop([running], http, tokens)
    await running.node.rooms.create(title="Shop", owner="host", room_id=ROOM)
    status, _ = await shop.call("POST", "/api/products", body=PRODUCT)
    assert status == 201
    sale = await shop.start_sale(quantity=1000, per_user_limit=1000)
    status, reservation = await shop.reserve(sale["sale_id"], "viewer-user")
    assert status == 201, reservation
    status, coupon = await shop.call(
        "POST", f"/api/rooms/{ROOM}/coupons", body={"percent_off": 10, "quota": 1000}
    )
    assert status == 201, coupon
    seeded = {
        "coupon": coupon["coupon_id"],
        "room": ROOM,
        "product": PRODUCT["product_id"],
        "sale": sale["sale_id"],
        "id": reservation["reservation_id"],
        "node": running.node.settings.server.node_id,
    }

    def auth(role: str) -> dict[str, str]:
        return shop.auth(role, f"{role}-user", room="*")

    failures = await asyncio.to_thread(fuzz, running.url, auth, seeded)
    assert not failures, "\n\n".join(failures)
