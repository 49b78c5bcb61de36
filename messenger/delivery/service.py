"""The messenger's commands, transport-free: what `send`, `history`, `sync`, `presence`
and the rest mean, and what connecting and disconnecting a socket does (attach it to
the live hub, replay its backlog, note the user seen). The transports validate
nothing themselves, know no SQL and talk to `Delivery` only; this module knows no
Socket.IO or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping

from messenger import protocol
from messenger.cluster.presence import Presence
from messenger.delivery.batch import SendResult
from messenger.delivery.live import LiveConnection, LiveHub
from messenger.delivery.search import Search
from messenger.delivery.streams import StreamReader
from messenger.delivery.typing import Typing
from messenger.delivery.writer import Writer
from messenger.directory import Directory
from messenger.errors import ErrorCode, MessengerError, invalid, not_found
from messenger.protocol import (
    ChangeCommand,
    HistoryQuery,
    SearchQuery,
    SendCommand,
    SettingsChange,
    SyncQuery,
    TypingCommand,
)
from messenger.store.accounts import removed_users
from messenger.store.blocks import add_block, blocking_pairs, remove_block
from messenger.store.db import Database
from messenger.store.message_reads import conversation_page, conversations
from messenger.store.message_views import Extras, extras_of, with_extras
from messenger.store.messages import messages_by_client_ids
from messenger.store.users import read_settings, users_by_names, write_settings
from messenger.wire import (
    Conversation,
    HistoryAnswer,
    Message,
    PresenceAnswer,
    SearchAnswer,
    Seen,
    SettingsAnswer,
    SyncAnswer,
    SyncEntry,
    UserRef,
    fitting_count,
    format_time,
    formatted,
    message_dict,
    sync_entry,
    utc_now,
)

__all__ = ["ANSWER_ENVELOPE_BYTES", "Delivery", "LiveConnection", "TooManyConnections"]

log = logging.getLogger(__name__)

# Room for what an answer holds besides its list (`ok`, `cursor`, `has_more`, the
# packet's header), within `max_answer_bytes`.
ANSWER_ENVELOPE_BYTES = 256


class TooManyConnections(MessengerError):
    """A handshake refused: the user already has `cap` connections on this node."""

    def __init__(self, cap: int) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, f"at most {cap} connections per user")
        self.cap = cap


class Delivery:
    def __init__(
        self,
        db: Database,
        directory: Directory,
        writer: Writer,
        reader: StreamReader,
        hub: LiveHub,
        presence: Presence,
        typing: Typing,
        search: Search,
        max_answer_bytes: int,
        max_connections_per_user: int,
    ) -> None:
        self._db = db
        self._directory = directory
        self._writer = writer
        self._reader = reader
        self._hub = hub
        self._presence = presence
        self._typing = typing
        self._answer_bytes = max_answer_bytes - ANSWER_ENVELOPE_BYTES
        self._max_connections = max_connections_per_user
        self._search = search

    # -- connections --------------------------------------------------------------

    async def connect(
        self,
        sid: str,
        user: UserRef,
        token_id: int,
        *,
        cursor: Any,
        seed: bool,
        address: str,
    ) -> LiveConnection:
        """Attach an authenticated socket: it is pushed its backlog from `cursor` (the
        stream head when absent or not valid), then `synced`, then live events.
        Raises `TooManyConnections` past `max_connections_per_user` (0: no cap)."""
        head = await self._reader.head(user.id)
        # Checked after the last await, so the check and `attach` below happen as one
        # step: simultaneous handshakes cannot slip past the cap together.
        cap = self._max_connections
        if cap and self._hub.count_of_user(user.id) >= cap:
            raise TooManyConnections(cap)
        start = _optional_cursor(cursor, head)
        base = head if start is None else start
        conn = LiveConnection(
            sid=sid,
            user=user,
            token_id=token_id,
            seed=seed,
            last_seq=base,
            replay_undelivered_to=base,
            address=address,
        )
        self._hub.attach(conn, head)
        self._writer.touch(user.id, utc_now())
        log.info("connect user=%s sid=%s cursor=%s", user.username, sid, start)
        return conn

    def connection(self, sid: str) -> LiveConnection | None:
        """The attached connection of a socket, if it is attached."""
        return self._hub.get(sid)

    def disconnect(self, sid: str) -> LiveConnection | None:
        """Detach a socket that went away (and note its user seen); the connection it
        was, or None if it never attached."""
        conn = self._hub.detach(sid)
        if conn is not None:
            self._writer.touch(conn.user.id, utc_now())
            self._typing.disconnected(sid)
        return conn

    async def submit_send(
        self, sender: UserRef, command: SendCommand
    ) -> asyncio.Future[SendResult]:
        """Check the recipient and queue the message for storing; the future resolves
        after the commit (G1), and the writer pushes it then. Callers that submit in
        order are stored in order.

        A repeat of a stored send is answered with the stored message whatever it
        names now (G2): a retry must not fail because the recipient it named is
        unknown or the sender itself. The key is looked up only when a check fails,
        so new sends cost no extra read (the writer catches repeats that pass)."""
        try:
            recipient = await self._directory.other_user(sender, command.to)
        except MessengerError as exc:
            if exc.code not in (ErrorCode.INVALID, ErrorCode.NOT_FOUND):
                raise
            message = await self._db.read(_stored_send, sender, command.client_id)
            if message is None:
                raise
            answered: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
            answered.set_result(SendResult(message, created=False))
            return answered
        stored = self._writer.submit_send(
            sender,
            recipient,
            command.body,
            command.client_id,
            command.reply_to,
            command.attachments,
        )
        stored.add_done_callback(lambda _: self._typing.sent(sender, recipient))
        return stored

    def submit_change(
        self, user: UserRef, command: ChangeCommand
    ) -> asyncio.Future[dict[str, Any]]:
        """Queue an edit, a delete or a reaction (docs/protocol.md 3.6); the future
        resolves to the answer after the commit."""
        return self._writer.submit_change(user, command)

    async def typing(self, sid: str, user: UserRef, command: TypingCommand) -> None:
        """Tell `to`'s devices that the user is (or stopped) typing (3.7)."""
        to = await self._directory.other_user(user, command.to)
        await self._typing.update(sid, user, to, command.state)

    async def settings(self, user: UserRef) -> SettingsAnswer:
        return await self._db.read(read_settings, user.id)

    async def change_settings(self, user: UserRef, change: SettingsChange) -> SettingsAnswer:
        return await self._db.write(write_settings, user.id, change.read_receipts)

    def submit_mark(self, user: UserRef, ids: list[int], status: int) -> asyncio.Future[int]:
        """Queue raising the status of the user's own incoming messages among `ids`;
        others' ids are ignored."""
        return self._writer.submit_mark(user, ids, status)

    async def history(self, user: UserRef, query: HistoryQuery) -> HistoryAnswer:
        peer = await self._directory.other_user(user, query.with_user)
        rows, extras = await self._db.read(
            with_extras,
            conversation_page,
            user.id,
            peer.id,
            query.before,
            query.after,
            query.limit + 1,
        )
        has_more = len(rows) > query.limit
        paging_back = query.after is None
        if has_more:
            # One row more than asked says whether the page continues; it is the row
            # farthest from the cursor (the oldest when paging back).
            rows = rows[1:] if paging_back else rows[: query.limit]
        names = {user.id: user.username, peer.id: peer.username}
        messages = [
            message_dict(
                row,
                names[row["sender_id"]],
                names[row["recipient_id"]],
                formatted,
                viewer_id=user.id,
                **extras.of(row["id"]),
            )
            for row in rows
        ]
        # Past the byte bound, the page keeps the messages nearest its cursor.
        if paging_back:
            messages.reverse()
        kept = self._fitting(messages)
        if kept < len(messages):
            messages, has_more = messages[:kept], True
        if paging_back:
            messages.reverse()
        return {"messages": messages, "has_more": has_more}

    async def search(self, user: UserRef, query: SearchQuery) -> SearchAnswer:
        """The user's messages that match (docs/protocol.md 3.10)."""
        return await self._search.search(user, query)

    async def sync(self, user: UserRef, query: SyncQuery) -> SyncAnswer:
        head = await self._reader.head(user.id)
        if query.after > head:
            raise invalid(f"cursor {query.after} is ahead of the stream (head {head})")
        items = await self._reader.page(user.id, query.after, query.limit)
        events = [sync_entry(item) for item in items]
        kept = self._fitting(events)
        cursor = items[kept - 1].seq if kept else query.after
        return {
            "events": events[:kept],
            "cursor": cursor,
            "has_more": cursor < head,
        }

    def _fitting(self, entries: Sequence[Message | SyncEntry]) -> int:
        """How many of `entries` fit in one answer (`wire.fitting_count`)."""
        return fitting_count(entries, self._answer_bytes)

    async def block(self, user: UserRef, username: str) -> None:
        target = await self._directory.other_user(user, username)
        await self._db.write(add_block, user.id, target.id, utc_now())

    async def unblock(self, user: UserRef, username: str) -> None:
        target = await self._directory.other_user(user, username)
        await self._db.write(remove_block, user.id, target.id)

    async def presence(self, user: UserRef, usernames: list[str]) -> PresenceAnswer:
        """Who is online; someone who blocks the caller, or whose account was removed,
        always looks offline."""
        rows, hidden = await self._db.read(_presence_facts, user.id, usernames)
        unknown = [name for name in usernames if name not in rows]
        if unknown:
            raise not_found(f"no user {unknown[0]!r}")
        ids = [rows[name]["id"] for name in usernames]
        online = await self._presence.online(ids)
        now = format_time(utc_now())
        answer: dict[str, Seen] = {}
        for name in usernames:
            uid = rows[name]["id"]
            if uid in hidden or rows[name]["deleted_at"] is not None:
                answer[name] = {"online": False, "last_seen": None}
            elif uid in online:
                answer[name] = {"online": True, "last_seen": now}
            else:
                answer[name] = {"online": False, "last_seen": format_time(rows[name]["last_seen"])}
        return {"users": answer}

    async def conversations(self, user: UserRef, limit: int) -> list[Conversation]:
        rows, extras, removed = await self._db.read(_conversation_rows, user.id, limit)
        names = await self._directory.names({row["peer"] for row in rows} | {user.id})
        return [
            {
                "with": names[row["peer"]],
                "last_message": message_dict(
                    row,
                    names[row["sender_id"]],
                    names[row["recipient_id"]],
                    viewer_id=user.id,
                    **extras.of(row["id"]),
                ),
                "unread": int(row["unread"]),
                "removed": row["peer"] in removed,
            }
            for row in rows
        ]


