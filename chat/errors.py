"""The one error type of the chat layer; it becomes the `{ok: false, error, detail}` ack."""

from __future__ import annotations

from typing import Any


class ChatError(Exception):
    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra

    def ack(self) -> dict[str, Any]:
        return {"ok": False, "error": self.code, "detail": self.detail, **self.extra}
