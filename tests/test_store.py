"""The schema: migrations match the models on both backends, and the hot queries are
served by indexes (a page must not cost more as the table grows)."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import Connection, Select, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from messenger.protocol import STATUS_DELIVERED, STATUS_READ, STATUS_SENT
from messenger.store.accounts import _removed_statement, removed_users
from messenger.store.blocks import _blocks_statement, blocking_pairs
from messenger.store.db import open_database
from messenger.store.message_reads import (
    UNDELIVERED_PAGE,
    conversation_page,
    conversation_query,
    conversations_query,
)
from messenger.store.messages import (
    MESSAGES_PER_INSERT,
    insert_messages,
    mark_status,
    sqlite_mark_statement,
)
from messenger.store.migrate import alembic_config, check, upgrade
from messenger.store.models import messages, users
from messenger.store.sized_statements import PAIRS_PER_LOOKUP, _driver_statement
from messenger.store.streams import (
    IDS_PER_READ,
    STREAM_PAGE,
    _stream_heads_statement,
    advance_stream_heads,
    insert_stream_events,
    stream_heads,
)
from messenger.store.users import insert_user
from messenger.store.writer_statements import compile_writer_statements
from messenger.wire import format_time
from tests.conftest import PG_HOST_URL, _pg_admin
from tests.store_support import blocking_pairs_queries, messages_by_client_ids_queries
from tests.support import sql


async def test_migrations_match_models(database_url: str) -> None:
    """`alembic check`: autogenerate finds nothing between the models and head."""
    check(database_url)
    upgrade(database_url)  # running it again at head is a no-op
    check(database_url)


def test_postgresql_builds_0002s_indexes_concurrently() -> None:
    """On PostgreSQL, migration 0002 builds and drops its indexes CONCURRENTLY, outside
    the migration's transaction, so that sends go on while a large table is read."""
    config = alembic_config("postgresql+asyncpg://nobody@127.0.0.1/offline")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "0001:0002", sql=True)
    script = config.output_buffer.getvalue()
    outside = script[script.index("COMMIT;") : script.rindex("BEGIN;")]
    for name in ("received", "undelivered"):
        assert f"CREATE INDEX CONCURRENTLY ix_messages_{name} ON messages" in outside
    for name in ("conversation", "backlog"):
        assert f"DROP INDEX CONCURRENTLY IF EXISTS ix_messages_{name}" in outside
    assert "CREATE INDEX ix_" not in script


async def test_postgresql_upgrade_to_0002_finishes_after_a_failed_build(
    empty_pg_url: str,
) -> None:
    """A concurrent build that fails leaves an invalid index of its name behind (here
    a unique build over duplicates); the upgrade run again replaces it, and the
    database matches the models."""
    upgrade(empty_pg_url, "0001")
    conn = await asyncpg.connect(empty_pg_url.replace("+asyncpg", ""))
    try:
        await conn.execute(
            "INSERT INTO users (username, password_hash, created_at, stream_seq)"
            " VALUES ('a', 'x', now(), 0), ('b', 'x', now(), 0)"
        )
        await conn.execute(
            "INSERT INTO messages (sender_id, recipient_id, body, client_id, sent_at, status,"
            " recipient_seq) SELECT 1, 2, 'hi', 'c' || n, now(), 0, n FROM generate_series(1, 2) n"
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_messages_received ON messages (recipient_id)"
            )
        assert await _index_validity(conn) == {"ix_messages_received": False}
        upgrade(empty_pg_url)
        check(empty_pg_url)
        assert await _index_validity(conn) == {
            "ix_messages_received": True,
            "ix_messages_undelivered": True,
        }
    finally:
        await conn.close()


