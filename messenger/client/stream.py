"""Reading the user's stream in order: dedupe, gap detection and gap filling.

Kept apart from the socket so that the rules of PROTOCOL.md 3.4 live in one small
piece of code: feed it what the server pushed, in order, and it returns the events
the application should see, each once.

- A `new_message` is shown once per id (G6: the server may send a message twice);
  a `receipt` or `message_updated` once per cursor (a message has many updates).
- After a connection's `synced`, cursors grow by exactly one; an event further on means
  something was missed, and the events in between are fetched with `sync`.
- A connection without a cursor gets a backlog whose cursors skip; `synced` then gives
  the head to follow from.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from messenger import protocol
from messenger.client.types import Event, NewMessage, parse_event

# after -> (events as [(name, data)], cursor reached, has_more): the `sync` event.
SyncPage = Callable[[int], Awaitable[tuple[list[tuple[str, Any]], int, bool]]]


class Stream:
    """The position in the user's stream, and the ids already shown."""

    def __init__(self, cursor: int | None, remember: int = 50_000) -> None:
        self.cursor = cursor
        self.synced = False
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._remember = remember

    def new_connection(self) -> None:
        """A new connection replays its backlog before its `synced`."""
        self.synced = False

    async def feed(self, name: str, data: Any, sync: SyncPage) -> list[Event]:
        """The events to show for one pushed event; raises if a gap cannot be filled."""
        if name == protocol.SYNCED:
            return await self._synced(data, sync)
        event = parse_event(name, data)
        if event is None:
            return []
        if self.cursor is None:
            # A backlog without a cursor: its cursors skip, follow from `synced` on.
            return self._unseen([event])
        if event.cursor <= self.cursor:
            # Already passed: a message still undelivered (replayed, G6) or a repeat.
            return self._unseen([event]) if isinstance(event, NewMessage) else []
        if event.cursor == self.cursor + 1:
            self.cursor = event.cursor
            return self._unseen([event])
        filled = await self._fill(sync, until=event.cursor)
        if self.cursor < event.cursor:  # the stream did not reach it: trust the push
            self.cursor = event.cursor
            filled.extend(self._unseen([event]))
        return filled

    async def _synced(self, data: Any, sync: SyncPage) -> list[Event]:
        head = data.get("cursor") if isinstance(data, dict) else None
        self.synced = True
        if not isinstance(head, int):
            return []
        if self.cursor is None:
            self.cursor = head
            return []
        if head > self.cursor:
            return await self._fill(sync, until=head)
        return []

    async def _fill(self, sync: SyncPage, until: int) -> list[Event]:
        """Fetch the events after the cursor up to `until` (or the head).

        Nothing changes unless every page arrives, so a failure leaves the stream as
        it was and a reconnect from the cursor fills the same gap.
        """
        assert self.cursor is not None
        cursor, found = self.cursor, []
        while cursor < until:
            entries, reached, has_more = await sync(cursor)
            for name, data in entries:
                event = parse_event(name, data)
                if event is not None and event.cursor > cursor:
                    found.append(event)
                    cursor = event.cursor
            cursor = max(cursor, reached)
            if not has_more or not entries:
                break
        self.cursor = cursor
        return self._unseen(found)

    def _unseen(self, events: list[Event]) -> list[Event]:
        fresh: list[Event] = []
        for event in events:
            if isinstance(event, NewMessage):
                if event.message.id in self._seen:
                    continue
                self._seen[event.message.id] = None
                if len(self._seen) > self._remember:
                    self._seen.popitem(last=False)
            fresh.append(event)
        return fresh
