"""A user's data as one JSON document (`GET /api/v1/users/me/export`), made in pieces.

The document is `{"user", "sessions", "push_subscriptions", "blocks", "attachments",
"messages"}`. Its lists are read in keyset pages (`store.exports`) and written out as
they come, so an export of any history takes the memory of a page and a piece; the
caller sends each piece before the next is made (the socket's flow control paces the
reads). Nothing secret is in it: no token or its hash, no push keys or webhook
secrets, no password hash.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

from sqlalchemy import RowMapping

from messenger.store.db import Database
from messenger.store.exports import (
    blocked_page,
    messages_page,
    subscriptions_page,
    uploads_page,
    user_summary,
)
from messenger.wire import SessionInfo, UserRef, format_time, message_dict, to_compact_json

# Rows per read, and characters per piece handed to the transport.
PAGE = 500
PIECE_CHARS = 64 * 1024
# A user has at most 20 push subscriptions (push.subscriptions); read up to this many.
SUBSCRIPTIONS_READ = 1000


async def export_document(
    db: Database, user: UserRef, sessions: list[SessionInfo]
) -> AsyncGenerator[str, None]:
    """The export's JSON text, in pieces of about PIECE_CHARS. The first piece (the
    user, their sessions and subscriptions) is read before anything is yielded, so a
    failure there comes before the answer starts."""
    summary = await db.read(user_summary, user.id)
    subscriptions = await db.read(subscriptions_page, user.id, SUBSCRIPTIONS_READ)
    head = {
        "user": {
            "username": summary["username"],
            "created_at": format_time(summary["created_at"]),
            "settings": {"read_receipts": bool(summary["read_receipts"])},
        },
        "sessions": sessions,
        "push_subscriptions": [
            {
                "id": row["id"],
                "kind": row["kind"],
                "endpoint": row["endpoint"],
                "label": row["label"],
                "preview": bool(row["preview"]),
                "created_at": format_time(row["created_at"]),
            }
            for row in subscriptions
        ],
    }
    # The head object without its closing brace; the lists follow as its next keys.
    yield to_compact_json(head)[:-1]
    pieces = _Pieces()
    for name, items in (
        ("blocks", _blocked(db, user.id)),
        ("attachments", _uploads(db, user.id)),
        ("messages", _messages(db, user.id)),
    ):
        pieces.add(f',"{name}":[')
        first = True
        async for batch in items:
            for item in batch:
                pieces.add(("" if first else ",") + to_compact_json(item))
                first = False
            if pieces.full():
                yield pieces.take()
        pieces.add("]")
    pieces.add("}")
    yield pieces.take()


class _Pieces:
    """Text gathered until it is worth a write."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._chars = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._chars += len(text)

    def full(self) -> bool:
        return self._chars >= PIECE_CHARS

    def take(self) -> str:
        text = "".join(self._parts)
        self._parts, self._chars = [], 0
        return text


async def _keyset_pages(
    db: Database, read: Callable[..., list[RowMapping]], user_id: int, key: str
) -> AsyncIterator[list[RowMapping]]:
    """`read`'s pages of the user's rows, each after the last one's `key`, until empty."""
    after = 0
    while rows := await db.read(read, user_id, after, PAGE):
        yield rows
        after = rows[-1][key]


async def _blocked(db: Database, user_id: int) -> AsyncIterator[Iterable[Any]]:
    async for rows in _keyset_pages(db, blocked_page, user_id, "blocked_id"):
        yield [row["username"] for row in rows]


async def _uploads(db: Database, user_id: int) -> AsyncIterator[Iterable[Any]]:
    async for rows in _keyset_pages(db, uploads_page, user_id, "id"):
        yield [{**row, "created_at": format_time(row["created_at"])} for row in rows]


async def _messages(db: Database, user_id: int) -> AsyncIterator[Iterable[Any]]:
    """Both directions, ascending id, each as the user sees it now (3.1), with
    `hidden: true` where they deleted it for themselves."""
    after = 0
    while True:
        rows, extras, names = await db.read(messages_page, user_id, after, PAGE)
        if not rows:
            return
        yield [
            message_dict(
                row,
                names[row["sender_id"]],
                names[row["recipient_id"]],
                viewer_id=user_id,
                **extras.of(row["id"]),
            )
            for row in rows
        ]
        after = max(row["seq"] for row in rows)