@pytest.fixture
async def unmigrated_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database without tables, of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}"
        return
    name = f"messenger_test_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    yield f"{PG_HOST_URL}/{name}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_0003_upgrades_and_downgrades_a_database_with_messages(
    unmigrated_url: str,
) -> None:
    """Migration 0003 (the message lifecycle) only adds: messages stored before it
    keep everything and read as not edited, not deleted, read publicly; its downgrade
    gives 0002 back with the messages, and the upgrade runs again."""
    url = unmigrated_url
    upgrade(url, "0002")
    await sql(
        url,
        "INSERT INTO users (username, password_hash, created_at, stream_seq)"
        " VALUES ('ann', 'x', CURRENT_TIMESTAMP, 1), ('bob', 'x', CURRENT_TIMESTAMP, 1)",
        "INSERT INTO messages (sender_id, recipient_id, body, client_id, sent_at, status,"
        " recipient_seq) VALUES (1, 2, 'kept', 'c-1', CURRENT_TIMESTAMP, 2, 1)",
    )
    upgrade(url)
    check(url)
    after = await sql(
        url,
        "SELECT body, status, reply_to_id, edited_at, deleted_at, read_private FROM messages",
        "SELECT username, read_receipts FROM users ORDER BY id",
    )
    assert after == [
        ("kept", 2, None, None, None, False),
        ("ann", True),
        ("bob", True),
    ]
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0002")
    assert await sql(url, "SELECT body, status FROM messages") == [("kept", 2)]
    upgrade(url)
    check(url)


async def _index_validity(conn: asyncpg.Connection) -> dict[str, bool]:
    """0002's indexes on `messages` present, and whether each is valid."""
    rows = await conn.fetch(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'messages'::regclass"
        " AND c.relname IN ('ix_messages_received', 'ix_messages_undelivered')"
    )
    return {row["relname"]: row["indisvalid"] for row in rows}


