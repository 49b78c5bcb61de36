"""Search: the full-text index over message bodies (messenger/store/search.py).

SQLite: the folded documents of existing messages are written here (folding is
Python's, as in the writer) and the FTS5 tables are built from them in one `rebuild`;
the watermark then covers them all.

PostgreSQL: `pg_trgm` and `unaccent`, an immutable folding function, and two GIN
indexes over the folded body, built `CONCURRENTLY` (outside a transaction), so that a
node still serving on the old schema is not blocked while they build.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 19:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from messenger.text_search import fold

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_CHUNK = 5_000

SQLITE_TABLES = (
    "CREATE TABLE search_documents (message_id INTEGER PRIMARY KEY, folded TEXT NOT NULL)",
    "CREATE TABLE search_retired (message_id INTEGER PRIMARY KEY, folded TEXT NOT NULL)",
    "CREATE TABLE search_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "watermark INTEGER NOT NULL, purge_pending INTEGER NOT NULL)",
    "CREATE VIRTUAL TABLE search_words USING fts5(folded, content='search_documents', "
    "content_rowid='message_id', tokenize='unicode61 remove_diacritics 2', detail=none)",
    "CREATE VIRTUAL TABLE search_trigrams USING fts5(folded, content='search_documents', "
    "content_rowid='message_id', tokenize='trigram', detail=none)",
)

# `unaccent(regdictionary, text)` is stable, not immutable (the dictionary could
# change), so an index needs this wrapper; a changed dictionary needs a REINDEX.
POSTGRESQL_FOLD = """
CREATE OR REPLACE FUNCTION messenger_fold(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN lower(public.unaccent('public.unaccent'::regdictionary, body))
"""
POSTGRESQL_INDEXES = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_messages_search_words ON messages "
    "USING gin (to_tsvector('simple'::regconfig, messenger_fold(body)))",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_messages_search_trigrams ON messages "
    "USING gin (messenger_fold(body) gin_trgm_ops)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()


def _upgrade_sqlite() -> None:
    bind = op.get_bind()
    for statement in SQLITE_TABLES:
        bind.exec_driver_sql(statement)
    last = 0
    while True:
        rows = bind.execute(
            text(
                "SELECT id, body FROM messages WHERE id > :last AND deleted_at IS NULL "
                "ORDER BY id LIMIT :chunk"
            ),
            {"last": last, "chunk": BACKFILL_CHUNK},
        ).all()
        if not rows:
            break
        bind.exec_driver_sql(
            "INSERT INTO search_documents (message_id, folded) VALUES (?, ?)",
            [(mid, fold(body)) for mid, body in rows],
        )
        last = rows[-1][0]
    for table in ("search_words", "search_trigrams"):
        bind.exec_driver_sql(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")
    bind.exec_driver_sql(
        "INSERT INTO search_state (id, watermark, purge_pending) "
        "SELECT 1, coalesce(max(message_id), 0), 0 FROM search_documents"
    )


def _upgrade_postgresql() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    op.execute(POSTGRESQL_FOLD)
    with op.get_context().autocommit_block():
        for statement in POSTGRESQL_INDEXES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in (
            "search_trigrams",
            "search_words",
            "search_state",
            "search_retired",
            "search_documents",
        ):
            op.execute(f"DROP TABLE {table}")
        return
    with op.get_context().autocommit_block():
        for name in ("ix_messages_search_trigrams", "ix_messages_search_words"):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute("DROP FUNCTION IF EXISTS messenger_fold(text)")
