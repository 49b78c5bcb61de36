"""The meaning of a search, without a database: folding, terms, matching, snippets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from messenger.text_search import (
    ELLIPSIS,
    HIT_END,
    HIT_START,
    Terms,
    fold,
    folded_positions,
    fts5_string,
    matches,
    snippet,
    split_query,
    trigrams,
)


def test_fold_ignores_case_and_accents() -> None:
    assert fold("Café NAÏVE") == "cafe naive"
    assert fold("Ærøskøbing straße") == "aeroskobing strasse"
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "fullwidth")  # U+FF46 ...
    assert fold(fullwidth) == "fullwidth"
    assert fold("東京") == "東京"


def test_fold_keeps_the_marks_of_other_scripts() -> None:
    """Accents go; Japanese voicing, Indic vowel signs and Hangul syllables stay."""
    assert fold("バス") != fold("ハス") and fold("バス") == "バス"
    assert fold("किताब") == "किताब"
    assert fold("한국어") == "한국어"
    assert fold("Ångström") == "angstrom"


def test_split_query_sorts_terms_by_length_and_drops_punctuation() -> None:
    assert split_query("Hello  wo ? hello -- é ...") == Terms(("hello", "..."), ("wo", "e"))
    assert split_query("  - ! ") is None
    assert split_query("") is None


def test_matches_long_anywhere_short_at_word_starts() -> None:
    text = fold("the quarterly report, 東京タワー")
    assert matches(text, Terms(("arter", "京タワ"), ()))
    assert matches(text, Terms((), ("re", "東京")))
    assert not matches(text, Terms((), ("ep",)))
    assert not matches(text, Terms(("reports",), ()))


def test_trigrams_and_fts5_quoting() -> None:
    assert trigrams(Terms(("abcd", "bcd"), ())) == ["abc", "bcd"]
    assert fts5_string('say "hi" AND') == '"say ""hi"" AND"'


def test_snippet_marks_every_hit_and_cuts_long_bodies() -> None:
    terms = Terms(("cafe",), ("at",))
    assert snippet("Meet at the Café", terms) == (
        f"Meet {HIT_START}at{HIT_END} the {HIT_START}Café{HIT_END}"
    )
    long = "a " * 200 + "target" + " b" * 200
    cut = snippet(long, Terms(("target",), ()))
    assert cut.startswith(ELLIPSIS) and cut.endswith(ELLIPSIS)
    assert f"{HIT_START}target{HIT_END}" in cut


@given(st.text(max_size=300), st.text(min_size=1, max_size=8))
def test_a_snippet_is_the_body_with_markers_added(body: str, query: str) -> None:
    """Whatever the body and query: taking our markers out of a snippet leaves a piece
    of the body (its own marker characters replaced), and markers pair up in order."""
    terms = split_query(query) or Terms(("zzz",), ())
    cut = snippet(body, terms)
    plain = cut.removeprefix(ELLIPSIS).removesuffix(ELLIPSIS)
    cleaned = body.replace(HIT_START, "\ufffd").replace(HIT_END, "\ufffd")
    assert plain.replace(HIT_START, "").replace(HIT_END, "") in cleaned
    depth = 0
    for char in plain:
        if char == HIT_START:
            depth += 1
        elif char == HIT_END:
            depth -= 1
        assert depth in (0, 1)
    assert depth == 0


@given(st.text(max_size=100))
def test_folded_positions_agree_with_fold(text: str) -> None:
    folded, origin = folded_positions(text)
    assert folded == fold(text)
    assert len(origin) == len(folded)
    assert origin == sorted(origin)
