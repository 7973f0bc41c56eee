"""Ports between domain packages: the room broadcast and the room-state sources.

Commerce and media announce room events through `RoomBroadcast` without importing chat; the chat
layer implements it and delivers to every node's sockets in the room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from core.auth import Claims


class RoomBroadcast(Protocol):
    async def emit(self, room: str, event: str, data: dict[str, Any], to: str = "room") -> None:
        """Deliver `event` to every client in `room` on every node (`to="staff"`: only to the
        room's hosts and moderators)."""
        ...


# Contributes keys to the room state a client gets on join and from GET /api/rooms/{room}.
RoomStateSource = Callable[[str], Awaitable[dict[str, Any]]]


# A domain's Socket.IO request in a room the socket has joined (`gift`, `buy`): the caller's
# verified claims, the room, the whole payload (validated by the action) and the client's address
# (the socket's peer, for per-address limits); returns the acknowledgement. Raising a DomainError
# acknowledges `{ok: false, error, detail}`.
RoomAction = Callable[[Claims, str, dict[str, Any], str], Awaitable[dict[str, Any]]]
