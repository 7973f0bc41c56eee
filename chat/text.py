"""Chat text hygiene: strip control and bidi-override characters; refuse empty or long text."""

from __future__ import annotations

import fnmatch
import re
import unicodedata

from chat.errors import ChatError

# Bidi overrides and isolates can make text render reversed or hide parts of it.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def clean_text(text: str, max_chars: int) -> str:
    """Return `text` without control characters and surrounding space, or raise ChatError."""
    if len(text) > max_chars * 4:
        # Refuse before scanning: a 100 KB message costs nothing more than this check.
        raise ChatError("too_long", f"messages are limited to {max_chars} characters")
    cleaned = "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or (unicodedata.category(ch) != "Cc" and ch not in _BIDI)
    ).strip()
    if not cleaned:
        raise ChatError("empty_message", "the message is empty")
    if len(cleaned) > max_chars:
        raise ChatError("too_long", f"messages are limited to {max_chars} characters")
    return cleaned


def compile_terms(terms: list[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex for blocked terms; `*` matches any run of characters."""
    if not terms:
        return None
    parts = [fnmatch.translate(t.lower()).removeprefix("(?s:").removesuffix(")\\Z") for t in terms]
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE | re.DOTALL)


def normalise_term(term: str) -> str:
    term = " ".join(term.lower().split())
    if not term.strip("*") or len(term) > 100:
        raise ChatError("invalid_term", "a blocked term needs 1-100 characters besides '*'")
    return term
