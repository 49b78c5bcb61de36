"""Reads of a user's data export (`GET /api/v1/users/me/export`): each list in keyset
pages, so the export takes bounded memory and each page one short read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Integer, RowMapping, bindparam, select

from messenger.store.message_views import Extras, extras_of, hidden_for, reply_columns, with_reply
from messenger.store.models import (
    EVENT_NEW_MESSAGE,
    attachments,
    blocks,
    messages,
    push_subscriptions,
    stream_events,
    users,
)
from messenger.store.users import usernames


def user_summary(conn: Connection, user_id: int) -> RowMapping:
    statement = select(users.c.username, users.c.created_at, users.c.read_receipts).where(
        users.c.id == user_id
    )
    return conn.execute(statement).mappings().one()


def subscriptions_page(conn: Connection, user_id: int, limit: int) -> list[RowMapping]:
    """The user's push subscriptions, without their keys or secrets."""
    subs = push_subscriptions
    statement = (
        select(
            subs.c.id, subs.c.kind, subs.c.endpoint, subs.c.label, subs.c.preview, subs.c.created_at
        )
        .where(subs.c.user_id == user_id)
        .order_by(subs.c.id)
        .limit(limit)
    )
    return list(conn.execute(statement).mappings())


def blocked_page(conn: Connection, user_id: int, after_id: int, limit: int) -> list[RowMapping]:
    """Whom the user blocks, by id after `after_id` (the blocks' primary key)."""
    statement = (
        select(blocks.c.blocked_id, users.c.username)
        .join(users, users.c.id == blocks.c.blocked_id)
        .where(blocks.c.blocker_id == user_id, blocks.c.blocked_id > after_id)
        .order_by(blocks.c.blocked_id)
        .limit(limit)
    )
    return list(conn.execute(statement).mappings())


def uploads_page(conn: Connection, user_id: int, after_id: int, limit: int) -> list[RowMapping]:
    """The user's uploads after `after_id`, sent or not."""
    statement = (
        select(
            attachments.c.id,
            attachments.c.name,
            attachments.c.content_type,
            attachments.c.size,
            attachments.c.sha256,
            attachments.c.created_at,
            attachments.c.message_id,
        )
        .where(attachments.c.uploader_id == user_id, attachments.c.id > after_id)
        .order_by(attachments.c.id)
        .limit(limit)
    )
    return list(conn.execute(statement).mappings())


# A user's messages, both directions, found through their stream: each message has a
# `new_message` event in both users' streams, and a user's events take their
# positions in the order their messages take ids (the writer takes the positions
# first, under the users' row locks on PostgreSQL, then inserts). So one range of the
# stream's primary key replaces two index ranges that SQL could not merge by id.
_MESSAGES_PAGE = (
    select(
        stream_events.c.seq,
        messages,
        *reply_columns(),
        hidden_for(stream_events.c.user_id).label("hidden"),
    )
    .select_from(
        with_reply(stream_events.join(messages, messages.c.id == stream_events.c.message_id))
    )
    .where(
        stream_events.c.user_id == bindparam("user_id"),
        stream_events.c.seq > bindparam("after_seq"),
        stream_events.c.kind == EVENT_NEW_MESSAGE,
    )
    .order_by(stream_events.c.seq)
    .limit(bindparam("limit", type_=Integer))
)


def messages_page(
    conn: Connection, user_id: int, after_seq: int, limit: int
) -> tuple[list[RowMapping], Extras, dict[int, str]]:
    """Up to `limit` of the user's messages after a stream position, in id order, with
    their extras and the names of their users, in one read."""
    params: dict[str, Any] = {"user_id": user_id, "after_seq": after_seq, "limit": limit}
    rows = sorted(conn.execute(_MESSAGES_PAGE, params).mappings(), key=lambda row: row["id"])
    names = usernames(
        conn, {row["sender_id"] for row in rows} | {row["recipient_id"] for row in rows}
    )
    return rows, extras_of(conn, [row["id"] for row in rows]), names
