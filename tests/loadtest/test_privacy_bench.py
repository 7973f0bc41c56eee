"""`live loadtest privacy` on a tiny stream: the document says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live.cli.main import parser


async def test_tiny_privacy_bench_rewrites_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the servers' temporary directory goes here
    out = tmp_path / "privacy.json"
    args = parser().parse_args(["loadtest", "privacy", "--entries", "2000", "--json", str(out)])
    assert await args.run(args) == 0

    (result,) = json.loads(out.read_text())["results"]
    # One event in 1,000 is the user's: found, rewritten, the stream and its group intact
    # (the bench checks those before it answers).
    assert result["entries"] == 2000 and result["user_entries"] == 2
    assert result["pings"] > 0 and result["rewrite_s"] > 0
