"""Queries: async functions of a connection that never commit (the caller owns the
transaction). Core statements over the tables of `models`; rows come back as mappings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    RowMapping,
    Select,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from messenger.protocol import STATUS_READ, STATUS_SENT
from messenger.store.models import blocks, messages, stream_events, tokens, users

# -- users ------------------------------------------------------------------------------


async def insert_user(
    conn: AsyncConnection, username: str, password_hash: str, now: datetime
) -> int:
    result = await conn.execute(
        insert(users)
        .values(username=username, password_hash=password_hash, created_at=now, stream_seq=0)
        .returning(users.c.id)
    )
    return int(result.scalar_one())


async def user_by_name(conn: AsyncConnection, username: str) -> RowMapping | None:
    result = await conn.execute(select(users).where(users.c.username == username))
    return result.mappings().one_or_none()


async def users_by_names(conn: AsyncConnection, names: Sequence[str]) -> list[RowMapping]:
    result = await conn.execute(
        select(users.c.id, users.c.username, users.c.last_seen).where(users.c.username.in_(names))
    )
    return list(result.mappings())


async def usernames(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, str]:
    result = await conn.execute(
        select(users.c.id, users.c.username).where(users.c.id.in_(list(ids)))
    )
    return {row.id: row.username for row in result}


async def stream_head(conn: AsyncConnection, user_id: int) -> int:
    """The cursor of the user's newest event (0 before the first, or no such user)."""
    result = await conn.execute(select(users.c.stream_seq).where(users.c.id == user_id))
    return int(result.scalar_one_or_none() or 0)


async def stream_heads(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, int]:
    result = await conn.execute(
        select(users.c.id, users.c.stream_seq).where(users.c.id.in_(user_ids))
    )
    return {row.id: row.stream_seq for row in result}


async def advance_stream_heads(
    conn: AsyncConnection, counts: Mapping[int, int], lock_first: bool
) -> dict[int, int]:
    """Take `counts[user]` new stream positions for each user; returns the new heads.

    One statement for the whole batch. On PostgreSQL the rows are locked first in id
    order, so two nodes' writers never deadlock, and the lock makes commit order equal
    seq order for each user (a reader never sees seq n+1 before seq n).
    """
    ids = sorted(counts)
    if lock_first:
        await conn.execute(
            select(users.c.id).where(users.c.id.in_(ids)).order_by(users.c.id).with_for_update()
        )
    step = case(counts, value=users.c.id, else_=0)
    result = await conn.execute(
        update(users)
        .where(users.c.id.in_(ids))
        .values(stream_seq=users.c.stream_seq + step)
        .returning(users.c.id, users.c.stream_seq)
    )
    return {row.id: row.stream_seq for row in result}


async def touch_last_seen(conn: AsyncConnection, seen: Mapping[int, datetime]) -> None:
    if seen:
        await conn.execute(
            update(users).where(users.c.id == bindparam("uid")).values(last_seen=bindparam("seen")),
            [{"uid": uid, "seen": at} for uid, at in seen.items()],
        )


# -- tokens -----------------------------------------------------------------------------


async def insert_token(
    conn: AsyncConnection, user_id: int, token_hash: str, now: datetime, expires_at: datetime
) -> int:
    result = await conn.execute(
        insert(tokens)
        .values(user_id=user_id, token_hash=token_hash, created_at=now, expires_at=expires_at)
        .returning(tokens.c.id)
    )
    return int(result.scalar_one())


async def live_token(conn: AsyncConnection, token_hash: str, now: datetime) -> RowMapping | None:
    """The unexpired, unrevoked token with this hash, and its user."""
    result = await conn.execute(
        select(tokens.c.id.label("token_id"), tokens.c.expires_at, users.c.id, users.c.username)
        .join(users, users.c.id == tokens.c.user_id)
        .where(
            tokens.c.token_hash == token_hash,
            tokens.c.revoked_at.is_(None),
            tokens.c.expires_at > now,
        )
    )
    return result.mappings().one_or_none()


async def revoke_token(conn: AsyncConnection, token_id: int, now: datetime) -> None:
    await conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def live_token_ids(
    conn: AsyncConnection, token_ids: Sequence[int], now: datetime
) -> set[int]:
    result = await conn.execute(
        select(tokens.c.id).where(
            tokens.c.id.in_(token_ids), tokens.c.revoked_at.is_(None), tokens.c.expires_at > now
        )
    )
    return set(result.scalars())


# -- blocks -----------------------------------------------------------------------------


async def add_block(conn: AsyncConnection, blocker: int, blocked: int, now: datetime) -> None:
    exists = await conn.execute(
        select(blocks.c.blocker_id).where(
            blocks.c.blocker_id == blocker, blocks.c.blocked_id == blocked
        )
    )
    if exists.first() is None:
        await conn.execute(
            insert(blocks).values(blocker_id=blocker, blocked_id=blocked, created_at=now)
        )


async def remove_block(conn: AsyncConnection, blocker: int, blocked: int) -> None:
    await conn.execute(
        delete(blocks).where(blocks.c.blocker_id == blocker, blocks.c.blocked_id == blocked)
    )


async def blocking_pairs(
    conn: AsyncConnection, pairs: Iterable[tuple[int, int]]
) -> set[tuple[int, int]]:
    """Which of the (blocker, blocked) pairs are blocks."""
    wanted = list(set(pairs))
    if not wanted:
        return set()
    result = await conn.execute(
        select(blocks.c.blocker_id, blocks.c.blocked_id).where(
            tuple_(blocks.c.blocker_id, blocks.c.blocked_id).in_(wanted)
        )
    )
    return {(row.blocker_id, row.blocked_id) for row in result}