async def _plan(
    database_url: str,
    statement: Select[Any],
    params: dict[str, Any],
    forbid: tuple[str, ...] = ("enable_seqscan", "enable_bitmapscan", "enable_sort"),
) -> str:
    """The plan of `statement` run with `params` bound (arrays cannot be inlined)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            compiled = statement.params(params).compile(
                dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
            )
            values = compiled.construct_params()
            args = tuple(values[name] for name in compiled.positiontup or ())
            if engine.dialect.name == "sqlite":
                rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), args)
                return "\n".join(str(row[-1]) for row in rows)
            # The test tables are tiny, where a scan and a sort are cheapest: forbid
            # them, to see whether an index can serve the query in order at all.
            for setting in forbid:
                await conn.exec_driver_sql(f"SET {setting} = off")
            rows = await conn.exec_driver_sql("EXPLAIN " + str(compiled), args)
            return "\n".join(str(row[0]) for row in rows)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("before, after", [(None, None), (500, None), (None, 500)])
async def test_history_page_reads_each_direction_from_the_received_index(
    database_url: str, before: int | None, after: int | None
) -> None:
    plan = await _plan(database_url, *conversation_query(1, 2, before, after, 51))
    assert plan.count("ix_messages_received") == 2, plan
    # Each direction is read in index order: no sort of a whole conversation.
    assert "SCAN messages" not in plan and "Seq Scan" not in plan, plan


async def test_backlog_page_uses_the_undelivered_index(database_url: str) -> None:
    plan = await _plan(
        database_url,
        UNDELIVERED_PAGE,
        {"recipient_id": 1, "after_seq": 0, "up_to_seq": 10_000, "limit": 500},
    )
    assert "ix_messages_undelivered" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


async def test_conversation_list_reads_a_users_messages_by_index(database_url: str) -> None:
    """What a user sent, by the (sender, client_id) index; what they received and
    what of it is unread, by the received index: never a scan of all messages."""
    plan = await _plan(database_url, conversations_query(1, 20), {}, ("enable_seqscan",))
    assert "sqlite_autoindex_messages_1" in plan or "uq_messages_sender_id_client_id" in plan, plan
    assert "ix_messages_received" in plan, plan
    assert "SCAN messages" not in plan and "Seq Scan on messages" not in plan, plan


async def test_stream_page_uses_the_primary_key(database_url: str) -> None:
    plan = await _plan(database_url, STREAM_PAGE, {"user_id": 1, "after_seq": 100, "limit": 500})
    assert "pk_stream_events" in plan or "PRIMARY KEY" in plan or "sqlite_autoindex" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def _dialect(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


async def test_repeat_lookup_probes_the_unique_index(database_url: str) -> None:
    """The writer looks up a batch's (sender, client_id) keys at once: by index
    probes, never a scan of all messages (which grows with every message stored)."""
    keys = [(1, "c-1"), (2, "c-2"), (3, "c-3")]
    ((statement, params),) = messages_by_client_ids_queries(_dialect(database_url), keys)
    # PostgreSQL may answer a set of keys with a bitmap of index probes.
    plan = await _plan(database_url, statement, params, forbid=("enable_seqscan",))
    assert "sqlite_autoindex_messages_1" in plan or "uq_messages_sender_id_client_id" in plan, plan
    assert "SCAN messages" not in plan and "Seq Scan on messages" not in plan, plan


async def test_block_lookup_probes_the_key(database_url: str) -> None:
    pairs = [(1, 2), (3, 4)]
    ((statement, params),) = blocking_pairs_queries(_dialect(database_url), pairs)
    plan = await _plan(database_url, statement, params, forbid=("enable_seqscan",))
    assert "sqlite_autoindex_blocks_1" in plan or "pk_blocks" in plan, plan
    assert "SCAN blocks" not in plan and "Seq Scan on blocks" not in plan, plan


def _plan_cache_mode(conn: Any) -> str:
    return str(conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one())


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgresql_plans_each_execution(database_url: str) -> None:
    """asyncpg prepares every statement, and PostgreSQL may keep a generic plan made
    while a table was small (a scan) after it has grown; every connection of the
    server plans each execution instead (messenger/store/db.py)."""
    upgrade(database_url)
    db = open_database(database_url)
    try:
        assert await db.read(_plan_cache_mode) == "force_custom_plan"
        assert await db.write(_plan_cache_mode) == "force_custom_plan"
        assert await db.write_batch(_plan_cache_mode) == "force_custom_plan"
    finally:
        await db.dispose()


def _left_in_a_transaction(conn: Any) -> bool:
    """After a statement, whether the server still holds a transaction open (asyncpg
    tracks the server's status)."""
    conn.exec_driver_sql("SELECT 1")
    return bool(conn.connection.driver_connection.is_in_transaction())


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgresql_reads_send_no_begin(database_url: str) -> None:
    """PostgreSQL reads run statement by statement: BEGIN and ROLLBACK were two of a
    history page's three round trips, and under READ COMMITTED each statement has a
    snapshot of its own either way. Writes keep their transactions."""
    db = open_database(database_url)
    try:
        assert not await db.read(_left_in_a_transaction)
        assert await db.write(_left_in_a_transaction)
        assert await db.write_batch(_left_in_a_transaction)
    finally:
        await db.dispose()


def _temp_store(conn: Connection) -> int:
    """0: SQLite's default (files), 1: files, 2: memory."""
    return int(conn.exec_driver_sql("PRAGMA temp_store").scalar_one())


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_writer_journals_statements_in_memory(database_url: str) -> None:
    """The writer's statement journals stay in memory instead of spilling to a
    temporary file in every batch (messenger/store/db.py); readers keep files, since
    their sorts are not bounded by a batch."""
    db = open_database(database_url)
    try:
        assert await db.write_batch(_temp_store) == 2
        assert await db.write(_temp_store) == 2
        assert await db.read(_temp_store) == 0
    finally:
        await db.dispose()


SENT_AT = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)


