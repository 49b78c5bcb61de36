"""The messenger's commands, transport-free: what `send`, `history`, `sync`, `presence`
and the rest mean. The transports validate nothing themselves and know no SQL; this
module knows no Socket.IO or HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, RowMapping

from messenger.batch import SendResult
from messenger.directory import Directory
from messenger.errors import invalid, not_found
from messenger.events import (
    UserRef,
    format_time,
    formatted,
    message_dict,
    sync_entry,
    utc_now,
)
from messenger.presence import Presence
from messenger.protocol import HistoryQuery, SendCommand, SyncQuery
from messenger.store import queries
from messenger.store.db import Database
from messenger.streams import StreamReader
from messenger.writer import Writer


class Delivery:
    def __init__(
        self,
        db: Database,
        directory: Directory,
        writer: Writer,
        reader: StreamReader,
        presence: Presence,
    ) -> None:
        self._db = db
        self._directory = directory
        self._writer = writer
        self._reader = reader
        self._presence = presence

    async def submit_send(
        self, sender: UserRef, command: SendCommand
    ) -> asyncio.Future[SendResult]:
        """Check the recipient and queue the message for storing; the future resolves
        after the commit (G1), and the writer pushes it then. Callers that submit in
        order are stored in order."""
        recipient = await self._peer(sender, command.to)
        return self._writer.submit_send(sender, recipient, command.body, command.client_id)

    def submit_mark(self, user: UserRef, ids: list[int], status: int) -> asyncio.Future[int]:
        """Queue raising the status of the user's own incoming messages among `ids`;
        others' ids are ignored."""
        return self._writer.submit_mark(user, ids, status)

    async def history(self, user: UserRef, query: HistoryQuery) -> dict[str, Any]:
        peer = await self._peer(user, query.with_user)
        rows = await self._db.read(
            queries.conversation_page, user.id, peer.id, query.before, query.after, query.limit + 1
        )
        has_more = len(rows) > query.limit
        if has_more:
            # One row more than asked says whether the page continues; it is the row
            # farthest from the cursor (the oldest when paging back).
            rows = rows[: query.limit] if query.after is not None else rows[1:]
        names = {user.id: user.username, peer.id: peer.username}
        messages = [
            message_dict(row, names[row["sender_id"]], names[row["recipient_id"]], formatted)
            for row in rows
        ]
        return {"messages": messages, "has_more": has_more}

    async def sync(self, user: UserRef, query: SyncQuery) -> dict[str, Any]:
        head = await self._reader.head(user.id)
        if query.after > head:
            raise invalid(f"cursor {query.after} is ahead of the stream (head {head})")
        items = await self._reader.page(user.id, query.after, query.limit)
        cursor = items[-1].seq if items else query.after
        return {
            "events": [sync_entry(item) for item in items],
            "cursor": cursor,
            "has_more": cursor < head,
        }

    async def block(self, user: UserRef, username: str) -> None:
        target = await self._peer(user, username)
        await self._db.write(queries.add_block, user.id, target.id, utc_now())

    async def unblock(self, user: UserRef, username: str) -> None:
        target = await self._peer(user, username)
        await self._db.write(queries.remove_block, user.id, target.id)

    async def presence(self, user: UserRef, usernames: list[str]) -> dict[str, Any]:
        """Who is online; someone who blocks the caller always looks offline."""
        rows, hidden = await self._db.read(_presence_facts, user.id, usernames)
        unknown = [name for name in usernames if name not in rows]
        if unknown:
            raise not_found(f"no user {unknown[0]!r}")
        ids = [rows[name]["id"] for name in usernames]
        online = await self._presence.online(ids)
        now = format_time(utc_now())
        answer: dict[str, Any] = {}
        for name in usernames:
            uid = rows[name]["id"]
            if uid in hidden:
                answer[name] = {"online": False, "last_seen": None}
            elif uid in online:
                answer[name] = {"online": True, "last_seen": now}
            else:
                answer[name] = {"online": False, "last_seen": format_time(rows[name]["last_seen"])}
        return {"users": answer}

    async def conversations(self, user: UserRef, limit: int) -> list[dict[str, Any]]:
        rows = await self._db.read(queries.conversations, user.id, limit)
        names = await self._directory.names({row["peer"] for row in rows} | {user.id})
        return [
            {
                "with": names[row["peer"]],
                "last_message": message_dict(
                    row, names[row["sender_id"]], names[row["recipient_id"]]
                ),
                "unread": int(row["unread"]),
            }
            for row in rows
        ]

    async def _peer(self, user: UserRef, username: str) -> UserRef:
        if username == user.username:
            raise invalid("that is you: name another user")
        return await self._directory.resolve(username)


def _presence_facts(
    conn: Connection, viewer_id: int, usernames: list[str]
) -> tuple[dict[str, RowMapping], set[int]]:
    """In one read: the existing users among `usernames` with when each was last seen,
    and the ids of those who block the viewer."""
    rows = {row["username"]: row for row in queries.users_by_names(conn, usernames)}
    ids = [row["id"] for row in rows.values()]
    hidden = {blocker for blocker, _ in queries.blocking_pairs(conn, ((i, viewer_id) for i in ids))}
    return rows, hidden
