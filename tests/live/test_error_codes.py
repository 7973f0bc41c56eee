"""Every error code that can reach HTTP has a status in live/http/errors.py's table: a code
missing there would answer 500 `internal`, so a new code must fail here instead."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import get_args

from chat.errors import ack
from core.errors import DomainError, unknown_room
from live.http.errors import STATUS, error_response, mapped
from media import MediaErrorCode

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "chat", "commerce", "media", "edge", "live")
# Chat codes travel only in Socket.IO acks.
SOCKET_ONLY = {"ChatError"}
# ...except these: a gift's message follows the chat's rules over REST too (ChatServer.screen).
CHAT_OVER_HTTP = {"too_long", "empty_message", "banned", "muted"}
# Raises whose code is computed (source with single quotes), with every code they can produce.
DYNAMIC = {
    # settle.lua refuses a reservation already in one of these states.
    "f'reservation_{r['state']}'": {
        f"reservation_{s}" for s in ("confirmed", "cancelled", "expired")
    },
    # A media worker's reply carries a MediaError's code.
    "reply['error']": set(get_args(MediaErrorCode)),
}


def _trees() -> list[tuple[Path, ast.Module]]:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return [(p, ast.parse(p.read_text(), str(p))) for p in files]


def _error_classes(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    """Names of DomainError and its subclasses, followed through every module's class bases."""
    names = {"DomainError"}
    classes = [n for _, tree in trees for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for cls in classes:
            if cls.name not in names and any(ast.unparse(b) in names for b in cls.bases):
                names.add(cls.name)
                grew = True
    return names


def _raised_codes() -> dict[str, list[str]]:
    """code -> where it is built, for every error that can reach the HTTP middleware."""
    trees = _trees()
    http_errors = _error_classes(trees) - SOCKET_ONLY
    found: dict[str, list[str]] = {}
    for path, tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) in http_errors):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                codes = {first.value}
            else:
                source = ast.unparse(first).replace('"', "'") if first is not None else "<none>"
                assert source in DYNAMIC, f"{where}: list the codes of {source} in DYNAMIC"
                codes = DYNAMIC[source]
            for code in codes:
                found.setdefault(code, []).append(where)
    return found


def test_every_raised_code_has_an_http_status() -> None:
    raised = {**_raised_codes(), **{code: ["ChatServer.screen"] for code in CHAT_OVER_HTTP}}
    assert {"unknown_room", "forbidden", "sold_out", "invalid_token", "draining"} <= set(raised)
    missing = {code: where for code, where in raised.items() if code not in STATUS}
    assert not missing, f"add these codes to live/http/errors.py STATUS: {missing}"
    assert not set(STATUS) - set(raised), "STATUS lists codes nothing raises"


def test_every_declared_media_code_has_an_http_status() -> None:
    assert set(get_args(MediaErrorCode)) <= set(STATUS)


def test_retry_after_comes_from_the_error_else_the_table() -> None:
    waited = error_response(DomainError("rate_limited", "later", retry_after=7, retry_after_s=7))
    assert waited.status == 429 and waited.headers["Retry-After"] == "7"
    assert json.loads(waited.text or "") == {
        "error": "rate_limited",
        "detail": "later",
        "retry_after_s": 7,
    }
    assert error_response(DomainError("draining", "x")).headers["Retry-After"] == "0"
    assert "Retry-After" not in error_response(unknown_room("r")).headers


def test_an_unmapped_code_answers_internal() -> None:
    error = mapped(DomainError("no_such_code", "x"))
    assert error.code == "internal" and error.detail == "an internal error occurred"
    assert error_response(error).status == 500


def test_unknown_room_keeps_each_places_detail_and_renders_as_an_ack() -> None:
    assert unknown_room("r").detail == "there is no room 'r'"
    assert unknown_room("r", at_origin=True).detail == "the origin has no room 'r'"
    assert ack(unknown_room("r")) == {
        "ok": False,
        "error": "unknown_room",
        "detail": "there is no room 'r'",
    }
