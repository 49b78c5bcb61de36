"""Queries that change accounts and sessions (docs/protocol.md 2): a password change,
the sessions of a user, an account's removal, and what the operator's commands do.

Each ending of sessions returns the ids of the tokens that were live, whose sockets
the caller drops on every node after the commit (the maintenance tick is the
backstop). Like every store function, none commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import (
    Connection,
    Integer,
    RowMapping,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)

from messenger.store.driver_sql import DriverStatement
from messenger.store.models import (
    attachments,
    blocks,
    hidden_messages,
    push_subscriptions,
    stream_events,
    tokens,
    users,
)
from messenger.store.sized_statements import _padded
from messenger.store.tokens import is_live

# What a session shows of itself (never its hash).
_SESSION_COLUMNS = (
    tokens.c.id,
    tokens.c.created_at,
    tokens.c.last_used_at,
    tokens.c.user_agent,
    tokens.c.address,
)


# -- sessions ----------------------------------------------------------------------------


def live_sessions(conn: Connection, user_id: int, now: datetime, limit: int) -> list[RowMapping]:
    """The user's sessions that still work, newest first (by the tokens index)."""
    statement = (
        select(*_SESSION_COLUMNS)
        .where(tokens.c.user_id == user_id, is_live(now))
        .order_by(tokens.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(statement).mappings())


def end_session(conn: Connection, user_id: int, token_id: int, now: datetime) -> bool:
    """Revoke one live session of the user, with its push subscriptions (a logout);
    False when it is not one (another user's included)."""
    ended = conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.user_id == user_id, is_live(now))
        .values(revoked_at=now)
    ).rowcount
    if not ended:
        return False
    conn.execute(delete(push_subscriptions).where(push_subscriptions.c.token_id == token_id))
    return True


def revoke_user_tokens(
    conn: Connection, user_id: int, now: datetime, keep: int | None = None
) -> list[int]:
    """Revoke every token of the user but `keep`, and the push subscriptions of their
    sessions; the ids of those that were still live."""
    condition = [tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None)]
    if keep is not None:
        condition.append(tokens.c.id != keep)
    revoked = conn.execute(
        update(tokens)
        .where(*condition)
        .values(revoked_at=now)
        .returning(tokens.c.id, tokens.c.expires_at)
    ).all()
    gone = [push_subscriptions.c.user_id == user_id]
    if keep is not None:
        gone.append(push_subscriptions.c.token_id != keep)
    conn.execute(delete(push_subscriptions).where(*gone))
    return sorted(token_id for token_id, expires_at in revoked if expires_at > now)


_TOUCH = (
    update(tokens)
    .where(
        tokens.c.id == bindparam("tid"),
        or_(tokens.c.last_used_at.is_(None), tokens.c.last_used_at < bindparam("at")),
    )
    .values(last_used_at=bindparam("at"))
)


def touch_tokens(conn: Connection, used: Mapping[int, datetime]) -> None:
    """Note when tokens were last used (never moving a time back)."""
    if used:
        conn.execute(_TOUCH, [{"tid": tid, "at": at} for tid, at in used.items()])


# -- passwords -----------------------------------------------------------------------------


def change_password(
    conn: Connection,
    user_id: int,
    old_hash: str,
    new_hash: str,
    now: datetime,
    keep: int | None = None,
) -> list[int] | None:
    """Replace the hash just verified, and end every session but `keep`; the ids of
    the live tokens ended. None when the hash changed meanwhile (another change, a
    removal): nothing is done then."""
    changed = conn.execute(
        update(users)
        .where(
            users.c.id == user_id, users.c.password_hash == old_hash, users.c.deleted_at.is_(None)
        )
        .values(password_hash=new_hash)
    ).rowcount
    if not changed:
        return None
    return revoke_user_tokens(conn, user_id, now, keep)


def reset_password(
    conn: Connection, username: str, new_hash: str, now: datetime
) -> list[int] | None:
    """The operator's reset: a new hash, every session ended. None: no such account."""
    row = _existing(conn, username)
    if row is None:
        return None
    conn.execute(update(users).where(users.c.id == row["id"]).values(password_hash=new_hash))
    return revoke_user_tokens(conn, row["id"], now)


