"""What a search query means, independent of the database: folding text so that case
and accents do not matter, splitting a query into terms, deciding whether a folded text
matches, and cutting a snippet with its hits marked (docs/protocol.md 3.10).

The databases' indexes only propose candidates; `matches` is the definition that the
answers follow, so SQLite and PostgreSQL find the same messages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

# A term this long or longer is found anywhere in a text (by trigrams); a shorter one
# only at the start of a word.
SUBSTRING_MIN: Final = 3
QUERY_MAX_CHARS: Final = 256
TERMS_MAX: Final = 16
# Snippet markers around each hit (docs/protocol.md 3.10), and the characters shown.
HIT_START: Final = "\u0002"
HIT_END: Final = "\u0003"
SNIPPET_CHARS: Final = 120
ELLIPSIS: Final = "\u2026"


# Latin letters that Unicode does not decompose into a base letter and a mark, spelt
# as people type them without the accent (as PostgreSQL's `unaccent` rules do).
_LETTERS = str.maketrans(
    {
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "ß": "ss",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "þ": "th",
        "\u0131": "i",
        "ħ": "h",
        "ŧ": "t",
        "ŋ": "n",
    }
)


# The blocks of combining marks that accents are made of. Marks of other scripts are
# letters' parts, not accents: Japanese voicing (か/が), Indic vowel signs, and they stay.
_ACCENT_BLOCKS = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)


def _is_accent(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _ACCENT_BLOCKS)


@lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", char.lower())
    kept = "".join(c for c in decomposed if not _is_accent(c))
    # Composed again: が stays one character, and so does a Hangul syllable.
    return unicodedata.normalize("NFC", kept).translate(_LETTERS)


def fold(text: str) -> str:
    """Lower case, compatibility forms made plain (fullwidth letters, ligatures), accents
    removed, and the
    few Latin letters that do not decompose spelt plainly: `Café` -> `cafe`, `Ærø` ->
    `aero`; other scripts' marks stay (`が` is not `か`). Character by character, so
    that `folded_positions` can map a hit back."""
    if text.isascii():
        return text.lower()
    return "".join(_fold_char(char) for char in text)


def folded_positions(text: str) -> tuple[str, list[int]]:
    """`fold(text)` and, for each of its characters, the index in `text` it came from."""
    parts: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = char.lower() if char.isascii() else _fold_char(char)
        parts.append(folded)
        origin.extend([index] * len(folded))
    return "".join(parts), origin


@dataclass(frozen=True)
class Terms:
    """A query's folded terms: `long` ones are found anywhere, `short` ones at the start
    of a word. `typed` gives each term as the query spelt it (PostgreSQL folds that
    itself, the same way as the bodies it indexed)."""

    long: tuple[str, ...]
    short: tuple[str, ...]
    typed: dict[str, str] = field(default_factory=dict, compare=False)

    def as_typed(self, term: str) -> str:
        return self.typed.get(term, term)

    def __iter__(self) -> Iterator[str]:
        yield from self.long
        yield from self.short


def split_query(query: str) -> Terms | None:
    """The distinct folded terms of a query, or None if it has none. A short term
    without a letter or digit (`-`, `?!`) is dropped: it would find punctuation."""
    seen: dict[str, str] = {}
    for raw in query.split():
        term = fold(raw)
        if len(term) >= SUBSTRING_MIN or any(char.isalnum() for char in term):
            seen.setdefault(term, raw)
    if not seen:
        return None
    long = tuple(t for t in seen if len(t) >= SUBSTRING_MIN)
    short = tuple(t for t in seen if len(t) < SUBSTRING_MIN)
    return Terms(long, short, seen)


def _at_word_start(folded: str, term: str) -> bool:
    start = folded.find(term)
    while start != -1:
        if start == 0 or not folded[start - 1].isalnum():
            return True
        start = folded.find(term, start + 1)
    return False


def matches(folded: str, terms: Terms) -> bool:
    """Whether a folded text holds every term (long anywhere, short at a word start)."""
    return all(term in folded for term in terms.long) and all(
        _at_word_start(folded, term) for term in terms.short
    )


def trigrams(terms: Terms) -> list[str]:
    """The distinct trigrams of the long terms, in order (what a trigram index must
    hold for every long term to be present)."""
    found: dict[str, None] = {}
    for term in terms.long:
        for start in range(len(term) - SUBSTRING_MIN + 1):
            found.setdefault(term[start : start + SUBSTRING_MIN], None)
    return list(found)


def fts5_string(value: str) -> str:
    """`value` as an FTS5 string literal: quoted, so nothing in it is query syntax."""
    return '"' + value.replace('"', '""') + '"'


def _hit_spans(folded: str, terms: Terms) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of every occurrence of every term in `folded`,
    in order."""
    spans: list[tuple[int, int]] = []
    for term in terms:
        start = folded.find(term)
        while start != -1:
            if term in terms.long or start == 0 or not folded[start - 1].isalnum():
                spans.append((start, start + len(term)))
            start = folded.find(term, start + 1)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def snippet(body: str, terms: Terms, width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `body` around its first hit, each hit between
    HIT_START and HIT_END, an ellipsis where the body was cut. The body's own marker
    characters become U+FFFD, so every marker in a snippet is one of ours."""
    clean = body.replace(HIT_START, "\ufffd").replace(HIT_END, "\ufffd")
    folded, origin = folded_positions(clean)
    hits = [(origin[start], origin[end - 1] + 1) for start, end in _hit_spans(folded, terms) if end]
    first = hits[0][0] if hits else 0
    begin = max(0, min(first - width // 4, len(clean) - width))
    end = min(len(clean), begin + width)
    out: list[str] = [ELLIPSIS] if begin > 0 else []
    cursor = begin
    for hit_start, hit_end in hits:
        if hit_end <= begin or hit_start >= end:
            continue
        hit_start, hit_end = max(hit_start, begin), min(hit_end, end)
        out += [clean[cursor:hit_start], HIT_START, clean[hit_start:hit_end], HIT_END]
        cursor = hit_end
    out.append(clean[cursor:end])
    if end < len(clean):
        out.append(ELLIPSIS)
    return "".join(out)
