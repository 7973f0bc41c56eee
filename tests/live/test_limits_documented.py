"""docs/protocol.md's "Limits" table names every setting that is a limit, with the code's default.

Every `LIVE_*` variable of every settings section is either a row's setting in that table or on
NOT_LIMITS below (with why it is not a limit); a new setting makes this fail until it is one or
the other.
"""

from __future__ import annotations

import re
from pathlib import Path

from live.settings import Settings

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
VARIABLE = re.compile(r"`(LIVE_[A-Z0-9_]+)`")
NUMBER = re.compile(r"\d+(?:\.\d+)?")

# Settings that bound nothing a client can run into: where the node listens and what it is,
# where the store and identity provider are, names, policies and logging.
NOT_LIMITS = {
    "LIVE_HOST": "listen address",
    "LIVE_PORT": "listen port",
    "LIVE_ROLE": "node role",
    "LIVE_REGION": "node region",
    "LIVE_NODE_ID": "node id",
    "LIVE_PUBLIC_URL": "advertised URL",
    "LIVE_FRAME_ANCESTORS": "CSP policy (Tenancy and page security)",
    "LIVE_REDIS_URL": "store URL",
    "LIVE_REDIS_CLUSTER": "store kind",
    "LIVE_DATA_DIR": "directory",
    "LIVE_VALKEY_APPENDFSYNC": "durability policy (Durability)",
    "LIVE_JWT_PUBLIC_KEY": "key",
    "LIVE_JWKS_URL": "identity provider URL",
    "LIVE_JWT_ISSUER": "expected claim",
    "LIVE_JWT_AUDIENCE": "expected claim",
    "LIVE_JWT_ROLE_CLAIM": "claim name",
    "LIVE_JWT_ROOMS_CLAIM": "claim name",
    "LIVE_JWT_SHOP_CLAIM": "claim name",
    "LIVE_LOG_LEVEL": "logging",
    "LIVE_LOG_JSON": "logging",
    "LIVE_PURCHASE_STREAM": "stream name",
    "LIVE_DEAD_LETTER_STREAM": "stream name",
    "LIVE_COMMERCE_OUTBOX": "delivery mode",
    "LIVE_COMMERCE_DELIVERY_GROUPS": "consumer group names",
    "LIVE_WEBHOOK_URL": "receiver URL",
    "LIVE_CHAT_TRANSLATE_URL": "translation service URL",
    "LIVE_CHAT_TRANSLATE_API_KEY": "key",
    "LIVE_GIFTS_PLATFORM_SHARE_BPS": "revenue policy (Wallets and gifts)",
    "LIVE_IMAGE_HOSTS": "allow-list (Tenancy and page security)",
    "LIVE_ICE_ADDRESSES": "ICE candidates",
    "LIVE_MEDIA_WORKERS": "process count (enters the `auto` viewer limit)",
    "LIVE_MEDIA_ADMISSION": "admission policy (its bounds LIVE_MEDIA_ADMIT_* are limits)",
    "LIVE_ORIGIN_URL": "origin URL",
    "LIVE_REGION_DISTANCES": "routing table",
}


def settings() -> dict[str, object]:
    """Every setting's variable -> its default (None for a computed one)."""
    found: dict[str, object] = {}
    for section in Settings.SECTIONS.values():
        for name, field in section.model_fields.items():
            default = None if field.default_factory is not None else field.default
            found[section.env_name(name)] = default
    return found


def limits_table() -> list[list[str]]:
    """The rows (cells) of the one table in docs/protocol.md's "## Limits" section."""
    text = PROTOCOL.read_text()
    start = text.index("\n## Limits\n")
    end = text.index("\n## ", start + 1)
    lines = [line for line in text[start:end].splitlines() if line.startswith("|")]
    header, rule, *rows = lines
    assert [c.strip() for c in header.strip("|").split("|")][:3] == ["limit", "setting", "default"]
    assert set(rule) <= set("|- ")
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert all(len(row) == 4 for row in cells), "a row of the Limits table is not 4 cells"
    return cells


def test_every_setting_is_a_documented_limit_or_listed_as_none() -> None:
    known = settings()
    rows = limits_table()
    documented = {v for row in rows for v in VARIABLE.findall(row[1])}
    missing = sorted(set(known) - documented - set(NOT_LIMITS))
    assert missing == [], f"settings missing from docs/protocol.md's Limits table: {missing}"
    assert sorted(documented - set(known)) == [], "the Limits table names an unknown setting"
    assert sorted(set(NOT_LIMITS) - set(known)) == [], "NOT_LIMITS names an unknown setting"
    assert sorted(set(NOT_LIMITS) & documented) == [], "a setting both in the table and NOT_LIMITS"


def test_the_table_gives_the_code_defaults() -> None:
    known = settings()
    for limit, setting, default, _ in limits_table():
        numbers = {float(n) for n in NUMBER.findall(default)}
        for variable in VARIABLE.findall(setting):
            value = known[variable]
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, (int, float)):
                assert float(value) in numbers, f"{limit}: {variable} defaults to {value}"
            elif isinstance(value, str):
                assert value in default, f"{limit}: {variable} defaults to {value!r}"
