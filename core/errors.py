"""The one error type of the HTTP layer and its JSON shape `{"error": code, "detail": text}`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client caused or must be told about; rendered as JSON with `status`."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


def bad_request(detail: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, detail)


def not_found(detail: str, code: str = "not_found") -> ApiError:
    return ApiError(404, code, detail)


def forbidden(detail: str, code: str = "forbidden") -> ApiError:
    return ApiError(403, code, detail)
