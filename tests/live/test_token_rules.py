"""Token rules: `exp` a number no further than LIVE_TOKEN_MAX_TTL_S, `live token` naming its
rooms, and nodes of a deployment refusing to start on a random secret."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from core.auth import AuthError, TokenAuthority
from live.cli.main import main
from live.settings import Settings

SECRET = "rules-secret-" + "z" * 32


def _token(exp: object) -> str:
    return jwt.encode({"sub": "bob", "role": "viewer", "rooms": ["a"], "exp": exp}, SECRET)


@pytest.mark.parametrize("exp", [str(int(time.time()) + 60), True, None, [1]])
def test_exp_must_be_a_number(exp: object) -> None:
    with pytest.raises(AuthError) as refused:
        TokenAuthority(SECRET).verify(_token(exp))
    assert refused.value.code == "invalid_token"


def test_exp_at_most_the_maximum_lifetime_away() -> None:
    authority = TokenAuthority(SECRET, max_ttl_s=3600)
    assert authority.verify(_token(int(time.time()) + 3630)).sub == "bob"  # 60 s of clock skew
    with pytest.raises(AuthError) as refused:
        authority.verify(_token(int(time.time()) + 3700))
    assert refused.value.code == "invalid_token" and "3600" in refused.value.detail
    with pytest.raises(AuthError) as year:  # the default maximum: a day
        TokenAuthority(SECRET).verify(_token(int(time.time()) + 365 * 86_400))
    assert year.value.code == "invalid_token"
    with pytest.raises(ValueError, match="at most 3600"):
        authority.issue(user="bob", role="viewer", rooms=["a"], ttl_s=7200)


def _live_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("LIVE_JWT_SECRET", SECRET)
    try:
        code = main(["token", "--role", "viewer", "--user", "bob", *argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out.strip(), out.err


def test_live_token_names_its_rooms(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    code, _, err = _live_token(monkeypatch, capsys)
    assert code == 2 and "--room" in err and "--all-rooms" in err
    code, _, err = _live_token(monkeypatch, capsys, "--room", "a", "--all-rooms")
    assert code == 2
    code, out, _ = _live_token(monkeypatch, capsys, "--all-rooms", "--shop", "acme")
    claims = TokenAuthority(SECRET).verify(out)
    assert code == 0 and claims.rooms == ("*",) and claims.shop == "acme"
    code, out, _ = _live_token(monkeypatch, capsys, "--room", "a")
    assert TokenAuthority(SECRET).verify(out).rooms == ("a",)
    code, _, err = _live_token(monkeypatch, capsys, "--room", "a", "--ttl", "90000")
    assert code == 2 and "LIVE_TOKEN_MAX_TTL_S" in err
    monkeypatch.setenv("LIVE_TOKEN_MAX_TTL_S", "100000")
    code, out, _ = _live_token(monkeypatch, capsys, "--room", "a", "--ttl", "90000")
    assert code == 0


def test_origin_and_edge_refuse_a_random_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "JWT" not in k and "JWKS" not in k}
    env.update(LIVE_DATA_DIR=str(tmp_path), LIVE_ORIGIN_URL="http://127.0.0.1:9")
    for role in ("origin", "edge"):
        done = subprocess.run(
            [sys.executable, "-m", "live.cli.main", "serve", "--role", role, "--port", "0"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert done.returncode == 2, done
        assert "LIVE_JWT_SECRET" in done.stderr
        assert ("LIVE_JWKS_URL" in done.stderr) == (role == "origin")


def test_an_all_node_warns_once_of_a_random_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from live.cli.serve import secret_checked

    monkeypatch.chdir(tmp_path)
    for name in ("LIVE_JWT_SECRET", "JWT_SECRET", "LIVE_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING):
        assert secret_checked(Settings.of(role="all"))
    assert [r.message for r in caplog.records if "LIVE_JWT_SECRET" in r.message] != []
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert secret_checked(Settings.of(role="all", jwt_secret=SECRET))
        assert secret_checked(Settings.of(role="origin", jwks_url="http://idp/jwks"))
    assert caplog.records == []
    # An edge signs its upstream's node token with the secret: JWKS alone is not enough.
    assert not secret_checked(Settings.of(role="edge", jwks_url="http://idp/jwks"))
