"""Queries of `messages` that the writer runs for a batch: storing messages, finding
them again by their client keys, and raising their status (receipts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
    String,
    bindparam,
    false,
    func,
    insert,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import BindParameter

from messenger.protocol import STATUS_READ
from messenger.store.driver_sql import DriverStatement, RowsInsert
from messenger.store.message_views import reply_columns, with_reply
from messenger.store.models import messages, users
from messenger.store.sized_statements import (
    PAIRS_PER_LOOKUP,
    Params,
    _padded,
    _pairs_match,
    _rows_of_pairs,
)


def messages_by_client_ids(
    conn: Connection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], RowMapping]:
    """Stored messages for (sender_id, client_id) keys, with the recipient's name."""
    rows = _rows_of_pairs(conn, _client_ids_statement, keys)
    return {(row["sender_id"], row["client_id"]): row for row in rows}


@cache
def _client_ids_statement(size: int) -> Select[Any]:
    return (
        select(messages, *reply_columns(), users.c.username.label("recipient_name"))
        .select_from(with_reply(messages.join(users, users.c.id == messages.c.recipient_id)))
        .where(_pairs_match(messages.c.sender_id, messages.c.client_id, size))
    )


_INSERT_MESSAGES = insert(messages).returning(
    messages.c.id, messages.c.sender_id, messages.c.client_id
)


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
            {
                "reply_to_id": None,
                **row,
                **{name: stored_time(row[name]) for name in _MESSAGE_TIMES},
            }
            for row in rows
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
_MESSAGE_FIELDS = (
    "sender_id",
    "recipient_id",
    "body",
    "client_id",
    "status",
    "recipient_seq",
    "reply_to_id",
)
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


def mark_status(
    conn: Connection,
    marks: Sequence[tuple[int, int]],
    status: int,
    now: datetime,
    private: bool = False,
) -> list[tuple[int, int, int]]:
    """Raise to `status` the messages of the distinct (recipient_id, message_id) pairs,
    in one statement (on SQLite, one per PAIRS_PER_LOOKUP pairs, through the driver);
    returns (id, sender_id, recipient_id) of the rows that changed, by id.

    A pair whose message is not addressed to that recipient, or is already at or past
    the status, changes nothing: others' ids are ignored and receipts never go back.
    A read marks whether it was `private` (the reader's receipts were off).
    """
    reads = status == STATUS_READ
    if conn.dialect.name == "sqlite":
        changed: list[tuple[int, int, int]] = []
        stored_now = _stored_time(conn.dialect)(now)
        for chunk in _padded(sorted(set(marks)), PAIRS_PER_LOOKUP):
            values: Params = {"status": status, "now": stored_now}
            for i, (recipient_id, message_id) in enumerate(chunk):
                values[f"a{i}"], values[f"b{i}"] = recipient_id, message_id
            changed += sqlite_mark_statement(reads, len(chunk), private).execute(conn, values)
    else:
        ids = sorted({message_id for _, message_id in marks})
        result = conn.execute(
            _mark_statement(reads, private),
            {"ids": ids, "pairs": list(marks), "status": status, "now": now},
        )
        changed = [tuple(row) for row in result]
    return sorted((message_id, sender, recipient) for message_id, sender, recipient in changed)


def _mark_values(sets_read_at: bool, now: BindParameter[Any], private: bool) -> dict[str, Any]:
    """A read also says whether it was private: written out, not bound (a statement
    per case), so SQLite's statements need no conversion of their values."""
    values: dict[str, Any] = {
        "status": bindparam("status"),
        "delivered_at": func.coalesce(messages.c.delivered_at, now),
    }
    if sets_read_at:
        values["read_at"] = now
        values["read_private"] = true() if private else false()
    return values


@cache
def _mark_statement(sets_read_at: bool, private: bool) -> ReturningUpdate[Any]:
    now = bindparam("now", type_=messages.c.delivered_at.type)
    return (
        update(messages)
        .where(
            messages.c.id.in_(bindparam("ids", expanding=True)),  # the primary key finds them
            tuple_(messages.c.recipient_id, messages.c.id).in_(bindparam("pairs", expanding=True)),
            messages.c.status < bindparam("status"),
        )
        .values(**_mark_values(sets_read_at, now, private))
        .returning(messages.c.id, messages.c.sender_id, messages.c.recipient_id)
    )


@cache
def sqlite_mark_statement(sets_read_at: bool, size: int, private: bool) -> DriverStatement:
    """`_mark_statement` for `size` pairs on SQLite, found by primary-key probes
    (`_pairs_match`), the time given as its stored text."""
    now = bindparam("now", type_=String)
    return DriverStatement(
        update(messages)
        .where(
            _pairs_match(messages.c.recipient_id, messages.c.id, size),
            messages.c.status < bindparam("status"),
        )
        .values(**_mark_values(sets_read_at, now, private))
        .returning(messages.c.id, messages.c.sender_id, messages.c.recipient_id)
    )
