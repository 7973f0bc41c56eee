"""`live token`, token verification and the settings the CLI builds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.auth import AuthError, TokenAuthority
from live.cli.main import main, parser

SECRET = "cli-secret-" + "y" * 32


def test_live_token_prints_a_token_the_node_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "live.cli.main",
            "token",
            "--role",
            "moderator",
            "--user",
            "mia",
            "--name",
            "Mia",
            "--room",
            "r1",
            "--room",
            "r2",
            "--shop",
            "acme",
            "--ttl",
            "60",
            "--shop",
            "acme",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"LIVE_JWT_SECRET": SECRET, "PATH": ""},
    )
    claims = TokenAuthority(SECRET).verify(out.stdout.strip())
    assert (claims.sub, claims.name, claims.role, claims.rooms) == (
        "mia",
        "Mia",
        "moderator",
        ("r1", "r2"),
    )
    assert claims.can_moderate("r1") and not claims.can_moderate("r3")
    assert claims.seller == "acme"


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("serve", "demo", "token"):
        assert name in commands
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        assert "usage: live " + name in capsys.readouterr().out


def test_tokens_are_bound_to_role_and_room() -> None:
    authority = TokenAuthority(SECRET)
    with pytest.raises(ValueError, match="unknown role"):
        authority.issue(user="u", role="admin")
    viewer = authority.verify(authority.issue(user="v", role="viewer", rooms=["a"]))
    assert viewer.in_room("a") and not viewer.in_room("b") and not viewer.can_moderate("a")
    with pytest.raises(AuthError) as expired:
        authority.verify(authority.issue(user="v", role="viewer", ttl_s=-10))
    assert expired.value.code == "token_expired"
    with pytest.raises(AuthError) as scheme:
        authority.verify_header("Basic abc")
    assert scheme.value.code == "invalid_token"


def test_rs256_tokens_verify_with_the_public_key() -> None:
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    claims = {"sub": "shop-1", "role": "orders", "rooms": ["*"], "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key, algorithm="RS256")
    assert TokenAuthority(SECRET, public_pem).verify(token).role == "orders"
    # Without the public key an RS256 token is refused, never accepted unverified.
    with pytest.raises(AuthError):
        TokenAuthority(SECRET).verify(token)


def test_verified_tokens_are_remembered_until_they_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import jwt

    authority = TokenAuthority(SECRET, cache_size=2)
    token = authority.issue(user="v", role="viewer", ttl_s=60)
    first = authority.verify(token)
    calls = 0
    real_decode = jwt.decode

    def counting_decode(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting_decode)
    assert authority.verify(token) is first and calls == 0
    # A forged token (another secret) is checked every time and never remembered.
    forged = TokenAuthority("another-secret-" + "x" * 32).issue(user="v", role="host")
    for _ in range(2):
        with pytest.raises(AuthError):
            authority.verify(forged)
    assert calls == 2
    # Past its exp the remembered token is not answered from memory: it is decoded again
    # (and refused, token_expired).
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    with pytest.raises(AuthError) as expired:
        authority.verify(token)
    assert expired.value.code == "token_expired"
    assert calls == 3
    monkeypatch.undo()
    # Bounded: the oldest entry makes room.
    tokens = [authority.issue(user=f"u{i}", role="viewer") for i in range(3)]
    for t in tokens:
        authority.verify(t)
    assert list(authority._verified) == tokens[1:]


def test_a_remembered_token_is_not_accepted_by_an_authority_with_another_secret() -> None:
    """Each node's memory is its own and keyed by its secret: a rotated secret is not bypassed."""
    old = TokenAuthority(SECRET)
    token = old.issue(user="v", role="viewer", ttl_s=60)
    assert old.verify(token).sub == "v"
    rotated = TokenAuthority("rotated-secret-" + "y" * 32)
    with pytest.raises(AuthError):
        rotated.verify(token)
    with pytest.raises(AuthError):
        rotated.verify(token)  # a refusal is never remembered either
