"""Queries of push: the VAPID key pair, subscriptions, and the pusher's work, which is
claimed from SQL (docs/protocol.md 3.9).

A subscription remembers what it told: `pushed_seq`, the stream position of the
newest undelivered message a push told of, and `last_unread`, the count it said.
It also remembers `seen_seq`, the user's stream head when it was last looked at, so
the pusher looks only at subscriptions whose user's stream moved, or whose `due_at`
(a delay or a backoff) has come.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from messenger.protocol import STATUS_READ
from messenger.store.message_reads import UNDELIVERED
from messenger.store.message_views import excerpt_of, hidden_for
from messenger.store.models import messages, push_keys, push_subscriptions, tokens, users

subs = push_subscriptions

# -- keys ------------------------------------------------------------------------------


def vapid_keys(conn: Connection) -> RowMapping | None:
    return conn.execute(select(push_keys).where(push_keys.c.id == 1)).mappings().one_or_none()


def keep_vapid_keys(conn: Connection, private_pem: str, public_key: str, now: datetime) -> None:
    """Store the pair unless one is stored: of nodes starting together, the first
    wins (the others' inserts do nothing), and all read its pair afterwards."""
    values = {"id": 1, "private_pem": private_pem, "public_key": public_key, "created_at": now}
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(push_keys).values(**values).on_conflict_do_nothing())


# -- subscriptions ---------------------------------------------------------------------

_SHOWN = (
    subs.c.id,
    subs.c.kind,
    subs.c.label,
    subs.c.preview,
    subs.c.created_at,
    subs.c.token_id,
)


def subscriptions_of(conn: Connection, user_id: int) -> list[RowMapping]:
    statement = select(*_SHOWN).where(subs.c.user_id == user_id).order_by(subs.c.id)
    return list(conn.execute(statement).mappings())


def count_subscriptions(conn: Connection, user_id: int) -> int:
    statement = select(func.count()).select_from(subs).where(subs.c.user_id == user_id)
    return int(conn.execute(statement).scalar_one())


def save_subscription(
    conn: Connection, user_id: int, token_id: int, values: dict[str, Any], now: datetime, most: int
) -> tuple[RowMapping, bool] | None:
    """Make the subscription, or move the user's subscription of the same endpoint to
    this session with these values; (it, whether it is new). None when the user has
    `most` subscriptions already. Pushes start from the user's stream head: what
    waits already was for the devices the user had."""
    found = conn.execute(
        select(subs.c.id).where(subs.c.user_id == user_id, subs.c.endpoint == values["endpoint"])
    ).scalar_one_or_none()
    head = conn.execute(select(users.c.stream_seq).where(users.c.id == user_id)).scalar_one()
    fresh = {"token_id": token_id, "seen_seq": head, "pushed_seq": head, "failures": 0}
    if found is None:
        if count_subscriptions(conn, user_id) >= most:
            return None
        new_id = conn.execute(
            insert(subs)
            .values(user_id=user_id, created_at=now, last_unread=0, **fresh, **values)
            .returning(subs.c.id)
        ).scalar_one()
        return _shown(conn, new_id), True
    conn.execute(
        update(subs)
        .where(subs.c.id == found)
        .values(due_at=None, lease_until=None, **fresh, **values)
    )
    return _shown(conn, found), False


def _shown(conn: Connection, sub_id: int) -> RowMapping:
    return conn.execute(select(*_SHOWN, subs.c.secret).where(subs.c.id == sub_id)).mappings().one()


def delete_subscription(conn: Connection, user_id: int, sub_id: int) -> bool:
    result = conn.execute(delete(subs).where(subs.c.id == sub_id, subs.c.user_id == user_id))
    return bool(result.rowcount)


def delete_token_subscriptions(conn: Connection, token_id: int) -> None:
    """A logout or a revocation ends the session's subscriptions with it."""
    conn.execute(delete(subs).where(subs.c.token_id == token_id))


