"""A message as it is shown: its row with what it answers (`reply_to`), its reactions,
and whether a user deleted it for themselves. Every read that shows messages (history,
the stream, the backlog, the conversation list, the writer's answers) takes its
columns from here, so a Message is built the same way everywhere (`wire.message_dict`).

Nothing derived from a body is stored: a reply's excerpt is read from the replied-to
message each time, so an edit or a delete of it shows in every reply at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Integer,
    Join,
    RowMapping,
    bindparam,
    exists,
    func,
    select,
)
from sqlalchemy.sql.elements import Label

from messenger.protocol import REPLY_EXCERPT_CHARS
from messenger.store.attachments import attachments_of
from messenger.store.models import hidden_messages, messages, reactions, users
from messenger.wire import AttachmentRef, Reactions, attachment_ref

# The replied-to message, joined by its primary key.
REPLY = messages.alias("reply")


def excerpt_of(table: FromClause) -> ColumnElement[str]:
    """The start of a message's body, as a reply shows it (cut in SQL: a long body is
    not read whole)."""
    return func.substr(table.c.body, 1, REPLY_EXCERPT_CHARS)


def reply_columns() -> list[Label[Any]]:
    """The columns `wire.reply_ref` reads: the replied-to message's author, its
    excerpt, and whether it is gone."""
    return [
        REPLY.c.sender_id.label("reply_sender_id"),
        excerpt_of(REPLY).label("reply_excerpt"),
        REPLY.c.deleted_at.label("reply_deleted_at"),
    ]


def with_reply(source: FromClause) -> Join:
    """`source` (holding `messages`) with the replied-to message joined in, if any."""
    return source.outerjoin(REPLY, REPLY.c.id == messages.c.reply_to_id)


def hidden_for(user_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether `user_id` deleted the message for themselves (a primary-key probe)."""
    return exists().where(
        hidden_messages.c.user_id == user_id, hidden_messages.c.message_id == messages.c.id
    )


def message_rows(
    conn: Connection, ids: Iterable[int], viewer_id: int | None = None
) -> dict[int, RowMapping]:
    """The messages of `ids` as shown (with `hidden` for `viewer_id`), by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    columns: list[Any] = [messages, *reply_columns()]
    if viewer_id is not None:
        columns.append(hidden_for(bindparam("viewer", viewer_id, type_=Integer)).label("hidden"))
    statement = (
        select(*columns)
        .select_from(with_reply(messages))
        .where(messages.c.id.in_(bindparam("ids", expanding=True)))
    )
    return {row["id"]: row for row in conn.execute(statement, {"ids": wanted}).mappings()}


_REACTIONS = (
    select(reactions.c.message_id, reactions.c.emoji, users.c.username)
    .join(users, users.c.id == reactions.c.user_id)
    .where(reactions.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(
        reactions.c.message_id, reactions.c.created_at, reactions.c.user_id, reactions.c.emoji
    )
)


def reactions_of(conn: Connection, ids: Sequence[int]) -> dict[int, Reactions]:
    """The reactions of the messages of `ids` that have any: emoji -> usernames, both
    in the order the reactions were made (the first reaction places an emoji)."""
    found: dict[int, Reactions] = {}
    if not ids:
        return found
    for message_id, emoji, username in conn.execute(_REACTIONS, {"ids": sorted(set(ids))}):
        found.setdefault(message_id, {}).setdefault(emoji, []).append(username)
    return found


@dataclass(frozen=True)
class Extras:
    """What a Message shows beside its row: its reactions and its attachments, for the
    messages that have any."""

    reactions: dict[int, Reactions]
    attachments: dict[int, list[AttachmentRef]]

    def of(self, message_id: int) -> dict[str, Any]:
        """The keyword arguments of `wire.message_dict` for that message."""
        return {
            "reactions": self.reactions.get(message_id, {}),
            "attachments": self.attachments.get(message_id, []),
        }


def extras_of(conn: Connection, ids: Sequence[int]) -> Extras:
    wanted = [message_id for message_id in ids if message_id is not None]
    if not wanted:
        return Extras({}, {})
    files = {
        message_id: [attachment_ref(row) for row in rows]
        for message_id, rows in attachments_of(conn, wanted).items()
    }
    return Extras(reactions_of(conn, wanted), files)


def with_extras(
    conn: Connection,
    read: Callable[Concatenate[Connection, ...], list[RowMapping]],
    *args: Any,
) -> tuple[list[RowMapping], Extras]:
    """`read`'s rows of messages and, in the same transaction, their extras."""
    rows = read(conn, *args)
    return rows, extras_of(conn, [row["id"] for row in rows])
