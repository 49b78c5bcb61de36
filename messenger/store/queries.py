"""Queries: plain functions of a connection that never commit (the caller owns the
transaction: `Database.read` and `Database.write` run them). Core statements over the
tables of `models`; rows come back as mappings.

The statements of the hot paths (every send, mark, connect and page) are built once,
with bound parameters: building a Core statement and its cache key on each call cost
more than running it did on SQLite (docs/dev/performance-log.md has the profile).
Lists go in as expanding parameters, so the statement stays the same; the
writer's per-batch statements skip even that (`DriverStatement`, compiled once, with
lists padded to a few sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    RowMapping,
    Select,
    String,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import BindParameter

from messenger.protocol import STATUS_READ, STATUS_SENT
from messenger.store.api_time import api_time
from messenger.store.driver_sql import DriverStatement, RowsInsert
from messenger.store.models import blocks, messages, stream_events, tokens, users

# -- users ------------------------------------------------------------------------------


def insert_user(conn: Connection, username: str, password_hash: str, now: datetime) -> int:
    result = conn.execute(
        insert(users)
        .values(username=username, password_hash=password_hash, created_at=now, stream_seq=0)
        .returning(users.c.id)
    )
    return int(result.scalar_one())


def user_by_name(conn: Connection, username: str) -> RowMapping | None:
    result = conn.execute(select(users).where(users.c.username == username))
    return result.mappings().one_or_none()


def replace_password_hash(conn: Connection, user_id: int, old: str, new: str) -> None:
    """A rehash at the current cost, only over the hash just verified: a concurrent
    change of password wins."""
    conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.password_hash == old)
        .values(password_hash=new)
    )


def users_by_names(conn: Connection, names: Sequence[str]) -> list[RowMapping]:
    result = conn.execute(
        select(users.c.id, users.c.username, users.c.last_seen).where(users.c.username.in_(names))
    )
    return list(result.mappings())


def usernames(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    result = conn.execute(select(users.c.id, users.c.username).where(users.c.id.in_(list(ids))))
    return {row.id: row.username for row in result}


_STREAM_HEAD = select(users.c.stream_seq).where(users.c.id == bindparam("user_id"))
_LOCK_USERS = (
    select(users.c.id)
    .where(users.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(users.c.id)
    .with_for_update()
)
_ADVANCE_HEADS = DriverStatement(
    update(users)
    .where(users.c.id == bindparam("uid"))
    .values(stream_seq=users.c.stream_seq + bindparam("step"))
)
_TOUCH = update(users).where(users.c.id == bindparam("uid")).values(last_seen=bindparam("seen"))


def stream_head(conn: Connection, user_id: int) -> int:
    """The cursor of the user's newest event (0 before the first, or no such user)."""
    result = conn.execute(_STREAM_HEAD, {"user_id": user_id})
    return int(result.scalar_one_or_none() or 0)


def stream_heads(conn: Connection, user_ids: Sequence[int]) -> dict[int, int]:
    """The users' cursors, read by statements of a few sizes (see `_padded`) compiled
    once each: the writer reads them for every batch."""
    heads: dict[int, int] = {}
    for chunk in _padded(list(user_ids), IDS_PER_READ):
        values = {f"u{i}": user_id for i, user_id in enumerate(chunk)}
        result = _stream_heads_statement(len(chunk)).execute(conn, values)
        heads.update((user_id, seq) for user_id, seq in result)
    return heads


# Ids per stream-heads read (a batch's users fit in one).
IDS_PER_READ = 1024


@cache
def _stream_heads_statement(size: int) -> DriverStatement:
    wanted = [bindparam(f"u{i}", type_=Integer) for i in range(size)]
    return DriverStatement(select(users.c.id, users.c.stream_seq).where(users.c.id.in_(wanted)))