def _message_row(
    sender_id: int,
    recipient_id: int,
    client_id: str,
    seq: int,
    sent_at: datetime = SENT_AT,
    read_at: datetime | None = None,
) -> dict[str, Any]:
    """A new message's row, as the writer hands it to `insert_messages`."""
    return {
        "sender_id": sender_id,
        "recipient_id": recipient_id,
        "body": client_id,
        "client_id": client_id,
        "sent_at": sent_at,
        "status": STATUS_SENT,
        "delivered_at": None,
        "read_at": read_at,
        "recipient_seq": seq,
    }


def _store_messages(conn: Connection, keys: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """Insert a message per (sender index, client_id) key in the order given; returns
    (id, sender_id, client_id) as stored, in the order of the ids insert_messages gave,
    and checks that each row reads back with the time it was given."""
    now = SENT_AT
    people = [insert_user(conn, f"user{i}", "x", now) for i in range(3)]
    rows = [
        _message_row(people[sender], people[(sender + 1) % 3], client_id, position + 1, now)
        for position, (sender, client_id) in enumerate(keys)
    ]
    ids = insert_messages(conn, rows)
    found = conn.execute(select(messages).where(messages.c.id.in_(ids))).all()
    assert {(row.sent_at, row.delivered_at, row.read_at) for row in found} == {(now, None, None)}
    stored = {row.id: (row.sender_id, row.client_id) for row in found}
    return [(message_id, *stored[message_id]) for message_id in ids]


# Neither key order sorted; then more rows than one SQLite statement takes.
SHUFFLED_KEYS = [(2, "b"), (0, "b"), (1, "a"), (0, "a"), (2, "c")]
MANY_KEYS = [(i % 3, f"k{(i * 37) % 150}") for i in range(150)]


@pytest.mark.parametrize("keys", [SHUFFLED_KEYS, MANY_KEYS], ids=["shuffled", "chunked"])
async def test_insert_messages_gives_each_row_its_own_id(
    database_url: str, keys: list[tuple[int, str]]
) -> None:
    """Multi-row INSERTs; RETURNING promises no order, so the ids are matched to
    the rows by their (sender, client_id) keys: the nth id is the nth row's."""
    assert len(MANY_KEYS) > MESSAGES_PER_INSERT
    db = open_database(database_url)
    try:
        stored = await db.write(_store_messages, keys)
    finally:
        await db.dispose()
    assert len({message_id for message_id, _, _ in stored}) == len(keys)
    assert [client_id for _, _, client_id in stored] == [client_id for _, client_id in keys]
    people = sorted({sender_id for _, sender_id, _ in stored})
    assert [sender_id for _, sender_id, _ in stored] == [people[i] for i, _ in keys]


def _mark_many(conn: Connection) -> dict[str, Any]:
    """300 messages to bob (and one to carol), marked delivered with a stranger's
    pair and repeats mixed in, then some of them read."""
    now = SENT_AT
    alice, bob, carol = (insert_user(conn, name, "x", now) for name in "abc")
    rows = [_message_row(alice, carol if i == 0 else bob, f"m{i}", i + 1, now) for i in range(301)]
    to_carol, *to_bob = insert_messages(conn, rows)
    later = now + timedelta(seconds=1)
    pairs = [(bob, message_id) for message_id in reversed(to_bob)] + [(bob, to_bob[5])]
    delivered = mark_status(conn, [*pairs, (bob, to_carol)], STATUS_DELIVERED, now)
    again = mark_status(conn, pairs, STATUS_DELIVERED, later)
    read = mark_status(conn, [(bob, m) for m in to_bob[:3]], STATUS_READ, later)
    found = {row.id: row for row in conn.execute(select(messages))}
    return {
        "people": (alice, bob),
        "to_carol": to_carol,
        "to_bob": to_bob,
        "results": (delivered, again, read),
        "found": found,
    }


async def test_marks_raise_only_the_recipients_messages_once(database_url: str) -> None:
    """More pairs than one SQLite statement takes: each of bob's messages changes
    once (receipts never repeat), carol's is not bob's to mark, reading keeps the
    delivery time, and the times read back as given."""
    assert 300 > PAIRS_PER_LOOKUP
    db = open_database(database_url)
    try:
        got = await db.write(_mark_many)
    finally:
        await db.dispose()
    (alice, bob), to_bob, found = got["people"], got["to_bob"], got["found"]
    delivered, again, read = got["results"]
    assert delivered == [(message_id, alice, bob) for message_id in sorted(to_bob)]
    assert again == []
    assert read == [(message_id, alice, bob) for message_id in to_bob[:3]]
    assert found[got["to_carol"]].status == STATUS_SENT
    later = SENT_AT + timedelta(seconds=1)
    for message_id in to_bob:
        row = found[message_id]
        assert row.delivered_at == SENT_AT
        if message_id in to_bob[:3]:
            assert (row.status, row.read_at) == (STATUS_READ, later)
        else:
            assert (row.status, row.read_at) == (STATUS_DELIVERED, None)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_marks_probe_the_primary_key(database_url: str) -> None:
    """SQLite's marks find each (recipient, message) pair by the primary key, never by
    a scan of all messages (PostgreSQL's statement finds the ids in an array)."""
    params = {"status": 1, "now": "2026-12-02 00:00:00.000000"}
    params |= {f"{key}{i}": i + 1 for i in range(4) for key in "ab"}
    engine = create_async_engine(database_url)
    try:
        marks = sqlite_mark_statement(sets_read_at=False, size=4, private=False)
        sql, names = marks.compiled_for(engine.dialect)
        async with engine.connect() as conn:
            rows = await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, tuple(params[name] for name in names)
            )
            plan = "\n".join(str(row[-1]) for row in rows)
    finally:
        await engine.dispose()
    assert "INTEGER PRIMARY KEY" in plan or "USING PRIMARY KEY" in plan, plan
    assert "SCAN messages" not in plan, plan


