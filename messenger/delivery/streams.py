"""Reading users' event streams back from SQL: backlogs on connect, `sync`, catch-up.

Every replayed event has the shape of the live one (see `messenger.wire`), so a client cannot
tell, and need not care, whether an event came live or from the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import RowMapping

from messenger.directory import Directory
from messenger.store.db import Database
from messenger.store.message_reads import undelivered_page
from messenger.store.message_views import Extras, with_extras
from messenger.store.models import EVENT_MESSAGE_UPDATED, EVENT_NEW_MESSAGE
from messenger.store.streams import stream_head, stream_heads, stream_page
from messenger.wire import (
    Message,
    StreamItem,
    message_dict,
    message_updated_item,
    new_message_item,
    receipt_item,
)


class StreamReader:
    def __init__(self, db: Database, directory: Directory) -> None:
        self._db = db
        self._directory = directory

    async def head(self, user_id: int) -> int:
        """The cursor of the user's newest event (0 before the first)."""
        return await self._db.read(stream_head, user_id)

    async def heads(self, user_ids: Sequence[int]) -> dict[int, int]:
        return await self._db.read(stream_heads, user_ids)

    async def page(self, user_id: int, after: int, limit: int) -> list[StreamItem]:
        """Up to `limit` events after cursor `after`, in cursor order. Each message
        shows as it is now (docs/protocol.md 3.3): a device that replays its stream
        ends with the current state of every message in it."""
        rows, extras = await self._db.read(with_extras, stream_page, user_id, after, limit)
        names = await self._directory.names(_people(rows))
        items = []
        for row in rows:
            seq = row["seq"]
            if row["kind"] == EVENT_NEW_MESSAGE:
                items.append(new_message_item(user_id, seq, _shown(row, names, user_id, extras)))
            elif row["kind"] == EVENT_MESSAGE_UPDATED:
                message = _shown(row, names, user_id, extras)
                items.append(message_updated_item(user_id, seq, message, row["payload"]))
            else:
                items.append(receipt_item(user_id, seq, json.loads(row["payload"])))
        return items

    async def undelivered(
        self, user_id: int, after: int, up_to: int, limit: int
    ) -> list[StreamItem]:
        """The user's messages still waiting for delivery, with cursors in (after, up_to]."""
        rows, extras = await self._db.read(
            with_extras, undelivered_page, user_id, after, up_to, limit
        )
        names = await self._directory.names(_people(rows))
        return [
            new_message_item(user_id, row["recipient_seq"], _shown(row, names, user_id, extras))
            for row in rows
        ]


def _shown(row: RowMapping, names: dict[int, str], viewer_id: int, extras: Extras) -> Message:
    return message_dict(
        row,
        names[row["sender_id"]],
        names[row["recipient_id"]],
        viewer_id=viewer_id,
        **extras.of(row["id"]),
    )


def _people(rows: Sequence[RowMapping]) -> set[int]:
    people: set[int] = set()
    for row in rows:
        if row["sender_id"] is not None:
            people.update((row["sender_id"], row["recipient_id"]))
    return people
