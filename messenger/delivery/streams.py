"""Reading users' event streams back from SQL: backlogs on connect, `sync`, catch-up.

Every replayed event has the shape of the live one (see `messenger.wire`), so a client cannot
tell, and need not care, whether an event came live or from the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import RowMapping

from messenger.directory import Directory
from messenger.protocol import STATUS_SENT
from messenger.store.db import Database
from messenger.store.message_reads import undelivered_page
from messenger.store.models import EVENT_NEW_MESSAGE
from messenger.store.streams import stream_head, stream_heads, stream_page
from messenger.wire import (
    StreamItem,
    message_dict,
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
        """Up to `limit` events after cursor `after`, in cursor order."""
        rows = await self._db.read(stream_page, user_id, after, limit)
        names = await self._directory.names(_people(rows))
        items = []
        for row in rows:
            if row["kind"] == EVENT_NEW_MESSAGE:
                # The event as it was pushed: the message as sent. What happened to
                # it since comes as the receipt events after it.
                as_sent = {**row, "status": STATUS_SENT, "delivered_at": None, "read_at": None}
                message = message_dict(as_sent, names[row["sender_id"]], names[row["recipient_id"]])
                items.append(new_message_item(user_id, row["seq"], message))
            else:
                items.append(receipt_item(user_id, row["seq"], json.loads(row["payload"])))
        return items

    async def undelivered(
        self, user_id: int, after: int, up_to: int, limit: int
    ) -> list[StreamItem]:
        """The user's messages still waiting for delivery, with cursors in (after, up_to]."""
        rows = await self._db.read(undelivered_page, user_id, after, up_to, limit)
        names = await self._directory.names(_people(rows))
        return [
            new_message_item(
                user_id,
                row["recipient_seq"],
                message_dict(row, names[row["sender_id"]], names[row["recipient_id"]]),
            )
            for row in rows
        ]


def _people(rows: Sequence[RowMapping]) -> set[int]:
    people: set[int] = set()
    for row in rows:
        if row["sender_id"] is not None:
            people.update((row["sender_id"], row["recipient_id"]))
    return people
