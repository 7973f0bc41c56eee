"""`live token`, token verification and the settings the CLI builds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from live.auth import AuthError, TokenAuthority
from live.cli import main, parser

SECRET = "cli-secret-" + "y" * 32


def test_live_token_prints_a_token_the_node_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "live.cli",
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
            "--ttl",
            "60",
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
