"""The search index and its queries (docs/protocol.md 3.10).

**SQLite.** `search_documents` holds each message's folded text (`text_search.fold`),
written in the writer's batch with the message, so a message is searchable as soon as
its send is answered. Two FTS5 tables index those documents (external content):
`search_words` (unicode61) for short terms at the start of words, and
`search_trigrams` for terms of three characters or more anywhere (CJK text, parts of
words). The FTS tables are fed by the indexer (`delivery.search_index`), not by the
batch: the documents past `search_state.watermark` are searched by a scan, the rest
through FTS5. That keeps FTS5 work off the send path, in small transactions between
the batches.

Deleted and edited text must leave the index's files (G10). SQLite 3.40's FTS5 has no
`secure-delete`: a delete only adds a marker, and the old entries stay in their
segment until a merge rewrites it. So a change of an indexed document records the text
that was indexed (`search_retired`), the indexer removes it from FTS5 and then merges
the whole index in small steps (`merge` with a negative page count) until nothing is
left to merge, with no other FTS5 writes meanwhile, and only then checkpoints the WAL.

**PostgreSQL.** GIN indexes over the message body folded in SQL (`messenger_fold`:
`lower(unaccent(...))`): a `simple` tsvector for short terms and `pg_trgm` for long
ones, kept up to date by PostgreSQL itself; nothing here writes them.

On both, a scope of up to SCAN_MAX messages is read whole (SQLite checks each term
with `instr` first); a larger one goes through the indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, text

from messenger.text_search import Terms, fold, fts5_string, matches, trigrams

# Documents read per FTS5 query while looking for a page of answers.
CANDIDATE_CHUNK: Final = 200
# A scope (a user's messages, or one conversation) this small is searched by reading
# it whole, on both databases: an index of everyone's text would walk every user's
# entries of a common term to find the few that are the caller's.
SCAN_MAX: Final = 10_000
# Retired texts taken out of FTS5 per transaction, and documents indexed per catch-up:
# each transaction holds the writer's thread, so they stay a few milliseconds long.
RETIRE_CHUNK: Final = 256
CATCH_UP_CHUNK: Final = 256
FTS_TABLES: Final = ("search_words", "search_trigrams")


def _is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


# --- the writer's batch -------------------------------------------------------------


def index_documents(conn: Connection, bodies: Iterable[tuple[int, str]]) -> None:
    """New messages' documents (SQLite; PostgreSQL indexes the body itself)."""
    if not _is_sqlite(conn):
        return
    rows = [(message_id, fold(body)) for message_id, body in bodies]
    if rows:
        conn.exec_driver_sql(
            "INSERT INTO search_documents (message_id, folded) VALUES (?, ?)", rows
        )


def change_documents(conn: Connection, edited: Mapping[int, str], wiped: Sequence[int]) -> None:
    """Edited and wiped messages' documents, in the batch that changes them. The text
    FTS5 holds for an indexed one is set aside first (once per indexing: later edits
    before the indexer runs keep the first), so the indexer can take exactly that text
    out of FTS5."""
    if not _is_sqlite(conn) or not (edited or wiped):
        return
    watermark = _watermark(conn)
    indexed = [mid for mid in [*edited, *wiped] if mid <= watermark]
    if indexed:
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO search_retired (message_id, folded) "
            "SELECT message_id, folded FROM search_documents WHERE message_id = ?",
            [(mid,) for mid in indexed],
        )
    if edited:
        conn.exec_driver_sql(
            "UPDATE search_documents SET folded = ? WHERE message_id = ?",
            [(fold(body), mid) for mid, body in edited.items()],
        )
    if wiped:
        conn.exec_driver_sql(
            "DELETE FROM search_documents WHERE message_id = ?", [(mid,) for mid in wiped]
        )


def _watermark(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT watermark FROM search_state").scalar_one())


# --- the indexer (SQLite) -------------------------------------------------------------


@dataclass(frozen=True)
class IndexWork:
    """What the indexer has to do: retired texts to take out, documents past the
    watermark (what searches scan meanwhile), and whether a merge is pending."""

    retired: int
    unindexed: int
    purge_pending: bool


def index_work(conn: Connection) -> IndexWork:
    retired, unindexed, purge = conn.exec_driver_sql(
        "SELECT (SELECT count(*) FROM search_retired), "
        "(SELECT count(*) FROM search_documents WHERE message_id > s.watermark), "
        "s.purge_pending FROM search_state s"
    ).one()
    return IndexWork(int(retired), int(unindexed), bool(purge))


def take_out_retired(conn: Connection) -> int:
    """Remove up to RETIRE_CHUNK retired texts from FTS5, put back the current text of
    those that were edited, and note that a merge must follow. How many were taken."""
    ids = [
        row[0]
        for row in conn.exec_driver_sql(
            "SELECT message_id FROM search_retired ORDER BY message_id LIMIT ?", (RETIRE_CHUNK,)
        )
    ]
    if not ids:
        return 0
    last = ids[-1]
    for table in FTS_TABLES:
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({table}, rowid, folded) "
            "SELECT 'delete', message_id, folded FROM search_retired WHERE message_id <= ?",
            (last,),
        )
        conn.exec_driver_sql(
            f"INSERT INTO {table} (rowid, folded) "
            "SELECT d.message_id, d.folded FROM search_retired r "
            "JOIN search_documents d ON d.message_id = r.message_id WHERE r.message_id <= ?",
            (last,),
        )
    conn.exec_driver_sql("DELETE FROM search_retired WHERE message_id <= ?", (last,))
    conn.exec_driver_sql("UPDATE search_state SET purge_pending = 1")
    return len(ids)