def _optional_cursor(value: Any, head: int) -> int | None:
    """A connect-time cursor; one of the wrong type or from the future counts as absent."""
    if value is None:
        return None
    try:
        cursor = protocol.parse_cursor(value)
    except MessengerError:
        return None
    return cursor if cursor <= head else None


def _stored_send(conn: Connection, sender: UserRef, client_id: str) -> Message | None:
    """The message a (sender, client_id) stored, as it is now, if there is one."""
    row = messages_by_client_ids(conn, [(sender.id, client_id)]).get((sender.id, client_id))
    if row is None:
        return None
    extras = extras_of(conn, [row["id"]])
    return message_dict(
        row, sender.username, row["recipient_name"], viewer_id=sender.id, **extras.of(row["id"])
    )


def _conversation_rows(
    conn: Connection, user_id: int, limit: int
) -> tuple[list[RowMapping], Extras, set[int]]:
    """In one read: the conversations, their messages' extras, and which of the peers
    removed their account."""
    rows, extras = with_extras(conn, conversations, user_id, limit)
    return rows, extras, removed_users(conn, [row["peer"] for row in rows])


def _presence_facts(
    conn: Connection, viewer_id: int, usernames: list[str]
) -> tuple[dict[str, RowMapping], set[int]]:
    """In one read: the existing users among `usernames` with when each was last seen,
    and the ids of those who block the viewer."""
    rows = {row["username"]: row for row in users_by_names(conn, usernames)}
    ids = [row["id"] for row in rows.values()]
    hidden = {blocker for blocker, _ in blocking_pairs(conn, ((i, viewer_id) for i in ids))}
    return rows, hidden
