"""The `search` benchmark's own parts: the seeded rows are what a server could have
written, and the answer check catches wrong answers (bench/search.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from bench.search import KINDS as SEARCH_KINDS
from bench.search import Query, check, queries_of
from bench.search_corpus import (
    CorpusPlan,
    generate,
    planted_word,
    queryable_accented,
    seed,
    username,
)
from messenger.store.migrate import upgrade

PLAN = CorpusPlan(messages=3_000, users=60, planted_per_user=3, searchers=10)


def test_planted_words_are_one_per_user_and_in_no_other_word() -> None:
    corpus, _ = generate(CorpusPlan(messages=10, users=11))
    words = [planted_word(u) for u in range(5_000)]
    assert len(set(words)) == len(words)
    assert {len(w) for w in words} == {7}
    assert not any("x" in word for word in corpus.vocab)
    assert "café" in queryable_accented() and "Ærøskøbing" not in queryable_accented()


def test_seeded_sqlite_rows_are_consistent(tmp_path: Path) -> None:
    """Streams without gaps, heads at their last event, each message's recipient_seq
    at its event in the recipient's stream, and every planted word where it belongs."""
    path = tmp_path / "search.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0005")
    corpus = seed(url, PLAN)
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*), min(id), max(id) FROM messages").fetchone() == (
            PLAN.messages,
            1,
            PLAN.messages,
        )
        streams = db.execute(
            "SELECT u.id, u.stream_seq, count(e.seq), min(e.seq), max(e.seq) FROM users u "
            "JOIN stream_events e ON e.user_id = u.id GROUP BY u.id"
        ).fetchall()
        assert len(streams) == PLAN.users
        for user_id, head, count, low, high in streams:
            assert (count, low, high) == (head, 1, head), user_id
            assert corpus.seqs[user_id - 1] == head
        mismatched = db.execute(
            "SELECT count(*) FROM messages m LEFT JOIN stream_events e ON "
            "e.user_id = m.recipient_id AND e.seq = m.recipient_seq AND e.message_id = m.id "
            "WHERE e.seq IS NULL"
        ).fetchone()[0]
        assert mismatched == 0
        for user in (0, 17, PLAN.users - 1):
            rows = db.execute(
                "SELECT sender_id, recipient_id FROM messages WHERE body LIKE ?",
                (f"%{planted_word(user)}%",),
            ).fetchall()
            assert len(rows) == PLAN.planted_per_user
            assert all(sender == user + 1 for sender, _ in rows)
        names = {row[0] for row in db.execute("SELECT username FROM users")}
        assert {username(u) for u in PLAN.searching_users()} <= names
    finally:
        db.close()
    for builder in SEARCH_KINDS:
        assert queries_of(builder, corpus, 5, 1), builder


def _result(ident: int, sender: str, to: str, body: str, snippet: str) -> dict[str, Any]:
    return {"message": {"id": ident, "from": sender, "to": to, "body": body}, "snippet": snippet}


def test_the_answer_check_finds_what_is_wrong() -> None:
    me, peer = username(3), username(4)
    query = Query("two terms", 3, "Cafe bica")
    right = _result(9, me, peer, "Un café bica", "Un \x02café\x03 \x02bica\x03")
    older = _result(5, peer, me, "bica CAFÉ", "\x02bica\x03 \x02CAFÉ\x03")
    assert check(query, [{"results": [right, older], "has_more": False}], 20) == []

    def problems(*results: dict[str, Any], has_more: bool = False, q: Query = query) -> str:
        return " | ".join(check(q, [{"results": list(results), "has_more": has_more}], 20))

    assert "out of order" in problems(older, right)
    assert "lacks a term" in problems(_result(9, me, peer, "café only", "\x02café\x03"))
    assert "between" in problems(_result(9, peer, username(5), "cafe bica", "\x02cafe\x03"))
    assert "snippet" in problems(_result(9, me, peer, "Un café bica", "Un café bica"))
    assert "nothing found" in problems()
    rare = Query("rare word", 3, planted_word(3), exact=2)
    hit = _result(7, me, peer, f"a {planted_word(3)}", f"a \x02{planted_word(3)}\x03")
    assert "not 2" in problems(hit, q=rare)
    assert "not 2" in problems(
        hit, hit | {"message": hit["message"] | {"id": 6}}, has_more=True, q=rare
    )
    short_first = [{"results": [right], "has_more": False}, {"results": [older], "has_more": False}]
    assert any(
        "is the last" in p for p in check(Query("page 3", 3, "cafe", pages=2), short_first, 20)
    )
    assert check(query, ["HTTP 500: oops"], 20)[0].startswith("page 1 is not an answer")
