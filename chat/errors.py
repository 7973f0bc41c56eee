"""The error type of the chat layer; any `DomainError` becomes the `{ok: false, ...}` ack."""

from __future__ import annotations

from typing import Any

from core.errors import DomainError


class ChatError(DomainError):
    """A chat refusal; its codes only travel in Socket.IO acks, never over HTTP."""


def ack(exc: DomainError) -> dict[str, Any]:
    """The `{ok: false, error, detail, ...}` acknowledgement; `retry_after` (s) when it has one."""
    body = {"ok": False, **exc.body()}
    if exc.retry_after is not None:
        body["retry_after"] = exc.retry_after
    return body