# -- disabling and removing --------------------------------------------------------------


def set_disabled(
    conn: Connection, username: str, disabled: bool, now: datetime
) -> list[int] | None:
    """Disable (every session ends) or enable an account; None: no such account."""
    row = _existing(conn, username)
    if row is None:
        return None
    if not disabled:
        conn.execute(update(users).where(users.c.id == row["id"]).values(disabled_at=None))
        return []
    conn.execute(
        update(users)
        .where(users.c.id == row["id"], users.c.disabled_at.is_(None))
        .values(disabled_at=now)
    )
    return revoke_user_tokens(conn, row["id"], now)


def remove_account(conn: Connection, user_id: int, now: datetime) -> list[int] | None:
    """Remove an account: the row stays (its name is never reused) with an unusable
    hash, and what was the user's alone goes: sessions, push subscriptions, blocks
    both ways, their stream, what they hid, their uploads no send took (the collector
    removes the blobs). The messages stay, as the other party's copy. Returns the ids
    of the live tokens ended; None when it was removed already."""
    removed = conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.deleted_at.is_(None))
        .values(deleted_at=now, password_hash="", last_seen=None)
    ).rowcount
    if not removed:
        return None
    live = list(
        conn.execute(
            select(tokens.c.id)
            .where(tokens.c.user_id == user_id, is_live(now))
            .order_by(tokens.c.id)
        ).scalars()
    )
    conn.execute(delete(push_subscriptions).where(push_subscriptions.c.user_id == user_id))
    conn.execute(delete(tokens).where(tokens.c.user_id == user_id))
    conn.execute(
        delete(blocks).where(or_(blocks.c.blocker_id == user_id, blocks.c.blocked_id == user_id))
    )
    conn.execute(delete(stream_events).where(stream_events.c.user_id == user_id))
    conn.execute(delete(hidden_messages).where(hidden_messages.c.user_id == user_id))
    conn.execute(
        delete(attachments).where(
            attachments.c.uploader_id == user_id, attachments.c.message_id.is_(None)
        )
    )
    return live


def remove_by_name(conn: Connection, username: str, now: datetime) -> list[int] | None:
    """`remove_account` by name (the operator's); None: no such account."""
    row = _existing(conn, username)
    if row is None:
        return None
    return remove_account(conn, row["id"], now) or []


def _existing(conn: Connection, username: str) -> RowMapping | None:
    """The account of that name, unless there is none or it was removed."""
    row = (
        conn.execute(select(users.c.id, users.c.deleted_at).where(users.c.username == username))
        .mappings()
        .one_or_none()
    )
    return row if row is not None and row["deleted_at"] is None else None


def accounts_page(conn: Connection, after_id: int, limit: int, now: datetime) -> list[RowMapping]:
    """Accounts after an id, in id order, with how many live sessions each has."""
    sessions = (
        select(func.count())
        .where(tokens.c.user_id == users.c.id, is_live(now))
        .scalar_subquery()
        .label("sessions")
    )
    statement = (
        select(
            users.c.id,
            users.c.username,
            users.c.created_at,
            users.c.disabled_at,
            users.c.deleted_at,
            sessions,
        )
        .where(users.c.id > after_id)
        .order_by(users.c.id)
        .limit(limit)
    )
    return list(conn.execute(statement).mappings())


# -- removed users, for the writer ------------------------------------------------------

# Ids per read (a batch's users fit in one).
IDS_PER_READ = 1024


def removed_users(conn: Connection, user_ids: Sequence[int]) -> set[int]:
    """Which of the users were removed: the writer asks for every batch of sends, by
    statements of a few sizes compiled once (see `sized_statements._padded`)."""
    found: set[int] = set()
    for chunk in _padded(sorted(set(user_ids)), IDS_PER_READ):
        values = {f"u{i}": user_id for i, user_id in enumerate(chunk)}
        found.update(user_id for (user_id,) in _removed_statement(len(chunk)).execute(conn, values))
    return found


@cache
def _removed_statement(size: int) -> DriverStatement:
    wanted = [bindparam(f"u{i}", type_=Integer) for i in range(size)]
    return DriverStatement(
        select(users.c.id).where(users.c.id.in_(wanted), users.c.deleted_at.is_not(None))
    )
