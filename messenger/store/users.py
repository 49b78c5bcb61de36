"""Queries of `users`: accounts, names, and when each was last seen (stream heads,
also kept on `users`, are in `streams`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, RowMapping, bindparam, insert, select, update

from messenger.store.models import users
from messenger.wire import SettingsAnswer


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


def user_by_id(conn: Connection, user_id: int) -> RowMapping | None:
    return conn.execute(select(users).where(users.c.id == user_id)).mappings().one_or_none()


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
        select(users.c.id, users.c.username, users.c.last_seen, users.c.deleted_at).where(
            users.c.username.in_(names)
        )
    )
    return list(result.mappings())


def usernames(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    result = conn.execute(select(users.c.id, users.c.username).where(users.c.id.in_(list(ids))))
    return {row.id: row.username for row in result}


def read_settings(conn: Connection, user_id: int) -> SettingsAnswer:
    result = conn.execute(select(users.c.read_receipts).where(users.c.id == user_id))
    return {"read_receipts": bool(result.scalar_one())}


def write_settings(conn: Connection, user_id: int, read_receipts: bool | None) -> SettingsAnswer:
    """Change the settings given (None: left alone); the settings now."""
    if read_receipts is not None:
        conn.execute(update(users).where(users.c.id == user_id).values(read_receipts=read_receipts))
    return read_settings(conn, user_id)


_TOUCH = update(users).where(users.c.id == bindparam("uid")).values(last_seen=bindparam("seen"))


def touch_last_seen(conn: Connection, seen: Mapping[int, datetime]) -> None:
    if seen:
        conn.execute(_TOUCH, [{"uid": uid, "seen": at} for uid, at in seen.items()])