async def test_stream_heads_read_in_padded_chunks_match_the_table(database_url: str) -> None:
    """The writer reads stream heads through statements of power-of-two sizes, the last
    id repeated: whatever the count, one head per user, as stored."""
    db = open_database(database_url)
    try:
        reads = await db.write(_heads_three_ways)
    finally:
        await db.dispose()
    for stored, read in reads:
        assert read == stored


def _heads_three_ways(conn: Connection) -> list[tuple[dict[int, int], dict[int, int]]]:
    now = datetime.now(UTC)
    count = IDS_PER_READ + 6  # two chunks, the second padded
    ids = [insert_user(conn, f"heads{i}", "x", now) for i in range(count)]
    advance_stream_heads(conn, {uid: 1 + uid % 5 for uid in ids}, lock_first=False)
    reads = []
    for wanted in (ids[:1], ids[2:5], ids):
        stored = {
            row.id: row.stream_seq
            for row in conn.execute(select(users).where(users.c.id.in_(wanted)))
        }
        reads.append((stored, stream_heads(conn, wanted)))
    return reads


async def test_driver_statements_raise_sqlalchemys_errors(database_url: str) -> None:
    """Statements handed to the driver raise the driver's errors as SQLAlchemy does (the
    writer retries a batch on `IntegrityError`), without the values in the message
    (they hold message bodies); and, first on a connection, begin its transaction as
    SQLAlchemy would (a read's snapshot starts there)."""
    db = open_database(database_url)
    try:
        with pytest.raises(IntegrityError) as caught:
            await db.write(_insert_an_event_twice)
        assert await db.read(_read_heads_first) == (False, True)
    finally:
        await db.dispose()
    assert "secret body" not in str(caught.value)


def _insert_an_event_twice(conn: Connection) -> None:
    user = insert_user(conn, "twice", "x", datetime.now(UTC))
    event = {"user_id": user, "seq": 1, "kind": 2, "message_id": None, "payload": "secret body"}
    insert_stream_events(conn, [event])
    insert_stream_events(conn, [event])


