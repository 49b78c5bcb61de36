"""Queries of `tokens`: issuing, checking and revoking bearer tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from messenger.store.models import push_subscriptions, tokens, users


def insert_token(
    conn: Connection,
    user_id: int,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
    user_agent: str | None = None,
    address: str | None = None,
) -> int:
    result = conn.execute(
        insert(tokens)
        .values(
            user_id=user_id,
            token_hash=token_hash,
            created_at=now,
            expires_at=expires_at,
            user_agent=user_agent,
            address=address,
            last_used_at=now,
        )
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
        # Disabling or removing an account ends its tokens too; this also holds for
        # one a login made while that happened.
        users.c.disabled_at.is_(None),
        users.c.deleted_at.is_(None),
    )
)


def live_token(conn: Connection, token_hash: str, now: datetime) -> RowMapping | None:
    """The unexpired, unrevoked token with this hash, and its user."""
    result = conn.execute(_LIVE_TOKEN, {"token_hash": token_hash, "now": now})
    return result.mappings().one_or_none()


def revoke_token(conn: Connection, token_id: int, now: datetime) -> None:
    """The token stops working, and the push subscriptions of its session go with it."""
    conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(delete(push_subscriptions).where(push_subscriptions.c.token_id == token_id))


def is_live(now: datetime) -> ColumnElement[bool]:
    """A token that still works at `now`: not revoked, not expired."""
    return tokens.c.revoked_at.is_(None) & (tokens.c.expires_at > now)


def live_token_ids(conn: Connection, token_ids: Sequence[int], now: datetime) -> set[int]:
    result = conn.execute(
        select(tokens.c.id)
        .join(users, users.c.id == tokens.c.user_id)
        .where(
            tokens.c.id.in_(token_ids),
            is_live(now),
            users.c.disabled_at.is_(None),
            users.c.deleted_at.is_(None),
        )
    )
    return set(result.scalars())
