"""HTTP plumbing shared by every route: JSON errors, request metrics, body validation, auth."""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.auth import Claims, TokenAuthority
from core.errors import DomainError
from core.metrics import Metrics
from core.store import STORE_DOWN
from live.http.errors import error_response, internal, mapped
from live.http.faults import FaultLog

if TYPE_CHECKING:
    from prometheus_client.metrics import Counter

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METRICS = web.AppKey("metrics", Metrics)
AUTH = web.AppKey("auth", TokenAuthority)


# Bound children of `http_requests` per node, by (route, status): `labels()` validates and locks
# on every call, and a busy route asks for the same child thousands of times a second.
_request_counters: weakref.WeakKeyDictionary[Metrics, dict[tuple[str, int], Counter]] = (
    weakref.WeakKeyDictionary()
)


_error_counters: weakref.WeakKeyDictionary[Metrics, dict[str, Counter]] = (
    weakref.WeakKeyDictionary()
)


_fault_logs: weakref.WeakKeyDictionary[Metrics, FaultLog] = weakref.WeakKeyDictionary()


def _fault_log(metrics: Metrics) -> FaultLog:
    faults = _fault_logs.get(metrics)
    if faults is None:
        faults = _fault_logs[metrics] = FaultLog(on_suppressed=metrics.http_errors_unlogged.inc)
    return faults


def _count_error(metrics: Metrics, code: str) -> None:
    children = _error_counters.get(metrics)
    if children is None:
        children = _error_counters[metrics] = {}
    child = children.get(code)
    if child is None:
        child = children[code] = metrics.http_errors.labels(code)
    child.inc()


def _count_request(metrics: Metrics, route: str, status: int) -> None:
    children = _request_counters.get(metrics)
    if children is None:
        children = _request_counters[metrics] = {}
    child = children.get((route, status))
    if child is None:
        child = children[(route, status)] = metrics.http_requests.labels(route, str(status))
    child.inc()


# The codes of aiohttp's own refusals (its router, its body limit); any other is `http_error`.
HTTP_EXCEPTION_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def json_error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as `{"error", "detail"}` JSON; nothing escapes as a bare 500."""
    metrics = request.app[METRICS]
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    try:
        response = await handler(request)
    except DomainError as exc:
        error = mapped(exc)
        response = error_response(error)
        _count_error(metrics, error.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_EXCEPTION_CODES.get(exc.status, "http_error")
        response = json_error(exc.status, code, exc.reason)
        _count_error(metrics, code)
    except STORE_DOWN as exc:
        log.warning("redis unavailable: %s", exc)
        response = error_response(
            DomainError("store_unavailable", "the shared store is unreachable; retry")
        )
        _count_error(metrics, "store_unavailable")
    except Exception as exc:
        _fault_log(metrics).report(exc, f"{request.method} {request.path}")
        response = error_response(internal())
        _count_error(metrics, "internal")
    _count_request(metrics, route_name, response.status)
    return response


@web.middleware
async def token_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Fetch the identity provider's keys a bearer token needs before a handler verifies it
    (verification is sync; a no-op without LIVE_JWKS_URL)."""
    await request.app[AUTH].prepare_header(request.headers.get("Authorization"))
    return await handler(request)


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse and validate the JSON body as `model`, or raise a 400 that names the problem."""
    if not request.can_read_body:
        raw: Any = {}
    else:
        body = await request.read()
        if request.charset in (None, "utf-8", "UTF-8"):
            # pydantic parses and validates UTF-8 JSON in one pass (a third of json.loads and
            # model_validate); anything it refuses takes the path below, which names the error.
            try:
                return model.model_validate_json(body)
            except ValidationError:
                pass
        try:
            text = body.decode(request.charset or "utf-8")
        except LookupError:
            raise unknown_charset(request.charset) from None
        except UnicodeError:  # not only UnicodeDecodeError: the idna codec raises its parent
            raise DomainError("invalid_json", "the request body is not valid JSON") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raise DomainError("invalid_json", "the request body is not valid JSON") from None
        except ValueError:  # an integer past Python's digit limit (4300) for int parsing
            raise DomainError("invalid_json", "a number in the request body is too long") from None
        except RecursionError:  # arrays or objects nested thousands deep
            raise DomainError("invalid_json", "the request body is nested too deeply") from None
    if not isinstance(raw, dict):
        raise DomainError("invalid_json", "the request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise DomainError("invalid_request", validation_detail(exc)) from None


def unknown_charset(charset: str | None) -> DomainError:
    return DomainError("unsupported_media_type", f"unknown charset {charset!r}")


def claims_of(request: web.Request) -> Claims:
    return request.app[AUTH].verify_header(request.headers.get("Authorization"))