# -- messages ---------------------------------------------------------------------------


async def messages_by_client_ids(
    conn: AsyncConnection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], RowMapping]:
    """Stored messages for (sender_id, client_id) keys, with the recipient's name."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    result = await conn.execute(
        select(messages, users.c.username.label("recipient_name"))
        .join(users, users.c.id == messages.c.recipient_id)
        .where(tuple_(messages.c.sender_id, messages.c.client_id).in_(wanted))
    )
    return {(row["sender_id"], row["client_id"]): row for row in result.mappings()}


async def insert_messages(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert in one statement (executemany); returns the ids in the order given."""
    result = await conn.execute(
        insert(messages).returning(messages.c.id, sort_by_parameter_order=True), list(rows)
    )
    return [row.id for row in result]


async def insert_stream_events(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(stream_events), list(rows))


async def mark_status(
    conn: AsyncConnection, marks: Sequence[tuple[int, int]], status: int, now: datetime
) -> list[RowMapping]:
    """Raise to `status` the messages of the distinct (recipient_id, message_id) pairs,
    in one statement; returns (id, sender_id, recipient_id) of the rows that changed, by id.

    A pair whose message is not addressed to that recipient, or is already at or past
    the status, changes nothing: others' ids are ignored and receipts never go back.
    """
    values: dict[str, Any] = {
        "status": status,
        "delivered_at": func.coalesce(messages.c.delivered_at, now),
    }
    if status == STATUS_READ:
        values["read_at"] = now
    ids = sorted({message_id for _, message_id in marks})
    result = await conn.execute(
        update(messages)
        .where(
            messages.c.id.in_(ids),  # the primary key finds the rows
            tuple_(messages.c.recipient_id, messages.c.id).in_(list(marks)),
            messages.c.status < status,
        )
        .values(**values)
        .returning(messages.c.id, messages.c.sender_id, messages.c.recipient_id)
    )
    return sorted(result.mappings(), key=lambda row: row["id"])


def conversation_statement(
    user_id: int, peer_id: int, before: int | None, after: int | None, limit: int
) -> Select[Any]:
    """Up to `limit` messages between two users next to a cursor: newest first unless
    paging forward with `after`.

    One index range per direction (UNION ALL), each cut to `limit`, so a page costs
    the same at a million messages as at ten.
    """
    newest_first = after is None

    def direction(sender: int, recipient: int) -> Select[Any]:
        query = select(messages).where(
            messages.c.sender_id == sender, messages.c.recipient_id == recipient
        )
        if before is not None:
            query = query.where(messages.c.id < before)
        if after is not None:
            query = query.where(messages.c.id > after)
        order = messages.c.id.desc() if newest_first else messages.c.id.asc()
        return query.order_by(order).limit(limit)

    both = union_all(
        direction(user_id, peer_id).subquery().select(),
        direction(peer_id, user_id).subquery().select(),
    ).subquery()
    order = both.c.id.desc() if newest_first else both.c.id.asc()
    return select(both).order_by(order).limit(limit)


async def conversation_page(
    conn: AsyncConnection,
    user_id: int,
    peer_id: int,
    before: int | None,
    after: int | None,
    limit: int,
) -> list[RowMapping]:
    """A page of a conversation (see `conversation_statement`), ascending by id."""
    statement = conversation_statement(user_id, peer_id, before, after, limit)
    rows = list((await conn.execute(statement)).mappings())
    return rows if after is not None else rows[::-1]


def undelivered_statement(
    recipient_id: int, after_seq: int, up_to_seq: int, limit: int
) -> Select[Any]:
    """The recipient's messages still `sent`, in stream order, within (after, up_to]."""
    return (
        select(messages)
        .where(
            messages.c.recipient_id == recipient_id,
            messages.c.status == STATUS_SENT,
            messages.c.recipient_seq > after_seq,
            messages.c.recipient_seq <= up_to_seq,
        )
        .order_by(messages.c.recipient_seq)
        .limit(limit)
    )


async def undelivered_page(
    conn: AsyncConnection, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
) -> list[RowMapping]:
    statement = undelivered_statement(recipient_id, after_seq, up_to_seq, limit)
    return list((await conn.execute(statement)).mappings())


def stream_statement(user_id: int, after_seq: int, limit: int) -> Select[Any]:
    """Events of a user's stream after a cursor, with their messages joined in."""
    return (
        select(
            stream_events.c.seq,
            stream_events.c.kind,
            stream_events.c.payload,
            messages,
        )
        .select_from(stream_events.outerjoin(messages, messages.c.id == stream_events.c.message_id))
        .where(stream_events.c.user_id == user_id, stream_events.c.seq > after_seq)
        .order_by(stream_events.c.seq)
        .limit(limit)
    )


async def stream_page(
    conn: AsyncConnection, user_id: int, after_seq: int, limit: int
) -> list[RowMapping]:
    return list((await conn.execute(stream_statement(user_id, after_seq, limit))).mappings())


async def conversations(conn: AsyncConnection, user_id: int, limit: int) -> list[RowMapping]:
    """The user's conversations, newest first: peer id, last message row, unread count."""
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
    result = await conn.execute(
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
    return list(result.mappings())


async def undelivered_summary(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """How many messages wait for delivery, and when the oldest of them was sent.

    A scan of the table: for metrics scrapes, which cache it (not for hot paths)."""
    result = await conn.execute(
        select(func.count(), func.min(messages.c.sent_at)).where(messages.c.status == STATUS_SENT)
    )
    count, oldest = result.one()
    return int(count), oldest