def compile_writer_statements(conn: Connection) -> None:
    """Compile now, before any load, every size of the statements the writer runs
    through the driver. Compiling takes longer the larger the statement, and each
    was paid by the writer in the first batch that needed it, which made the batches
    of a server's first seconds under load wait for them."""
    dialect = conn.dialect
    for size in _padded_sizes(IDS_PER_READ):
        _stream_heads_statement(size).compiled_for(dialect)
    if dialect.name == "sqlite":
        _SQLITE_INSERT_MESSAGES.parts_for(dialect)
        for size in _padded_sizes(PAIRS_PER_LOOKUP):
            _driver_statement(_blocks_statement(size)).compiled_for(dialect)
            for sets_read_at in (False, True):
                sqlite_mark_statement(sets_read_at, size).compiled_for(dialect)


def _padded_sizes(most: int) -> list[int]:
    """The chunk sizes `_padded` gives for a `most` that is a power of two."""
    return [1 << i for i in range(most.bit_length())]


def _padded(values: list[Any], most: int) -> Iterator[list[Any]]:
    """`values` in chunks of at most `most`, each padded to a power of two by repeating
    its last value (callers key what they find), so that a statement comes in a few
    sizes rather than one per length."""
    for start in range(0, len(values), most):
        chunk = values[start : start + most]
        yield chunk + chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))


def advance_stream_heads(
    conn: Connection, counts: Mapping[int, int], lock_first: bool
) -> dict[int, int]:
    """Take `counts[user]` new stream positions for each user; returns the new heads.

    One executemany raises them all, in id order, and one read returns them. On
    PostgreSQL the rows are locked first in id order, so two nodes' writers never
    deadlock, and the lock makes commit order equal seq order for each user (a reader
    never sees seq n+1 before seq n).
    """
    ids = sorted(counts)
    if lock_first:
        conn.execute(_LOCK_USERS, {"ids": ids})
    _ADVANCE_HEADS.executemany(conn, [{"uid": uid, "step": counts[uid]} for uid in ids])
    return stream_heads(conn, ids)


def touch_last_seen(conn: Connection, seen: Mapping[int, datetime]) -> None:
    if seen:
        conn.execute(_TOUCH, [{"uid": uid, "seen": at} for uid, at in seen.items()])


# -- tokens -----------------------------------------------------------------------------


def insert_token(
    conn: Connection, user_id: int, token_hash: str, now: datetime, expires_at: datetime
) -> int:
    result = conn.execute(
        insert(tokens)
        .values(user_id=user_id, token_hash=token_hash, created_at=now, expires_at=expires_at)
        .returning(tokens.c.id)
    )
    return int(result.scalar_one())


_LIVE_TOKEN = (
    select(tokens.c.id.label("token_id"), tokens.c.expires_at, users.c.id, users.c.username)
    .join(users, users.c.id == tokens.c.user_id)
    .where(
        tokens.c.token_hash == bindparam("token_hash"),
        tokens.c.revoked_at.is_(None),
        tokens.c.expires_at > bindparam("now", type_=tokens.c.expires_at.type),
    )
)


def live_token(conn: Connection, token_hash: str, now: datetime) -> RowMapping | None:
    """The unexpired, unrevoked token with this hash, and its user."""
    result = conn.execute(_LIVE_TOKEN, {"token_hash": token_hash, "now": now})
    return result.mappings().one_or_none()


def revoke_token(conn: Connection, token_id: int, now: datetime) -> None:
    conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def live_token_ids(conn: Connection, token_ids: Sequence[int], now: datetime) -> set[int]:
    result = conn.execute(
        select(tokens.c.id).where(
            tokens.c.id.in_(token_ids), tokens.c.revoked_at.is_(None), tokens.c.expires_at > now
        )
    )
    return set(result.scalars())


# -- blocks -----------------------------------------------------------------------------


def add_block(conn: Connection, blocker: int, blocked: int, now: datetime) -> None:
    exists = conn.execute(
        select(blocks.c.blocker_id).where(
            blocks.c.blocker_id == blocker, blocks.c.blocked_id == blocked
        )
    )
    if exists.first() is None:
        conn.execute(insert(blocks).values(blocker_id=blocker, blocked_id=blocked, created_at=now))


def remove_block(conn: Connection, blocker: int, blocked: int) -> None:
    conn.execute(
        delete(blocks).where(blocks.c.blocker_id == blocker, blocks.c.blocked_id == blocked)
    )


