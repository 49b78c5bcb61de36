"""The pure parts of the SDK's search and account support (issue 26): splitting a
snippet at its hit markers, reading answers into types, and how the terminal chat
renders a result or a session. No server: these are functions of their input."""

from __future__ import annotations

import io
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messenger.chat import (
    BOLD,
    BRACKETS,
    local_time,
    printable,
    render_result,
    render_session,
    supports_ansi,
)
from messenger.client import (
    Message,
    MessengerClientError,
    SearchResult,
    Snippet,
    split_snippet,
)
from messenger.client.api import search_query
from messenger.client.types import parse_search_page, parse_session

S, E = "\x02", "\x03"


def wire_message(id_: int = 7, sender: str = "bob", recipient: str = "ann") -> dict[str, Any]:
    return {
        "id": id_, "from": sender, "to": recipient, "body": "lunch at one?",
        "client_id": "c", "sent_at": "2026-11-26T10:15:03.120Z", "status": "read",
        "delivered_at": None, "read_at": None, "reply_to": None, "edited_at": None,
        "deleted": False, "reactions": {}, "attachments": [],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("snippet", "parts"),
    [
        ("", []),
        ("no hits here", [("no hits here", False)]),
        (f"{S}lunch{E} at one", [("lunch", True), (" at one", False)]),
        (
            f"…at {S}one{E}, {S}lunch{E}…",
            [("…at ", False), ("one", True), (", ", False), ("lunch", True), ("…", False)],
        ),
        (f"{S}café{E}", [("café", True)]),
        (f"中文{S}消息{E}测试", [("中文", False), ("消息", True), ("测试", False)]),
        # Unbalanced: a stray end is dropped, a start inside a hit is dropped, a hit
        # left open (the server cut inside it) runs to the end.
        (f"a{E}b", [("ab", False)]),
        (f"{S}a{S}b{E}c", [("ab", True), ("c", False)]),
        (f"see {S}lun", [("see ", False), ("lun", True)]),
        (f"{S}{E}x", [("x", False)]),  # an empty hit is no part
        (f"{S}a{E}{S}b{E}", [("ab", True)]),  # touching hits are one part
        (f"{E}{E}{S}", []),
    ],
)
def test_split_snippet(snippet: str, parts: list[tuple[str, bool]]) -> None:
    assert split_snippet(snippet) == parts
    assert Snippet(snippet).parts == parts


@given(st.text(alphabet=st.sampled_from(["a", "é", " ", "中", S, E]), max_size=40))
def test_split_snippet_keeps_every_character_but_the_markers(snippet: str) -> None:
    parts = split_snippet(snippet)
    assert "".join(text for text, _ in parts) == snippet.replace(S, "").replace(E, "")
    assert all(text and S not in text and E not in text for text, _ in parts)
    # Neighbours alternate: plain, hit, plain... never two of a kind side by side.
    assert all(a[1] != b[1] for a, b in itertools.pairwise(parts))


def test_snippet_helpers() -> None:
    snippet = Snippet(f"…at {S}one{E} for {S}lunch{E}")
    assert snippet.text == str(snippet) == "…at one for lunch"
    assert snippet.hits == ["one", "lunch"]
    assert snippet.highlighted("[", "]") == "…at [one] for [lunch]"
    assert Snippet("plain").hits == []


def test_search_answers_are_typed_or_refused() -> None:
    page = parse_search_page(
        {
            "ok": True,
            "results": [
                {"message": wire_message(9), "snippet": f"{S}lunch{E} at one?"},
                {"message": wire_message(4, "ann", "bob"), "snippet": "x"},
            ],
            "has_more": True,
        }
    )
    assert [r.message.id for r in page.results] == [9, 4]
    assert page.results[0].snippet.hits == ["lunch"]
    assert (page.has_more, page.next_before) == (True, 4)
    last = parse_search_page({"results": [], "has_more": False})
    assert (last.results, last.next_before) == ((), None)
    no_id = {"message": {"id": 1}, "snippet": "x"}
    for bad in (None, [], {"results": None, "has_more": False}, {"has_more": True},
                {"results": [{"snippet": "x"}], "has_more": False},
                {"results": [no_id], "has_more": False}):  # fmt: skip
        with pytest.raises(MessengerClientError) as refused:
            parse_search_page(bad)
        assert refused.value.code == "internal"


def test_search_fields_leave_out_what_is_not_given() -> None:
    assert search_query("lunch", None, None, None) == {"query": "lunch"}
    assert search_query("a b", "bob", 12, 5) == {
        "query": "a b",
        "with": "bob",
        "before": 12,
        "limit": 5,
    }


def test_sessions_are_typed_or_refused() -> None:
    wire = {
        "id": 3, "created_at": "2026-11-26T10:15:03.120Z",
        "last_used_at": "2026-11-26T11:00:00.000Z", "user_agent": None,
        "address": "127.0.0.1", "current": True,
    }  # fmt: skip
    assert parse_session(wire) == {**wire, "user_agent": None}
    with pytest.raises(MessengerClientError):
        parse_session({"id": 3})
    with pytest.raises(MessengerClientError):
        parse_session("not a session")


def test_chat_renders_results_with_hits_marked_and_nothing_that_drives_a_terminal() -> None:
    theirs = Message.from_dict(wire_message(9))
    when = local_time(theirs.sent_at)
    hit = SearchResult(theirs, Snippet(f"…{S}lunch{E} at one?"))
    assert render_result(hit, 3, "ann") == f"#3 bob · {when}: …[lunch] at one?"
    assert render_result(hit, 3, "ann", BOLD) == f"#3 bob · {when}: …\x1b[1mlunch\x1b[0m at one?"
    ours = Message.from_dict(wire_message(4, "ann", "bob"))
    hostile = SearchResult(ours, Snippet(f"line\none {S}\x1b[2Jx{E}\x07"))
    assert render_result(hostile, 5, "ann", BRACKETS) == (
        f"#5 you → bob · {when}: line one [\ufffd[2Jx]\ufffd"
    )


def test_printable_keeps_emoji_sequences_and_times_are_local() -> None:
    family = "👨\u200d👩\u200d👧"  # joined by U+200D, a format character: kept
    assert printable(family) == family
    assert printable("a\tb\r\nc\x00") == "a b  c\ufffd"
    assert local_time("not a time\x1b") == "not a time\ufffd"
    assert len(local_time("2026-11-26T10:15:03.120Z")) == len("2026-11-26 10:15")


def test_sessions_are_rendered_safely() -> None:
    line = render_session(
        {
            "id": 3,
            "created_at": "2026-11-26T10:15:03Z",
            "last_used_at": "2026-11-26T11:15:03Z",
            "user_agent": "evil\x1b]0;title\x07",
            "address": None,
            "current": True,
        }
    )
    assert line.startswith("*   3 (this one): since ")
    assert line.endswith(", address unknown, evil\ufffd]0;title\ufffd")


def test_bold_only_on_a_terminal_that_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert supports_ansi(Tty()) is True
    assert supports_ansi(io.StringIO()) is False  # a pipe
    monkeypatch.setenv("NO_COLOR", "1")
    assert supports_ansi(Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert supports_ansi(Tty()) is False
