"""JWT tokens: who a caller is (`sub`, `name`), what it may do (`role`) and where (`rooms`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

import jwt
from jwt.types import Options

from core.errors import DomainError
from core.jwks import ALGORITHMS, KeySet

TokenRole = Literal["host", "moderator", "viewer", "orders", "node", "privacy"]
ROLES: tuple[str, ...] = get_args(TokenRole)
# Roles that moderate a room they are granted.
MODERATING_ROLES = frozenset({"host", "moderator"})
# Who may buy, claim coupons and send gifts in a room (over HTTP and Socket.IO alike).
BUYER_ROLES: tuple[str, ...] = ("viewer", "host", "moderator")
# Verified tokens remembered per authority (bounded; longer tokens are not remembered).
CACHE_SIZE = 16_384
CACHE_TOKEN_MAX = 2048
# The furthest `exp` a token may carry (seconds from now), unless the authority is told otherwise.
MAX_TTL_S = 86_400
# Slack on that maximum for an issuer whose clock is ahead (a token issued for the maximum).
CLOCK_LEEWAY_S = 60


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


@dataclass(frozen=True, slots=True)
class Oidc:
    """Tokens of the shop's identity provider: its keys, what it must say, where it says it."""

    keys: KeySet
    issuer: str | None = None  # when set, `iss` must be this
    audience: str | None = None  # when set, `aud` must name this
    role_claim: str = "role"
    rooms_claim: str = "rooms"
    shop_claim: str = "shop"


class TokenAuthority:
    """Issues (HS256) and verifies tokens: HS256 with the secret, RS256 with a public key, and
    RS256/ES256 from an identity provider (`oidc`, its keys by the header's `kid`).

    Verified tokens are remembered until their `exp`: a client sends the same token with every
    request, and checking its signature again costs more than the rest of a cheap request.
    """

    def __init__(
        self,
        secret: str,
        public_key: str | None = None,
        *,
        cache_size: int = CACHE_SIZE,
        max_ttl_s: int = MAX_TTL_S,
        oidc: Oidc | None = None,
    ) -> None:
        self._secret = secret
        self._public_key = public_key
        self._cache_size = cache_size
        self.max_ttl_s = max_ttl_s
        self._oidc = oidc
        # token -> its claims; only tokens that verified, so a forged one never gets in.
        self._verified: dict[str, Claims] = {}
        if oidc is not None:
            # A key gone from the IdP's set takes the tokens it signed with it.
            oidc.keys.on_change = self._verified.clear

    @property
    def keys(self) -> KeySet | None:
        """The identity provider's key set, when tokens of one are accepted."""
        return self._oidc.keys if self._oidc is not None else None

    async def prepare(self, token: object) -> None:
        """Fetch the identity provider's keys `token` needs (before the sync `verify`); a no-op
        without OIDC or for a token already verified."""
        if self._oidc is None or not isinstance(token, str) or token in self._verified:
            return
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return  # verify says what is wrong with it
        kid = header.get("kid")
        if header.get("alg") in ALGORITHMS and isinstance(kid, str) and kid:
            await self._oidc.keys.ensure(kid)

    async def prepare_header(self, authorization: str | None) -> None:
        """`prepare` for an `Authorization: Bearer` header (anything else is left to verify)."""
        if self._oidc is not None and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer":
                await self.prepare(token.strip())

    async def close(self) -> None:
        if self._oidc is not None:
            await self._oidc.keys.close()

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
        if ttl_s > self.max_ttl_s:
            raise ValueError(f"a token lives at most {self.max_ttl_s} s (LIVE_TOKEN_MAX_TTL_S)")
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
            # Without a public key or an IdP every token is HS256: PyJWT checks the header's alg
            # itself, so reading the header first (a fifth of a verification) is only needed then.
            header = jwt.get_unverified_header(token) if self._public_key or self._oidc else {}
            if self._oidc is not None and header.get("alg") in ALGORITHMS and "kid" in header:
                return self._decode_oidc(token, header, self._oidc)
            if header.get("alg") == "RS256" and self._public_key:
                payload = jwt.decode(
                    token, self._public_key, algorithms=["RS256"], options=_DECODE_OPTIONS
                )
            else:
                payload = jwt.decode(
                    token, self._secret, algorithms=["HS256"], options=_DECODE_OPTIONS
                )
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from None
        _check_exp(payload.get("exp"), self.max_ttl_s)
        return _claims_from(payload)

    def _decode_oidc(self, token: str, header: dict[str, Any], oidc: Oidc) -> Claims:
        key = oidc.keys.key(str(header["kid"]))
        if key is None:
            raise AuthError("invalid_token", "the token's signing key (kid) is not the IdP's")
        options: Options = {**_DECODE_OPTIONS, "verify_aud": oidc.audience is not None}
        try:
            # The key's own algorithm only: an RSA key never verifies an ES256 header, nor the
            # reverse, whatever the token claims.
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[str(key.algorithm_name)],
                audience=oidc.audience,
                issuer=oidc.issuer,
                options=options,
            )
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from None
        _check_exp(payload.get("exp"), self.max_ttl_s)
        mapped = {
            **payload,
            "role": payload.get(oidc.role_claim),
            "rooms": payload.get(oidc.rooms_claim, []),
            "shop": payload.get(oidc.shop_claim),
        }
        return _claims_from(mapped)

    def verify_header(self, authorization: str | None) -> Claims:
        if not authorization:
            raise AuthError("missing_token", "send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("invalid_token", "the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


# `exp` is checked here (`_check_exp`), not by PyJWT: it takes any `int()`-able value, a string
# "9999999999" included, and knows no upper bound.
_DECODE_OPTIONS: Options = {"require": ["exp"], "verify_exp": False}


def _check_exp(exp: object, max_ttl_s: int) -> None:
    """Refuse an `exp` that is not a number, is past, or is more than `max_ttl_s` away."""
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError("invalid_token", "the token's exp must be a number (seconds since 1970)")
    now = time.time()
    if exp <= now:  # PyJWT's rule: expired once `exp <= now`
        raise AuthError("token_expired", "the token has expired")
    if exp - now > max_ttl_s + CLOCK_LEEWAY_S:
        raise AuthError(
            "invalid_token", f"the token's exp is more than {max_ttl_s} s away (its maximum)"
        )


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
