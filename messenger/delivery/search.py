"""`search`: the caller's own messages that match a query, newest first, each with a
snippet of its current text (docs/protocol.md 3.10). Reads only: nothing goes through
the writer."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import Connection, RowMapping

from messenger.directory import Directory
from messenger.metrics import Metrics
from messenger.protocol import SearchQuery
from messenger.store.db import Database
from messenger.store.message_views import Extras, extras_of, message_rows
from messenger.store.search import Scope, find_message_ids
from messenger.text_search import Terms, snippet
from messenger.wire import (
    Message,
    SearchAnswer,
    SearchResult,
    UserRef,
    fitting_count,
    message_dict,
)


class Search:
    def __init__(
        self, db: Database, directory: Directory, answer_bytes: int, metrics: Metrics
    ) -> None:
        self._db = db
        self._directory = directory
        # What the results' messages may take of an answer (`wire.fitting_count`).
        self._answer_bytes = answer_bytes
        self._metrics = metrics

    async def search(self, user: UserRef, query: SearchQuery) -> SearchAnswer:
        peer_id: int | None = None
        if query.with_user is not None:
            peer_id = (await self._directory.other_user(user, query.with_user)).id
        scope = Scope(user.id, peer_id)
        started = time.perf_counter()
        ids, rows, extras = await self._db.read(
            _found, scope, query.terms, query.before, query.limit + 1
        )
        self._metrics.search_seconds.observe(time.perf_counter() - started)
        has_more = len(ids) > query.limit
        ids = ids[: query.limit]
        names = await self._directory.names(
            {rows[mid]["sender_id"] for mid in ids} | {rows[mid]["recipient_id"] for mid in ids}
        )
        messages = [
            message_dict(
                rows[mid],
                names[rows[mid]["sender_id"]],
                names[rows[mid]["recipient_id"]],
                viewer_id=user.id,
                **extras.of(mid),
            )
            for mid in ids
        ]
        kept = fitting_count(messages, self._answer_bytes)
        if kept < len(messages):
            messages, has_more = messages[:kept], True
        # Folding and cutting long bodies is CPU work: off the event loop.
        snippets = await asyncio.to_thread(_snippets, messages, query.terms)
        results: list[SearchResult] = [
            {"message": message, "snippet": cut}
            for message, cut in zip(messages, snippets, strict=True)
        ]
        return {"results": results, "has_more": has_more}


def _found(
    conn: Connection, scope: Scope, terms: Terms, before: int | None, want: int
) -> tuple[list[int], dict[int, RowMapping], Extras]:
    """The matching ids, their rows as shown and their extras, in one read."""
    ids = find_message_ids(conn, scope, terms, before, want)
    rows = message_rows(conn, ids, viewer_id=scope.user_id)
    return ids, rows, extras_of(conn, ids)


def _snippets(messages: list[Message], terms: Terms) -> list[str]:
    return [snippet(message["body"] or "", terms) for message in messages]