def _read_heads_first(conn: Connection) -> tuple[bool, bool]:
    """Whether the connection was in a transaction before and after its first statement,
    one handed to the driver."""
    before = conn.in_transaction()
    stream_heads(conn, [1])
    return before, conn.in_transaction()


# What the writer runs through the driver, in sizes (functools caches).
SIZED_STATEMENTS = {
    "sqlite": (
        _stream_heads_statement,
        _removed_statement,
        _blocks_statement,
        _driver_statement,
        sqlite_mark_statement,
    ),
    "postgresql": (_stream_heads_statement, _removed_statement),
}


async def test_the_writers_statements_are_compiled_before_its_first_batch(
    database_url: str,
) -> None:
    """Once `compile_writer_statements` has run (the writer runs it as it starts),
    batches of any size find every statement they run through the driver made and
    compiled: none is made in a batch (a compile took up to 15 ms, and held the batch)."""
    sized = SIZED_STATEMENTS[make_url(database_url).get_backend_name()]
    for statement_of_size in sized:
        statement_of_size.cache_clear()
    db = open_database(database_url)
    try:
        await db.read(compile_writer_statements)
        made = [statement_of_size.cache_info().currsize for statement_of_size in sized]
        await db.write(_batches_of_every_size)
    finally:
        await db.dispose()
    assert [statement_of_size.cache_info().currsize for statement_of_size in sized] == made


def _batches_of_every_size(conn: Connection) -> None:
    """The writer's sized statements, for every count a batch can have (no rows match)."""
    now = datetime.now(UTC)
    for count in range(1, PAIRS_PER_LOOKUP + 2):
        pairs = [(1, message_id) for message_id in range(count)]
        blocking_pairs(conn, pairs)
        mark_status(conn, pairs, STATUS_DELIVERED, now)
        mark_status(conn, pairs, STATUS_READ, now)
    for count in range(1, 2 * IDS_PER_READ, 7):
        stream_heads(conn, list(range(count)))
        removed_users(conn, list(range(count)))


TIMES = [
    datetime(2026, 12, 1, 12, 0, 0, 123000, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    datetime(2027, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 7, 8, 9, 1000, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-5))),
]


async def test_a_page_shows_times_as_the_api_formats_them(database_url: str) -> None:
    """History pages take their times formatted by the database (`api_time`); each must
    read exactly as `format_time` writes the stored value, on both databases."""
    db = open_database(database_url)
    try:
        page = await db.write(_page_of_times)
    finally:
        await db.dispose()
    assert [row["sent_at"] for row in page] == [format_time(at) for at in TIMES]
    assert [row["read_at"] for row in page] == [format_time(at) for at in TIMES[::-1]]
    assert [row["delivered_at"] for row in page] == [None] * len(TIMES)


def _page_of_times(conn: Connection) -> list[Any]:
    ann, bob = (insert_user(conn, name, "x", TIMES[0]) for name in ("tann", "tbob"))
    rows = [
        _message_row(ann, bob, f"t{i}", i + 1, at, read_at)
        for i, (at, read_at) in enumerate(zip(TIMES, TIMES[::-1], strict=True))
    ]
    insert_messages(conn, rows)
    return conversation_page(conn, ann, bob, None, None, len(TIMES))


def _backend_pid(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_read_outlives_connections_postgresql_closed(database_url: str) -> None:
    """Reads take pooled connections without checking them first; one that PostgreSQL
    closed meanwhile (a restart, an administrator) costs the read a second try, not
    an error."""
    db = open_database(database_url)
    try:
        before = await db.read(_backend_pid)
        admin = await asyncpg.connect(
            make_url(database_url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            closed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert closed >= 1
        after = await db.read(_backend_pid)
        assert after != before  # a new connection answered
    finally:
        await db.dispose()
