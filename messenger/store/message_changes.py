"""Queries of what happens to a message after its send: the state an edit, a delete
or a reaction is checked against, and the writes that apply them. The writer runs
them inside its batch (`delivery.changes`); none commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, delete, insert, select, update
from sqlalchemy.sql.elements import BindParameter

from messenger.store.attachments import unlink_message_attachments
from messenger.store.message_views import excerpt_of
from messenger.store.models import edit_keys, hidden_messages, messages, reactions, users

_IDS: BindParameter[Any] = bindparam("ids", expanding=True)


def lock_messages(conn: Connection, ids: Iterable[int]) -> None:
    """Lock the rows of `ids` in id order (PostgreSQL): two nodes' writers changing
    the same messages take them in one order and never deadlock."""
    wanted = sorted(set(ids))
    if wanted:
        conn.execute(
            select(messages.c.id)
            .where(messages.c.id.in_(_IDS))
            .order_by(messages.c.id)
            .with_for_update(),
            {"ids": wanted},
        )


def change_targets(conn: Connection, ids: Sequence[int]) -> dict[int, RowMapping]:
    """What a change is checked against, for the messages of `ids` that exist."""
    statement = select(
        messages.c.id,
        messages.c.sender_id,
        messages.c.recipient_id,
        messages.c.sent_at,
        messages.c.body,
        messages.c.deleted_at,
    ).where(messages.c.id.in_(_IDS))
    return {row["id"]: row for row in conn.execute(statement, {"ids": list(ids)}).mappings()}


def hidden_pairs(conn: Connection, ids: Sequence[int]) -> set[tuple[int, int]]:
    """(user_id, message_id) of the messages of `ids` that a user deleted for themselves."""
    statement = select(hidden_messages.c.user_id, hidden_messages.c.message_id).where(
        hidden_messages.c.message_id.in_(_IDS)
    )
    return {(user_id, message_id) for user_id, message_id in conn.execute(statement, {"ids": ids})}


def reaction_keys(conn: Connection, ids: Sequence[int]) -> set[tuple[int, int, str]]:
    """(message_id, user_id, emoji) of every reaction on the messages of `ids`."""
    statement = select(reactions.c.message_id, reactions.c.user_id, reactions.c.emoji).where(
        reactions.c.message_id.in_(_IDS)
    )
    rows = conn.execute(statement, {"ids": ids})
    return {(message_id, user_id, emoji) for message_id, user_id, emoji in rows}


def known_edit_keys(
    conn: Connection, ids: Sequence[int], client_ids: Sequence[str]
) -> set[tuple[int, str]]:
    """Which (message_id, client_id) of these messages and client ids were applied."""
    statement = select(edit_keys.c.message_id, edit_keys.c.client_id).where(
        edit_keys.c.message_id.in_(_IDS),
        edit_keys.c.client_id.in_(bindparam("client_ids", expanding=True)),
    )
    rows = conn.execute(statement, {"ids": ids, "client_ids": sorted(set(client_ids))})
    return {(message_id, client_id) for message_id, client_id in rows}


def apply_edits(conn: Connection, bodies: dict[int, str], now: datetime) -> None:
    if bodies:
        conn.execute(
            update(messages)
            .where(messages.c.id == bindparam("mid"))
            .values(body=bindparam("new_body"), edited_at=bindparam("at")),
            [{"mid": mid, "new_body": body, "at": now} for mid, body in bodies.items()],
        )


def wipe_messages(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    """Delete for everyone: the body and the reply link are gone from the row (freed
    space is overwritten on SQLite: `secure_delete`), and the reactions and the
    attachments with it (their blobs are collected)."""
    if ids:
        conn.execute(
            update(messages)
            .where(messages.c.id.in_(_IDS))
            .values(body="", reply_to_id=None, deleted_at=now),
            {"ids": list(ids)},
        )
        conn.execute(delete(reactions).where(reactions.c.message_id.in_(_IDS)), {"ids": list(ids)})
        unlink_message_attachments(conn, ids)


def hide_messages(conn: Connection, pairs: Sequence[tuple[int, int]], now: datetime) -> None:
    """Delete for me: (user_id, message_id) pairs."""
    if pairs:
        conn.execute(
            insert(hidden_messages),
            [{"user_id": user, "message_id": mid, "hidden_at": now} for user, mid in pairs],
        )


def add_edit_keys(conn: Connection, keys: Sequence[tuple[int, str]]) -> None:
    if keys:
        conn.execute(
            insert(edit_keys), [{"message_id": mid, "client_id": key} for mid, key in keys]
        )


def add_reactions(conn: Connection, keys: Sequence[tuple[int, int, str]], now: datetime) -> None:
    if keys:
        conn.execute(
            insert(reactions),
            [
                {"message_id": mid, "user_id": user, "emoji": emoji, "created_at": now}
                for mid, user, emoji in keys
            ],
        )


def remove_reactions(conn: Connection, keys: Sequence[tuple[int, int, str]]) -> None:
    if keys:
        conn.execute(
            delete(reactions).where(
                reactions.c.message_id == bindparam("mid"),
                reactions.c.user_id == bindparam("uid"),
                reactions.c.emoji == bindparam("em"),
            ),
            [{"mid": mid, "uid": user, "em": emoji} for mid, user, emoji in keys],
        )


def private_readers(conn: Connection, user_ids: Iterable[int]) -> set[int]:
    """Those of `user_ids` whose read receipts are off (docs/protocol.md 3.8)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return set()
    statement = select(users.c.id).where(users.c.id.in_(_IDS), users.c.read_receipts.is_(False))
    return set(conn.execute(statement, {"ids": wanted}).scalars())


def reply_targets(conn: Connection, ids: Sequence[int]) -> dict[int, RowMapping]:
    """The messages that sends answer (`reply_to`), with what a reply shows of them."""
    statement = select(
        messages.c.id,
        messages.c.sender_id,
        messages.c.recipient_id,
        messages.c.deleted_at,
        excerpt_of(messages).label("excerpt"),
    ).where(messages.c.id.in_(_IDS))
    return {row["id"]: row for row in conn.execute(statement, {"ids": list(ids)}).mappings()}
