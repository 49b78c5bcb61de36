"""Queries that read `messages` back, outside the writer: a page of a conversation,
the list of conversations, the undelivered backlog and its size for metrics."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    RowMapping,
    Select,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    union_all,
)

from messenger.protocol import STATUS_READ, STATUS_SENT
from messenger.store.api_time import api_time
from messenger.store.message_views import hidden_for, reply_columns, with_reply
from messenger.store.models import messages


@cache
def _conversation_statement(before: bool, after: bool) -> Select[Any]:
    """The statement behind `conversation_query`, one per kind of cursor."""
    newest_first = not after

    def direction(sender: str, recipient: str) -> Select[Any]:
        query = (
            select(*_PAGE_COLUMNS)
            .select_from(with_reply(messages))
            .where(
                messages.c.sender_id == bindparam(sender),
                messages.c.recipient_id == bindparam(recipient),
                ~hidden_for(bindparam("user_id")),
            )
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
# A page's columns: a message's, its times as the API shows them (`api_time`), and
# what it answers.
_TIMES = ("sent_at", "delivered_at", "read_at", "edited_at")
_PAGE_COLUMNS = [
    *(column for column in messages.c if column.name not in _TIMES),
    *(api_time(messages.c[name]).label(name) for name in _TIMES),
    *reply_columns(),
]


def conversation_query(
    user_id: int, peer_id: int, before: int | None, after: int | None, limit: int
) -> tuple[Select[Any], dict[str, Any]]:
    """Up to `limit` messages between two users next to a cursor: newest first unless
    paging forward with `after`. Returns the statement and its parameters.

    One index range per direction (UNION ALL), each cut to `limit`, so a page costs
    the same at a million messages as at ten. Messages the user deleted for
    themselves are left out (a primary-key probe each).
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
    select(
        messages,
        *reply_columns(),
        hidden_for(messages.c.recipient_id).label("hidden"),
    )
    .select_from(with_reply(messages))
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


def conversations(conn: Connection, user_id: int, limit: int) -> list[RowMapping]:
    """The user's conversations, newest first: peer id, last message row, unread count."""
    return list(conn.execute(conversations_query(user_id, limit)).mappings())


def conversations_query(user_id: int, limit: int) -> Select[Any]:
    """What a user sent is found by the (sender, client_id) index, what they received
    and have not read by the received index (plans checked in tests/test_store.py).
    Messages the user deleted for themselves are left out, and deleted ones are not
    unread."""
    visible = ~hidden_for(literal(user_id, Integer))
    sent = select(messages.c.recipient_id.label("peer"), messages.c.id).where(
        messages.c.sender_id == user_id, visible
    )
    received = select(messages.c.sender_id.label("peer"), messages.c.id).where(
        messages.c.recipient_id == user_id, visible
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
        .where(
            messages.c.recipient_id == user_id,
            messages.c.status < STATUS_READ,
            messages.c.deleted_at.is_(None),
            visible,
        )
        .group_by(messages.c.sender_id)
        .subquery()
    )
    return (
        select(
            last.c.peer,
            func.coalesce(unread.c.unread, 0).label("unread"),
            messages,
            *reply_columns(),
        )
        .select_from(
            with_reply(
                last.join(messages, messages.c.id == last.c.last_id).outerjoin(
                    unread, unread.c.peer == last.c.peer
                )
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
