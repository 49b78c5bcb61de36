"""When each session was last used (`tokens.last_used_at`, shown by `GET /sessions`).

Every HTTP request and Socket.IO connect authenticates a token; writing the time for
each would add a write transaction to every request. A node writes it at most once
per `every` seconds per token, remembering what it wrote in a bounded map (a token
forgotten there is merely written again), and never in the request: the writes are
gathered and made by one background task at a time, through `db.write` (not the
writer's batches, which carry sends). A failed write is logged and not retried: the
next use a minute later writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from messenger.store.accounts import touch_tokens
from messenger.store.db import Database
from messenger.wire import utc_now

log = logging.getLogger(__name__)

EVERY_SECONDS = 60.0
# Tokens remembered (and times waiting to be written) at most.
REMEMBERED = 10_000


class TokenUse:
    def __init__(
        self,
        db: Database,
        every: float = EVERY_SECONDS,
        size: int = REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._every = every
        self._size = size
        self._clock = clock
        self._written: OrderedDict[int, float] = OrderedDict()
        self._pending: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def used(self, token_id: int) -> None:
        """The token authenticated a request now: write that, unless this node wrote
        it less than `every` seconds ago. Returns at once."""
        now = self._clock()
        last = self._written.get(token_id)
        if last is not None and now - last < self._every:
            return
        self.written(token_id, now)
        if len(self._pending) >= self._size:
            return  # the database is far behind: this one waits for the next use
        self._pending[token_id] = utc_now()
        if self._task is None:
            self._task = asyncio.create_task(self._flush())

    def written(self, token_id: int, at: float | None = None) -> None:
        """Its time was just written (a login stores it with the token)."""
        self._written[token_id] = self._clock() if at is None else at
        self._written.move_to_end(token_id)
        while len(self._written) > self._size:
            self._written.popitem(last=False)

    async def close(self) -> None:
        """Let the write under way finish (before the database closes)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _flush(self) -> None:
        try:
            while self._pending:
                used, self._pending = self._pending, {}
                try:
                    await self._db.write(touch_tokens, used)
                except Exception as exc:
                    log.warning("last use of %d sessions not written: %r", len(used), exc)
        finally:
            self._task = None
