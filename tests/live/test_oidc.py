"""Tokens of the shop's identity provider: RS256/ES256 verified against a real JWKS served on
loopback, issuer and audience checked, keys refreshed on a new kid (not on every forged one)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from core.auth import AuthError, Oidc, TokenAuthority
from core.jwks import KeySet
from tests.conftest import Client, NodeFactory
from tests.support.loopback import serving

SECRET = "oidc-secret-" + "o" * 32
ISSUER = "https://idp.shop.test"
AUDIENCE = "live-commerce"


class IdP:
    """An identity provider: signing keys by kid, its JWKS at `url` (counting fetches)."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, str]] = {}  # kid -> (private key, alg)
        self.fetches = 0
        self.url = ""

    def add(self, alg: str) -> str:
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        if alg == "RS256":
            self.keys[kid] = (rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)
        else:
            self.keys[kid] = (ec.generate_private_key(ec.SECP256R1()), alg)
        return kid

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        keys = []
        for kid, (key, alg) in self.keys.items():
            codec = RSAAlgorithm if alg == "RS256" else ECAlgorithm
            jwk = codec.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return web.json_response({"keys": keys})

    def token(self, kid: str, **claims: Any) -> str:
        key, alg = self.keys[kid]
        payload = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "buyer-1", "exp": int(time.time()) + 300,
            "live_role": "viewer", "live_rooms": ["r1"], "org": "acme", **claims,
        }  # fmt: skip
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    provider = IdP()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", provider.jwks)
    async with serving(app) as url:
        provider.url = url + "/.well-known/jwks.json"
        yield provider


@pytest.fixture
async def authority(idp: IdP) -> AsyncIterator[TokenAuthority]:
    oidc = Oidc(KeySet(idp.url, refresh_min_s=0), issuer=ISSUER, audience=AUDIENCE,
                role_claim="live_role", rooms_claim="live_rooms", shop_claim="org")  # fmt: skip
    auth = TokenAuthority(SECRET, oidc=oidc)
    yield auth
    await auth.close()


async def _verify(authority: TokenAuthority, token: str) -> Any:
    await authority.prepare(token)
    return authority.verify(token)


async def _refused(authority: TokenAuthority, token: str, says: str) -> None:
    with pytest.raises(AuthError) as refused:
        await _verify(authority, token)
    assert refused.value.code == "invalid_token" and says in refused.value.detail.lower()


async def test_rs256_and_es256_tokens_with_mapped_claims(
    idp: IdP, authority: TokenAuthority
) -> None:
    for alg in ("RS256", "ES256"):
        kid = idp.add(alg)
        claims = await _verify(authority, idp.token(kid))
        assert (claims.sub, claims.role, claims.rooms, claims.shop) == (
            "buyer-1", "viewer", ("r1",), "acme"
        )  # fmt: skip
    # The node's own HS256 tokens still verify beside them.
    own = authority.issue(user="host", role="host", rooms=["r1"])
    assert (await _verify(authority, own)).role == "host"


async def test_issuer_audience_and_signature_are_checked(
    idp: IdP, authority: TokenAuthority
) -> None:
    kid = idp.add("ES256")
    await _refused(authority, idp.token(kid, iss="https://evil.test"), "issuer")
    await _refused(authority, idp.token(kid, aud="another-app"), "audience")
    no_aud = jwt.encode({"iss": ISSUER, "sub": "x", "live_role": "viewer",
                         "exp": int(time.time()) + 60}, idp.keys[kid][0], algorithm="ES256",
                        headers={"kid": kid})  # fmt: skip
    await _refused(authority, no_aud, "aud")
    await _refused(authority, idp.token(kid, exp=int(time.time()) + 365 * 86_400), "exp")
    # Signed by a key that is not the IdP's, under one of its kids.
    forged = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "live_role": "host",
                         "exp": int(time.time()) + 60}, ec.generate_private_key(ec.SECP256R1()),
                        algorithm="ES256", headers={"kid": kid})  # fmt: skip
    await _refused(authority, forged, "not valid")


async def test_a_rotated_key_is_fetched_and_a_removed_one_refused(
    idp: IdP, authority: TokenAuthority
) -> None:
    old = idp.add("RS256")
    old_token = idp.token(old)
    assert (await _verify(authority, old_token)).sub == "buyer-1"
    fetches = idp.fetches
    new = idp.add("RS256")
    del idp.keys[old]
    # A token signed with the new key makes the node fetch the set again and is accepted...
    assert (await _verify(authority, idp.token(new, sub="buyer-2"))).sub == "buyer-2"
    assert idp.fetches == fetches + 1
    # ...and the old key is gone: its token (verified and remembered before) is refused now.
    await _refused(authority, old_token, "kid")


async def test_forged_kids_do_not_hammer_the_idp(idp: IdP) -> None:
    kid = idp.add("ES256")
    keys = KeySet(idp.url, refresh_min_s=60)
    authority = TokenAuthority(SECRET, oidc=Oidc(keys, role_claim="live_role"))
    try:
        assert (await _verify(authority, idp.token(kid))).role == "viewer"
        stranger = ec.generate_private_key(ec.SECP256R1())
        for i in range(50):
            claims = {"sub": "x", "live_role": "host", "exp": int(time.time()) + 60}
            forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": f"k{i}"})
            await _refused(authority, forged, "kid")
        assert idp.fetches == 1 and keys.fetches == 1 and keys.throttled == 50
    finally:
        await authority.close()


async def test_a_node_takes_idp_tokens_over_http_and_socketio(
    idp: IdP, start_node: NodeFactory
) -> None:
    kid = idp.add("RS256")
    running = await start_node(jwks_url=idp.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE,
                               jwt_role_claim="live_role", jwt_rooms_claim="live_rooms",
                               jwt_shop_claim="org", jwks_refresh_min_s=0)  # fmt: skip
    token = idp.token(kid, live_role="host", live_rooms=["idp-room"])
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{running.url}/api/rooms", json={"title": "T", "room_id": "idp-room"},
                             headers=headers) as r:  # fmt: skip
            assert r.status == 201, await r.text()
        bad = idp.token(kid, aud="another-app")
        async with http.post(f"{running.url}/api/rooms", json={"title": "T"},
                             headers={"Authorization": f"Bearer {bad}"}) as r:  # fmt: skip
            assert r.status == 401 and (await r.json())["error"] == "invalid_token"
    assert idp.fetches == 1
    # A Socket.IO connection with a token of a key the node has not seen yet: fetched, accepted.
    rotated = idp.add("ES256")
    client = await Client(running.url, idp.token(rotated, live_rooms=["idp-room"])).connect()
    try:
        assert (await client.call("join", {"room": "idp-room"}))["ok"] is True
    finally:
        await client.close()
    assert idp.fetches == 2
    async with aiohttp.ClientSession() as http, http.get(f"{running.url}/metrics") as r:
        assert "live_jwks_fetches_total 2.0" in await r.text()
