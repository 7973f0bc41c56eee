"""Client-to-server payloads of namespace `/live`, validated strictly (no type coercion)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from chat.config import LANG_MAX_CHARS, LANG_PATTERN
from chat.errors import ChatError
from chat.history import valid_stream_id

ROOM_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ROOM_ID = re.compile(ROOM_PATTERN.replace("$", r"\Z"))  # `$` would let a final newline in
RoomId = Annotated[str, StringConstraints(pattern=ROOM_PATTERN)]
# Checked by History (`invalid_since`), not here: a bad `since` has its own error code.
Since = Annotated[str, StringConstraints(max_length=64)]


def _message_id(value: str) -> str:
    if value.startswith("h-") or valid_stream_id(value):
        return value
    raise ValueError("a message id is 'ms-seq' (unsigned 64-bit parts) or a held id 'h-...'")


MessageId = Annotated[
    str,
    StringConstraints(pattern=r"^(\d{1,20}-\d{1,20}|h-[0-9a-f]{32})$"),
    AfterValidator(_message_id),
]


def _lang(value: str) -> str:
    if len(value) > LANG_MAX_CHARS or not re.fullmatch(LANG_PATTERN, value):
        raise ValueError(
            f"a language is a BCP 47 tag such as 'en' or 'pt-BR' (at most {LANG_MAX_CHARS}"
            " characters, the language subtag in lower case)"
        )
    return value


Lang = Annotated[str, AfterValidator(_lang)]
MAX_TRANSLATE_IDS = 50
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]

ModAction = Literal[
    "mute",
    "unmute",
    "ban",
    "unban",
    "delete",
    "clear",
    "slow",
    "pin_message",
    "unpin_message",
    "approve",
    "reject",
    "block_term",
    "unblock_term",
]


class _Payload(BaseModel):
    # Unknown fields are refused (named in the error): a client cannot smuggle bulk past a model.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class JoinIn(_Payload):
    room: RoomId
    since: Since | None = None


class LeaveIn(_Payload):
    room: RoomId


class ChatIn(_Payload):
    room: RoomId
    text: str
    lang: Lang | None = None


class TranslateIn(_Payload):
    room: RoomId
    # The language to receive `chat_translation`s in; None stops them.
    lang: Lang | None = None
    # Messages already shown (the join's history) to translate now, at most MAX_TRANSLATE_IDS.
    ids: list[MessageId] = Field(default_factory=list, max_length=MAX_TRANSLATE_IDS)


MAX_LIKE_COUNT = 10


class LikeIn(_Payload):
    room: RoomId
    count: int = Field(1, ge=1, le=MAX_LIKE_COUNT)


class ModIn(_Payload):
    room: RoomId
    action: ModAction
    user_id: UserId | None = None
    message_id: MessageId | None = None
    seconds: int | None = Field(None, ge=0, le=7 * 24 * 3600)
    term: str | None = Field(None, max_length=100)


class RoomIn(_Payload):
    room: RoomId


class RoomRequestIn(_Payload):
    """Another domain's request in a room (`add_action`): the room here, the rest its own."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    room: RoomId


class RefreshTokenIn(_Payload):
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


P = TypeVar("P", bound=BaseModel)  # any model: other domains' Socket.IO requests too


def parse(model: type[P], data: Any) -> P:
    """Validate a payload or raise a ChatError naming each problem."""
    if not isinstance(data, dict):
        raise ChatError("invalid_payload", "the payload must be an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ChatError("invalid_payload", problems) from None
