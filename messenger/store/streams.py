"""Queries of a user's stream: its head (`users.stream_seq`), which the writer reads
and advances for every batch, and its events (`stream_events`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Integer, RowMapping, bindparam, insert, select, update

from messenger.store.driver_sql import DriverStatement
from messenger.store.message_views import hidden_for, reply_columns, with_reply
from messenger.store.models import messages, stream_events, users
from messenger.store.sized_statements import _padded

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


_INSERT_STREAM_EVENTS = DriverStatement(insert(stream_events))


def insert_stream_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    _INSERT_STREAM_EVENTS.executemany(conn, rows)


_LIMIT = bindparam("limit", type_=Integer)


STREAM_PAGE = (
    select(
        stream_events.c.seq,
        stream_events.c.kind,
        stream_events.c.payload,
        messages,
        *reply_columns(),
        hidden_for(stream_events.c.user_id).label("hidden"),
    )
    .select_from(
        with_reply(stream_events.outerjoin(messages, messages.c.id == stream_events.c.message_id))
    )
    .where(
        stream_events.c.user_id == bindparam("user_id"),
        stream_events.c.seq > bindparam("after_seq"),
    )
    .order_by(stream_events.c.seq)
    .limit(_LIMIT)
)


def stream_page(conn: Connection, user_id: int, after_seq: int, limit: int) -> list[RowMapping]:
    """Events of a user's stream after a cursor, with their messages joined in as they
    are now (`message_views`)."""
    params = {"user_id": user_id, "after_seq": after_seq, "limit": limit}
    return list(conn.execute(STREAM_PAGE, params).mappings())
