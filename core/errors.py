"""The one error type every layer raises: a stable code, a human detail, extra body fields.

No status lives here or in a domain: the HTTP layer maps codes to statuses and headers
(`live/http/errors.py`), Socket.IO renders the same error as an `{ok: false, ...}` ack.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal a client caused or must be told about.

    `retry_after` (seconds) is for refusals whose wait is only known when raised; the HTTP
    layer sends it as `Retry-After`. `extra` are further fields of the rendered body.
    """

    def __init__(
        self, code: str, detail: str, *, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


def unknown_room(room_id: str, *, at_origin: bool = False) -> DomainError:
    """The refusal for a room that does not exist (on this node's store, or the edge's origin)."""
    where = "the origin has" if at_origin else "there is"
    return DomainError("unknown_room", f"{where} no room {room_id!r}")