def catch_up(conn: Connection, limit: int = CATCH_UP_CHUNK) -> int:
    """Index up to `limit` documents past the watermark and move it; how many."""
    watermark = _watermark(conn)
    top = conn.exec_driver_sql(
        "SELECT max(message_id), count(*) FROM (SELECT message_id FROM search_documents "
        "WHERE message_id > ? ORDER BY message_id LIMIT ?)",
        (watermark, limit),
    ).one()
    newest, count = top
    if not count:
        return 0
    for table in FTS_TABLES:
        conn.exec_driver_sql(
            f"INSERT INTO {table} (rowid, folded) "
            "SELECT message_id, folded FROM search_documents "
            "WHERE message_id > ? AND message_id <= ? ORDER BY message_id",
            (watermark, newest),
        )
    conn.exec_driver_sql("UPDATE search_state SET watermark = ?", (newest,))
    return int(count)


def merge_step(conn: Connection, pages: int) -> bool:
    """One step of the merge that follows a removal: up to about `pages` pages of each
    FTS5 table rewritten. True once no merge is pending (the removed entries are then
    out of every segment)."""
    pending = conn.exec_driver_sql("SELECT purge_pending FROM search_state").scalar_one()
    if not pending:
        return True
    raw = conn.connection.dbapi_connection
    assert raw is not None
    worked = False
    for table in FTS_TABLES:
        before = raw.total_changes
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({table}, rank) VALUES ('merge', ?)",
            (-pages,),
        )
        # FTS5's documented test: a merge that did any work changed two rows or more.
        worked = worked or raw.total_changes - before >= 2
    if worked:
        return False
    conn.exec_driver_sql("UPDATE search_state SET purge_pending = 0")
    return True


# --- queries --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Whose messages a search looks at: the user's, or one conversation of theirs."""

    user_id: int
    peer_id: int | None

    def sql(self) -> str:
        """The condition on `messages m` (parameters `me`, `peer`)."""
        if self.peer_id is None:
            return "(m.sender_id = :me OR m.recipient_id = :me)"
        return (
            "((m.sender_id = :me AND m.recipient_id = :peer) OR "
            "(m.sender_id = :peer AND m.recipient_id = :me))"
        )

    def params(self) -> dict[str, Any]:
        return {"me": self.user_id, "peer": self.peer_id}


def _visible() -> str:
    """Not deleted for everyone, nor by the caller (`me`) for themselves."""
    return (
        "m.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM hidden_messages h "
        "WHERE h.user_id = :me AND h.message_id = m.id)"
    )


def find_message_ids(
    conn: Connection, scope: Scope, terms: Terms, before: int | None, want: int
) -> list[int]:
    """Up to `want` ids of the scope's visible messages matching `terms`, newest first,
    older than `before` if given."""
    if _is_sqlite(conn):
        return _sqlite_ids(conn, scope, terms, before, want)
    return _postgresql_ids(conn, scope, terms, before, want)


def _sqlite_ids(
    conn: Connection, scope: Scope, terms: Terms, before: int | None, want: int
) -> list[int]:
    params = {**scope.params(), "watermark": _watermark(conn), "before": before or 2**63 - 1}
    # Every term is a substring of a matching document: SQLite checks that much
    # itself (instr), so only those rows come back to be checked whole.
    contains = []
    for index, term in enumerate(terms):
        params[f"term{index}"] = term
        contains.append(f"instr(d.folded, :term{index}) > 0")
    clauses = {"scope": scope.sql(), "visible": _visible(), "contains": " AND ".join(contains)}
    if _scope_size(conn, scope, SCAN_MAX + 1) <= SCAN_MAX:
        found = _matching(conn, _SCOPE_SCAN.format(**clauses), params, terms)
    else:
        found = _matching(conn, _FRESH.format(**clauses), params, terms)
        found += _through_fts(conn, clauses, terms, params, want)
    return sorted(set(found), reverse=True)[:want]


# A small scope's documents, read whole.
_SCOPE_SCAN = (
    "SELECT d.message_id, d.folded FROM messages m "
    "CROSS JOIN search_documents d ON d.message_id = m.id "
    "WHERE {scope} AND m.id < :before AND {contains} AND {visible}"
)
# What FTS5 does not (rightly) hold: documents past the watermark, and indexed ones
# changed since, whose FTS5 entries still hold the old text. Both are what changed
# since the indexer's last round, so the scan is short; CROSS JOIN keeps them the
# outer loops (the planner would otherwise walk all of the user's messages).
_FRESH = (
    "SELECT d.message_id, d.folded FROM search_documents d "
    "CROSS JOIN messages m ON m.id = d.message_id "
    "WHERE d.message_id > :watermark AND d.message_id < :before AND {contains} "
    "AND {scope} AND {visible} "
    "UNION ALL "
    "SELECT d.message_id, d.folded FROM search_retired r "
    "CROSS JOIN search_documents d ON d.message_id = r.message_id "
    "CROSS JOIN messages m ON m.id = d.message_id "
    "WHERE r.message_id <= :watermark AND r.message_id < :before AND {contains} "
    "AND {scope} AND {visible}"
)


