"""JWT tokens: who a caller is (`sub`, `name`), what it may do (`role`) and where (`rooms`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

import jwt

from core.errors import DomainError

TokenRole = Literal["host", "moderator", "viewer", "orders", "node"]
ROLES: tuple[str, ...] = get_args(TokenRole)
# Roles that moderate a room they are granted.
MODERATING_ROLES = frozenset({"host", "moderator"})
# Verified tokens remembered per authority (bounded; longer tokens are not remembered).
CACHE_SIZE = 16_384
CACHE_TOKEN_MAX = 2048


def user_seller(sub: str) -> str:
    """The seller a user is without a shop (a host selling on its own account)."""
    return f"user:{sub}"


class AuthError(DomainError):
    """A token missing, expired or not valid."""


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of a token."""

    sub: str
    name: str
    role: str
    rooms: tuple[str, ...]
    exp: int
    # The seller the caller acts for (the `shop` claim); None for a token that names none.
    shop: str | None = None

    @property
    def seller(self) -> str:
        """Who owns what this caller creates: its shop, else (a host without one) its subject."""
        return self.shop or user_seller(self.sub)

    def in_room(self, room: str) -> bool:
        return "*" in self.rooms or room in self.rooms

    def can_moderate(self, room: str) -> bool:
        return self.role in MODERATING_ROLES and self.in_room(room)

    def public_user(self) -> dict[str, str]:
        return {"id": self.sub, "name": self.name, "role": self.role}


class TokenAuthority:
    """Issues (HS256) and verifies (HS256, or RS256 with a public key) tokens.

    Verified tokens are remembered until their `exp`: a client sends the same token with every
    request, and checking its signature again costs more than the rest of a cheap request.
    """

    def __init__(
        self, secret: str, public_key: str | None = None, *, cache_size: int = CACHE_SIZE
    ) -> None:
        self._secret = secret
        self._public_key = public_key
        self._cache_size = cache_size
        # token -> its claims; only tokens that verified, so a forged one never gets in.
        self._verified: dict[str, Claims] = {}

    def issue(
        self,
        *,
        user: str,
        role: str,
        name: str | None = None,
        rooms: list[str] | None = None,
        ttl_s: int = 3600,
        shop: str | None = None,
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        payload: dict[str, Any] = {
            "sub": user,
            "name": name or user,
            "role": role,
            "rooms": rooms or ["*"],
            "exp": int(time.time()) + ttl_s,
        }
        if shop:
            payload["shop"] = shop
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def verify(self, token: object) -> Claims:
        if not isinstance(token, str) or not token:
            raise AuthError("missing_token", "a bearer token is required")
        claims = self._verified.get(token)
        if claims is not None:
            # PyJWT's rule: expired once `exp <= now`; an expired token is refused as before.
            if claims.exp > time.time():
                return claims
            self._verified.pop(token, None)
        claims = self._decode(token)
        if len(token) <= CACHE_TOKEN_MAX and self._cache_size > 0:
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            # Without a public key every token is HS256: PyJWT checks the header's alg itself,
            # so reading the header first (a fifth of a verification) is only needed for RS256.
            header = jwt.get_unverified_header(token) if self._public_key else {}
            if header.get("alg") == "RS256" and self._public_key:
                payload = jwt.decode(
                    token, self._public_key, algorithms=["RS256"], options={"require": ["exp"]}
                )
            else:
                payload = jwt.decode(
                    token, self._secret, algorithms=["HS256"], options={"require": ["exp"]}
                )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from None
        return _claims_from(payload)

    def verify_header(self, authorization: str | None) -> Claims:
        if not authorization:
            raise AuthError("missing_token", "send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("invalid_token", "the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


def _claims_from(payload: dict[str, Any]) -> Claims:
    sub, role, rooms = payload.get("sub"), payload.get("role"), payload.get("rooms", [])
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid_token", "the token has no subject (sub)")
    if role not in ROLES:
        raise AuthError("invalid_token", f"the token's role must be one of {', '.join(ROLES)}")
    if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
        raise AuthError("invalid_token", "the token's rooms must be a list of room ids")
    name, shop = payload.get("name"), payload.get("shop")
    if shop is not None and (not isinstance(shop, str) or not shop):
        raise AuthError("invalid_token", "the token's shop must be a non-empty string")
    return Claims(
        sub=sub,
        name=name if isinstance(name, str) and name else sub,
        role=str(role),
        rooms=tuple(rooms),
        exp=int(payload.get("exp", 0)),
        shop=shop,
    )


def require_role(claims: Claims, room: str | None, *roles: str) -> None:
    """Refuse with 403 unless the caller has one of `roles` (for `room`, when given)."""
    if claims.role not in roles:
        raise DomainError("forbidden", f"this needs role {' or '.join(roles)}")
    if room is not None and not claims.in_room(room):
        raise DomainError("forbidden", f"the token does not grant room {room!r}")