def prune_dead_sessions(conn: Connection, now: datetime) -> int:
    """Remove the subscriptions of sessions that expired or were revoked."""
    dead = select(tokens.c.id).where(
        or_(tokens.c.revoked_at.is_not(None), tokens.c.expires_at <= now)
    )
    result = conn.execute(delete(subs).where(subs.c.token_id.in_(dead)))
    return int(result.rowcount or 0)


# -- the pusher's work -----------------------------------------------------------------


def candidates(conn: Connection, now: datetime, limit: int, skip_locked: bool) -> list[RowMapping]:
    """Subscriptions to look at: the user's stream moved since the last look, or a
    delay or backoff came due; none leased by a pusher now, none of a dead session.
    On PostgreSQL rows another node's pusher holds are skipped (SKIP LOCKED)."""
    statement = (
        select(subs, users.c.stream_seq, users.c.last_seen, users.c.username)
        .join(users, users.c.id == subs.c.user_id)
        .join(tokens, tokens.c.id == subs.c.token_id)
        .where(
            or_(users.c.stream_seq > subs.c.seen_seq, subs.c.due_at <= now),
            or_(subs.c.lease_until.is_(None), subs.c.lease_until < now),
            tokens.c.revoked_at.is_(None),
            tokens.c.expires_at > now,
        )
        .order_by(subs.c.id)
        .limit(limit)
    )
    if skip_locked:
        statement = statement.with_for_update(of=subs, skip_locked=True)
    return list(conn.execute(statement).mappings())


def waiting_since(conn: Connection, user_id: int, after_seq: int) -> RowMapping:
    """Of the user's undelivered messages after stream position `after_seq` (not
    deleted): how many, the oldest one's time, the newest one's position. Read
    through the partial index of undelivered messages."""
    statement = select(
        func.count().label("count"),
        func.min(messages.c.sent_at).label("oldest"),
        func.max(messages.c.recipient_seq).label("newest_seq"),
    ).where(
        messages.c.recipient_id == user_id,
        UNDELIVERED,
        messages.c.recipient_seq > after_seq,
        messages.c.deleted_at.is_(None),
    )
    return conn.execute(statement).mappings().one()


def newest_waiting(conn: Connection, user_id: int, seq: int) -> RowMapping | None:
    """The sender's name and the excerpt of the message at the user's stream position
    `seq` (a push's preview)."""
    statement = (
        select(users.c.username.label("sender"), excerpt_of(messages).label("excerpt"))
        .join(users, users.c.id == messages.c.sender_id)
        .where(messages.c.recipient_id == user_id, messages.c.recipient_seq == seq)
    )
    return conn.execute(statement).mappings().one_or_none()


def unread_count(conn: Connection, user_id: int) -> int:
    """Messages to the user not yet read, deleted ones (for everyone or for them) not
    counted."""
    statement = select(func.count()).where(
        messages.c.recipient_id == user_id,
        messages.c.status < STATUS_READ,
        messages.c.deleted_at.is_(None),
        ~hidden_for(bindparam("viewer", user_id)),
    )
    return int(conn.execute(statement).scalar_one())


def update_subscriptions(conn: Connection, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    for sub_id, values in changes:
        conn.execute(update(subs).where(subs.c.id == sub_id).values(**values))


def delete_subscriptions(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(delete(subs).where(subs.c.id.in_(list(ids))))


def pending_summary(conn: Connection, now: datetime) -> tuple[int, datetime | None]:
    """How many subscriptions have a push due or in flight, and since when the oldest
    one waits (for the metrics)."""
    due = and_(subs.c.due_at.is_not(None), subs.c.due_at <= now)
    leased = and_(subs.c.lease_until.is_not(None), subs.c.lease_until >= now)
    statement = select(func.count(), func.min(subs.c.due_at)).where(or_(due, leased))
    count, oldest = conn.execute(statement).one()
    return int(count), oldest


LEASE = timedelta(seconds=30)
