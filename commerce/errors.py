"""The error type of the commerce layer; the HTTP layer maps its codes to statuses."""

from __future__ import annotations

from core.errors import DomainError


class CommerceError(DomainError):
    pass


def unavailable() -> CommerceError:
    return CommerceError("store_unavailable", "the shared store did not answer in time; retry")
