"""The one error type of the commerce layer: an `ApiError`, rendered as `{error, detail}`."""

from __future__ import annotations

from typing import Any

from core.errors import ApiError


class CommerceError(ApiError):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(status, code, detail, **extra)


def unavailable() -> CommerceError:
    exc = CommerceError(503, "store_unavailable", "the shared store did not answer in time; retry")
    exc.headers["Retry-After"] = "1"
    return exc
