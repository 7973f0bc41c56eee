"""The pages' message catalogues (live/web/locales/LANG.json, issue 14): every language has
exactly English's keys (plural forms as its plural rules need), no empty text, the same
`{{variables}}`; every error code a page can meet has a message; every key the pages and the
load-test report use exists in English. Reads files only: no node, no browser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from live.http.errors import STATUS
from tests.chat.test_fuzz_events import KNOWN_CODES

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "live" / "web" / "locales"
LANGUAGES = ("en", "zh", "es", "fr", "de", "ja", "ko", "th")
# CLDR plural categories (Intl.PluralRules(lang).resolvedOptions().pluralCategories); i18next
# picks `key_<category>`.
PLURALS = {
    "en": {"one", "other"}, "de": {"one", "other"},
    "es": {"one", "many", "other"}, "fr": {"one", "many", "other"},
    "ja": {"other"}, "ko": {"other"}, "zh": {"other"}, "th": {"other"},
}  # fmt: skip
SUFFIX = re.compile(r"^(.*)_(zero|one|two|few|many|other)$")
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*(?:,[^}]*)?\}\}")
# Codes the pages meet besides the server's: a request that timed out, a fetch that failed, an
# answer that was no JSON, and the catch-all.
PAGE_CODES = {"timeout", "network", "bad_answer", "unknown"}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load(lang: str) -> dict[str, Any]:
    return flatten(json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8")))


def grouped(flat: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Base key -> {plural category or "": text}."""
    out: dict[str, dict[str, str]] = {}
    for key, text in flat.items():
        m = SUFFIX.match(key)
        base, form = (m.group(1), m.group(2)) if m else (key, "")
        out.setdefault(base, {})[form] = text
    return out


def variables(forms: dict[str, str]) -> set[str]:
    return {v for text in forms.values() for v in VARIABLE.findall(text)}


ENGLISH = grouped(load("en"))


def test_one_catalogue_per_language_and_nothing_else() -> None:
    assert sorted(p.stem for p in LOCALES.glob("*.json")) == sorted(LANGUAGES)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalogue_matches_english(lang: str) -> None:
    flat = load(lang)
    empty = sorted(k for k, v in flat.items() if not isinstance(v, str) or not v.strip())
    assert not empty, f"{lang}: empty or non-text values {empty}"
    mine = grouped(flat)
    assert not (missing := sorted(ENGLISH.keys() - mine.keys())), f"{lang} lacks {missing}"
    assert not (extra := sorted(mine.keys() - ENGLISH.keys())), f"{lang} has extra keys {extra}"
    for base, forms in ENGLISH.items():
        theirs = mine[base]
        if "" in forms:
            assert set(theirs) == {""}, f"{lang}: {base} is not a plural in English"
        else:
            assert set(theirs) == PLURALS[lang], (
                f"{lang}: {base} has plural forms {sorted(theirs)}, wants {sorted(PLURALS[lang])}"
            )
        assert variables(theirs) == variables(forms), (
            f"{lang}: {base} uses {sorted(variables(theirs))}, English {sorted(variables(forms))}"
        )


def test_every_error_code_has_a_message() -> None:
    codes = set(STATUS) | KNOWN_CODES | PAGE_CODES
    missing = sorted(c for c in codes if f"errors.{c}" not in ENGLISH)
    assert not missing, f"codes without a message: {missing}"


NAMESPACES = "|".join(sorted({k.split(".")[0] for k in ENGLISH}))
USED = re.compile(rf"""["'`:;]\s*((?:{NAMESPACES})\.[A-Za-z_][\w.]*)(?=["'`;])""")


def used_keys() -> dict[str, set[str]]:
    """Keys named literally in the pages (data-i18n, data-i18n-attr, t("…"), setText) and in the
    load-test report."""
    sources = [*(ROOT / "live" / "web").glob("*.js"), *(ROOT / "live" / "web").glob("*.html"),
               ROOT / "loadtest" / "report" / "html.py"]  # fmt: skip
    found: dict[str, set[str]] = {}
    for path in sources:
        for key in USED.findall(path.read_text(encoding="utf-8")):
            found.setdefault(key, set()).add(path.name)
    return found


def test_every_key_used_exists_in_english() -> None:
    used = used_keys()
    assert len(used) > 80, "the key pattern finds the pages' keys"
    unknown = {k: sorted(files) for k, files in used.items() if k not in ENGLISH}
    assert not unknown, f"keys used but not in en.json: {unknown}"