def _matching(conn: Connection, sql: str, params: dict[str, Any], terms: Terms) -> list[int]:
    """The ids of the (id, folded document) rows of `sql` whose document matches."""
    return [mid for mid, folded in conn.execute(text(sql), params) if matches(folded, terms)]


def _through_fts(
    conn: Connection, clauses: dict[str, str], terms: Terms, params: dict[str, Any], want: int
) -> list[int]:
    """Up to about `want` matching ids at or below the watermark, newest first: FTS5
    proposes candidates in id order, the current document decides (an entry may still
    hold a retired text)."""
    table, match = _fts_query(terms)
    statement = text(
        f"SELECT f.rowid, d.folded FROM {table} f "
        "CROSS JOIN search_documents d ON d.message_id = f.rowid "
        "CROSS JOIN messages m ON m.id = f.rowid "
        f"WHERE f.{table} MATCH :match AND f.rowid < :cursor AND {clauses['contains']} "
        f"AND {clauses['scope']} AND {clauses['visible']} ORDER BY f.rowid DESC LIMIT :chunk"
    )
    found: list[int] = []
    cursor = min(params["before"], params["watermark"] + 1)
    while len(found) < want:
        candidates = conn.execute(
            statement, {**params, "match": match, "cursor": cursor, "chunk": CANDIDATE_CHUNK}
        ).all()
        found += [mid for mid, folded in candidates if matches(folded, terms)]
        if len(candidates) < CANDIDATE_CHUNK:
            break
        cursor = candidates[-1][0]
    return found


def _scope_size(conn: Connection, scope: Scope, cap: int) -> int:
    """How many messages the scope holds, counted up to `cap` per direction (index
    entries only)."""
    if scope.peer_id is None:
        halves = ("sender_id = :me", "recipient_id = :me")
    else:
        halves = (
            "sender_id = :me AND recipient_id = :peer",
            "sender_id = :peer AND recipient_id = :me",
        )
    params = {**scope.params(), "cap": cap}
    return sum(
        conn.execute(
            text(f"SELECT count(*) FROM (SELECT 1 FROM messages WHERE {half} LIMIT :cap) AS half"),
            params,
        ).scalar_one()
        for half in halves
    )


def _fts_query(terms: Terms) -> tuple[str, str]:
    """The FTS5 table and MATCH expression that propose candidates for `terms`: every
    trigram of the long terms, or else every short term as a word prefix."""
    if terms.long:
        return "search_trigrams", " AND ".join(fts5_string(gram) for gram in trigrams(terms))
    return "search_words", " AND ".join(fts5_string(term) + "*" for term in terms.short)


def _postgresql_ids(
    conn: Connection, scope: Scope, terms: Terms, before: int | None, want: int
) -> list[int]:
    params: dict[str, Any] = {**scope.params(), "want": want, "before": before or 2**63 - 1}
    # The terms as typed, folded by PostgreSQL like the bodies its indexes hold.
    conditions = []
    for index, term in enumerate(terms.long):
        params[f"like{index}"] = "%" + _like_escaped(terms.as_typed(term)) + "%"
        conditions.append(f"messenger_fold(m.body) LIKE messenger_fold(:like{index})")
    if terms.short:
        typed = (terms.as_typed(term) for term in terms.short)
        params["tsquery"] = " & ".join(_tsquery_prefix(term) for term in typed)
        conditions.append(
            "to_tsvector('simple'::regconfig, messenger_fold(m.body)) "
            "@@ to_tsquery('simple'::regconfig, messenger_fold(:tsquery))"
        )
    matching = " AND ".join(conditions)
    if _scope_size(conn, scope, SCAN_MAX + 1) <= SCAN_MAX:
        # As on SQLite: a small scope is read whole. Left to itself, the planner ANDs
        # a common trigram's posting list (most of the table) with the user's rows.
        sql = (
            "WITH m AS MATERIALIZED (SELECT m.id, m.body FROM messages m "
            f"WHERE {scope.sql()} AND m.id < :before AND {_visible()}) "
            f"SELECT m.id FROM m WHERE {matching} ORDER BY m.id DESC LIMIT :want"
        )
    else:
        sql = (
            f"SELECT m.id FROM messages m WHERE {scope.sql()} AND {_visible()} "
            f"AND m.id < :before AND {matching} ORDER BY m.id DESC LIMIT :want"
        )
    return [mid for (mid,) in conn.execute(text(sql), params)]


def _like_escaped(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _tsquery_prefix(term: str) -> str:
    """A short term as a tsquery prefix lexeme, quoted so nothing in it is syntax."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "':*"