def blocking_pairs(conn: Connection, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of the (blocker, blocked) pairs are blocks. The writer asks for every batch:
    on SQLite through the driver (PostgreSQL's arrays need SQLAlchemy's conversion)."""
    dialect = conn.dialect.name
    found: set[tuple[int, int]] = set()
    for statement, params in _pair_lookups(dialect, _blocks_statement, list(set(pairs))):
        result: Iterable[Any] = (
            _driver_statement(statement).execute(conn, params)
            if dialect == "sqlite"
            else conn.execute(statement, params)
        )
        found.update((blocker, blocked) for blocker, blocked in result)
    return found


@cache
def _driver_statement(statement: Select[Any]) -> DriverStatement:
    """The `DriverStatement` of one of the cached sized lookups."""
    return DriverStatement(statement)


def blocking_pairs_queries(
    dialect: str, pairs: list[tuple[int, int]]
) -> list[tuple[Select[Any], Params]]:
    return _pair_lookups(dialect, _blocks_statement, pairs)


@cache
def _blocks_statement(size: int) -> Select[Any]:
    return select(blocks.c.blocker_id, blocks.c.blocked_id).where(
        _pairs_match(blocks.c.blocker_id, blocks.c.blocked_id, size)
    )


def messages_by_client_ids(
    conn: Connection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], RowMapping]:
    """Stored messages for (sender_id, client_id) keys, with the recipient's name."""
    rows = _rows_of_pairs(conn, _client_ids_statement, keys)
    return {(row["sender_id"], row["client_id"]): row for row in rows}


def messages_by_client_ids_queries(
    dialect: str, keys: list[tuple[int, str]]
) -> list[tuple[Select[Any], Params]]:
    return _pair_lookups(dialect, _client_ids_statement, keys)


@cache
def _client_ids_statement(size: int) -> Select[Any]:
    return (
        select(messages, users.c.username.label("recipient_name"))
        .join(users, users.c.id == messages.c.recipient_id)
        .where(_pairs_match(messages.c.sender_id, messages.c.client_id, size))
    )


# Keys per lookup statement: SQLite caps an expression's depth at 1,000.
PAIRS_PER_LOOKUP = 256
# The `size` of the one statement PostgreSQL needs, whatever the number of keys.
AS_ARRAYS = 0
Params = dict[str, Any]


def _pairs_match(first: Column[Any], second: Column[Any], size: int) -> ColumnElement[bool]:
    """Whether (first, second) is one of the pairs looked up, by index probes.

    SQLite reads `(a, b) IN (VALUES ...)` by scanning the whole table, but answers
    `(first = :a0 AND second = :b0) OR ...` (`size` times) with one probe per key; a
    VALUES table to join on would probe too, but SQLAlchemy compiles it anew for every
    set of values. PostgreSQL plans a long OR anew on each execution and, as the table
    grows, may read it by scanning; given the pairs as two arrays (AS_ARRAYS) it has
    one prepared statement and joins them to the unique index. The plans are checked
    in tests/test_store.py."""
    if size == AS_ARRAYS:
        wanted = (
            func.unnest(
                bindparam("a", type_=ARRAY(first.type)), bindparam("b", type_=ARRAY(second.type))
            )
            .table_valued("a", "b")
            .render_derived(name="wanted")
        )
        return tuple_(first, second).in_(select(wanted.c.a, wanted.c.b))
    return or_(
        *((first == bindparam(f"a{i}")) & (second == bindparam(f"b{i}")) for i in range(size))
    )


def _rows_of_pairs(
    conn: Connection, statement_of_size: Callable[[int], Select[Any]], pairs: Iterable[Any]
) -> Iterator[RowMapping]:
    """The rows `statement_of_size` finds for the distinct `pairs` (see `_pair_lookups`)."""
    for statement, params in _pair_lookups(conn.dialect.name, statement_of_size, list(set(pairs))):
        yield from conn.execute(statement, params).mappings()


def _pair_lookups(
    dialect: str, statement_of_size: Callable[[int], Select[Any]], pairs: list[tuple[Any, Any]]
) -> list[tuple[Select[Any], Params]]:
    """The statements and parameters that look `pairs` up.

    On SQLite, PAIRS_PER_LOOKUP at a time, each chunk padded to a power of two by
    repeating its last pair (callers key what they find): the statements come in nine
    sizes, each built and compiled once, instead of one per batch size."""
    if not pairs:
        return []
    if dialect == "postgresql":
        params = {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}
        return [(statement_of_size(AS_ARRAYS), params)]
    lookups = []
    for chunk in _padded(pairs, PAIRS_PER_LOOKUP):
        chunk_params: Params = {}
        for i, (a, b) in enumerate(chunk):
            chunk_params[f"a{i}"], chunk_params[f"b{i}"] = a, b
        lookups.append((statement_of_size(len(chunk)), chunk_params))
    return lookups


_INSERT_MESSAGES = insert(messages).returning(
    messages.c.id, messages.c.sender_id, messages.c.client_id
)
_INSERT_STREAM_EVENTS = DriverStatement(insert(stream_events))


def insert_messages(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert in one statement (on SQLite, one per MESSAGES_PER_INSERT rows, through the
    driver); returns the ids in the order given.

    RETURNING promises no order, and asked to keep one (`sort_by_parameter_order`)
    SQLAlchemy inserts SQLite's rows one statement each (one multi-row INSERT instead
    saves a measurable share of the writer's instructions). Each id is matched to its
    row by (sender_id, client_id), which the unique constraint makes one row's.
    """
    if conn.dialect.name == "sqlite":
        stored_time = _stored_time(conn.dialect)
        stored = [
            {**row, **{name: stored_time(row[name]) for name in _MESSAGE_TIMES}} for row in rows
        ]
        inserted: list[tuple[int, int, str]] = []
        for start in range(0, len(stored), MESSAGES_PER_INSERT):
            chunk = stored[start : start + MESSAGES_PER_INSERT]
            inserted += _SQLITE_INSERT_MESSAGES.execute(conn, chunk)
    else:
        inserted = [tuple(row) for row in conn.execute(_INSERT_MESSAGES, list(rows))]
    ids = {(sender, client_id): message_id for message_id, sender, client_id in inserted}
    return [ids[(row["sender_id"], row["client_id"])] for row in rows]


MESSAGES_PER_INSERT = 64
_MESSAGE_FIELDS = ("sender_id", "recipient_id", "body", "client_id", "status", "recipient_seq")
_MESSAGE_TIMES = ("sent_at", "delivered_at", "read_at")


# `messages` on SQLite, any number of rows: times go in as the text SQLAlchemy would
# have stored (`_stored_time`), everything else as it is.
_SQLITE_INSERT_MESSAGES = RowsInsert(
    insert(messages)
    .values(
        {
            **{name: bindparam(name, type_=messages.c[name].type) for name in _MESSAGE_FIELDS},
            **{name: bindparam(name, type_=String) for name in _MESSAGE_TIMES},
        }
    )
    .returning(messages.c.id, messages.c.sender_id, messages.c.client_id)
)


@lru_cache(maxsize=4)
def _stored_time(dialect: Dialect) -> Callable[[datetime | None], Any]:
    """How the dialect stores a time of `messages` (what the column's type would bind),
    for statements that hand the driver its values directly."""
    processor = messages.c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return lambda value: value
    return processor


def insert_stream_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    _INSERT_STREAM_EVENTS.executemany(conn, rows)


def mark_status(
    conn: Connection, marks: Sequence[tuple[int, int]], status: int, now: datetime
) -> list[tuple[int, int, int]]:
    """Raise to `status` the messages of the distinct (recipient_id, message_id) pairs,
    in one statement (on SQLite, one per PAIRS_PER_LOOKUP pairs, through the driver);
    returns (id, sender_id, recipient_id) of the rows that changed, by id.

    A pair whose message is not addressed to that recipient, or is already at or past
    the status, changes nothing: others' ids are ignored and receipts never go back.
    """
    reads = status == STATUS_READ
    if conn.dialect.name == "sqlite":
        changed: list[tuple[int, int, int]] = []
        stored_now = _stored_time(conn.dialect)(now)
        for chunk in _padded(sorted(set(marks)), PAIRS_PER_LOOKUP):
            values: Params = {"status": status, "now": stored_now}
            for i, (recipient_id, message_id) in enumerate(chunk):
                values[f"a{i}"], values[f"b{i}"] = recipient_id, message_id
            changed += sqlite_mark_statement(reads, len(chunk)).execute(conn, values)
    else:
        ids = sorted({message_id for _, message_id in marks})
        result = conn.execute(
            _MARK_READ if reads else _MARK_DELIVERED,
            {"ids": ids, "pairs": list(marks), "status": status, "now": now},
        )
        changed = [tuple(row) for row in result]
    return sorted((message_id, sender, recipient) for message_id, sender, recipient in changed)


def _mark_values(sets_read_at: bool, now: BindParameter[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": bindparam("status"),
        "delivered_at": func.coalesce(messages.c.delivered_at, now),
    }
    if sets_read_at:
        values["read_at"] = now
    return values


def _mark_statement(sets_read_at: bool) -> ReturningUpdate[Any]:
    now = bindparam("now", type_=messages.c.delivered_at.type)
    return (
        update(messages)
        .where(
            messages.c.id.in_(bindparam("ids", expanding=True)),  # the primary key finds them
            tuple_(messages.c.recipient_id, messages.c.id).in_(bindparam("pairs", expanding=True)),
            messages.c.status < bindparam("status"),
        )
        .values(**_mark_values(sets_read_at, now))
        .returning(messages.c.id, messages.c.sender_id, messages.c.recipient_id)
    )


@cache
def sqlite_mark_statement(sets_read_at: bool, size: int) -> DriverStatement:
    """`_mark_statement` for `size` pairs on SQLite, found by primary-key probes
    (`_pairs_match`), the time given as its stored text."""
    now = bindparam("now", type_=String)
    return DriverStatement(
        update(messages)
        .where(
            _pairs_match(messages.c.recipient_id, messages.c.id, size),
            messages.c.status < bindparam("status"),
        )
        .values(**_mark_values(sets_read_at, now))
        .returning(messages.c.id, messages.c.sender_id, messages.c.recipient_id)
    )


_MARK_DELIVERED = _mark_statement(sets_read_at=False)
_MARK_READ = _mark_statement(sets_read_at=True)


@cache
def _conversation_statement(before: bool, after: bool) -> Select[Any]:
    """The statement behind `conversation_query`, one per kind of cursor."""
    newest_first = not after

    def direction(sender: str, recipient: str) -> Select[Any]:
        query = select(*_PAGE_COLUMNS).where(
            messages.c.sender_id == bindparam(sender),
            messages.c.recipient_id == bindparam(recipient),
        )
        if before:
            query = query.where(messages.c.id < bindparam("before"))
        if after:
            query = query.where(messages.c.id > bindparam("after"))
        order = messages.c.id.desc() if newest_first else messages.c.id.asc()
        return query.order_by(order).limit(_LIMIT)

    both = union_all(
        direction("user_id", "peer_id").subquery().select(),
        direction("peer_id", "user_id").subquery().select(),
    ).subquery()
    order = both.c.id.desc() if newest_first else both.c.id.asc()
    return select(both).order_by(order).limit(_LIMIT)


_LIMIT = bindparam("limit", type_=Integer)
# A page's columns: a message's, its times as the API shows them (`api_time`).
_TIMES = ("sent_at", "delivered_at", "read_at")
_PAGE_COLUMNS = [column for column in messages.c if column.name not in _TIMES] + [
    api_time(messages.c[name]).label(name) for name in _TIMES
]


def conversation_query(
    user_id: int, peer_id: int, before: int | None, after: int | None, limit: int
) -> tuple[Select[Any], dict[str, Any]]:
    """Up to `limit` messages between two users next to a cursor: newest first unless
    paging forward with `after`. Returns the statement and its parameters.

    One index range per direction (UNION ALL), each cut to `limit`, so a page costs
    the same at a million messages as at ten.
    """
    params: dict[str, Any] = {"user_id": user_id, "peer_id": peer_id, "limit": limit}
    if before is not None:
        params["before"] = before
    if after is not None:
        params["after"] = after
    return _conversation_statement(before is not None, after is not None), params


def conversation_page(
    conn: Connection,
    user_id: int,
    peer_id: int,
    before: int | None,
    after: int | None,
    limit: int,
) -> list[RowMapping]:
    """A page of a conversation (see `conversation_query`), ascending by id; its times
    come formatted for the API (`api_time`)."""
    statement, params = conversation_query(user_id, peer_id, before, after, limit)
    rows = list(conn.execute(statement, params).mappings())
    return rows if after is not None else rows[::-1]


# `status = 0` written out, not bound: the planner takes the partial index of the
# undelivered messages (models) only for a query that says so in its text.
UNDELIVERED = messages.c.status == literal_column(str(STATUS_SENT))

UNDELIVERED_PAGE = (
    select(messages)
    .where(
        messages.c.recipient_id == bindparam("recipient_id"),
        UNDELIVERED,
        messages.c.recipient_seq > bindparam("after_seq"),
        messages.c.recipient_seq <= bindparam("up_to_seq"),
    )
    .order_by(messages.c.recipient_seq)
    .limit(_LIMIT)
)


def undelivered_page(
    conn: Connection, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
) -> list[RowMapping]:
    """The recipient's messages still `sent`, in stream order, within (after, up_to]."""
    params = {
        "recipient_id": recipient_id,
        "after_seq": after_seq,
        "up_to_seq": up_to_seq,
        "limit": limit,
    }
    return list(conn.execute(UNDELIVERED_PAGE, params).mappings())


STREAM_PAGE = (
    select(
        stream_events.c.seq,
        stream_events.c.kind,
        stream_events.c.payload,
        messages,
    )
    .select_from(stream_events.outerjoin(messages, messages.c.id == stream_events.c.message_id))
    .where(
        stream_events.c.user_id == bindparam("user_id"),
        stream_events.c.seq > bindparam("after_seq"),
    )
    .order_by(stream_events.c.seq)
    .limit(_LIMIT)
)


def stream_page(conn: Connection, user_id: int, after_seq: int, limit: int) -> list[RowMapping]:
    """Events of a user's stream after a cursor, with their messages joined in."""
    params = {"user_id": user_id, "after_seq": after_seq, "limit": limit}
    return list(conn.execute(STREAM_PAGE, params).mappings())


def conversations(conn: Connection, user_id: int, limit: int) -> list[RowMapping]:
    """The user's conversations, newest first: peer id, last message row, unread count."""
    return list(conn.execute(conversations_query(user_id, limit)).mappings())


def conversations_query(user_id: int, limit: int) -> Select[Any]:
    """What a user sent is found by the (sender, client_id) index, what they received
    and have not read by the received index (plans checked in tests/test_store.py)."""
    sent = select(messages.c.recipient_id.label("peer"), messages.c.id).where(
        messages.c.sender_id == user_id
    )
    received = select(messages.c.sender_id.label("peer"), messages.c.id).where(
        messages.c.recipient_id == user_id
    )
    both = union_all(sent, received).subquery()
    last = (
        select(both.c.peer, func.max(both.c.id).label("last_id"))
        .group_by(both.c.peer)
        .order_by(func.max(both.c.id).desc())
        .limit(limit)
        .subquery()
    )
    unread = (
        select(messages.c.sender_id.label("peer"), func.count().label("unread"))
        .where(messages.c.recipient_id == user_id, messages.c.status < STATUS_READ)
        .group_by(messages.c.sender_id)
        .subquery()
    )
    return (
        select(
            last.c.peer,
            func.coalesce(unread.c.unread, 0).label("unread"),
            messages,
        )
        .select_from(
            last.join(messages, messages.c.id == last.c.last_id).outerjoin(
                unread, unread.c.peer == last.c.peer
            )
        )
        .order_by(last.c.last_id.desc())
    )


def undelivered_summary(conn: Connection) -> tuple[int, datetime | None]:
    """How many messages wait for delivery, and when the oldest of them was sent.

    Read through the partial index of undelivered messages: for metrics scrapes,
    which cache it (not for hot paths)."""
    result = conn.execute(select(func.count(), func.min(messages.c.sent_at)).where(UNDELIVERED))
    count, oldest = result.one()
    return int(count), oldest
