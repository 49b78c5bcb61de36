"""The periodic ticks of a node: repairs that SQL makes possible, never urgent.

Every `interval` seconds: connections behind their stream head catch up from SQL (a
lost live push or Redis wake-up is repaired within two ticks, G9), sockets whose
token expired or was revoked on another node are dropped, and text that deletes and
edits removed is erased from the database's files (G10). A tick that fails is
logged with its traceback and the next one runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from messenger.delivery.live import LiveHub, Pusher

log = logging.getLogger(__name__)

# Token ids per query (bounded IN lists).
TOKEN_CHUNK = 500


class Tokens(Protocol):
    """Which tokens are still valid (`auth.Accounts`)."""

    async def live_tokens(self, token_ids: list[int]) -> set[int]: ...


class FreedText(Protocol):
    """Removed text to erase from the database's files (`writer.Writer`)."""

    async def erase_freed_text(self) -> None: ...


class Maintenance:
    def __init__(
        self,
        hub: LiveHub,
        pusher: Pusher,
        tokens: Tokens,
        interval: float,
        freed_text: FreedText | None = None,
    ) -> None:
        self._hub = hub
        self._pusher = pusher
        self._tokens = tokens
        self._interval = interval
        self._freed_text = freed_text
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="messenger-maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except Exception:
                log.exception("maintenance tick failed")

    async def tick(self) -> None:
        await self._hub.resync()
        await self._drop_dead_tokens()
        if self._freed_text is not None:
            await self._freed_text.erase_freed_text()

    async def _drop_dead_tokens(self) -> None:
        conns = self._hub.connections()
        if not conns:
            return
        token_ids = sorted({conn.token_id for conn in conns})
        live: set[int] = set()
        for start in range(0, len(token_ids), TOKEN_CHUNK):
            live |= await self._tokens.live_tokens(token_ids[start : start + TOKEN_CHUNK])
        for conn in conns:
            if conn.token_id not in live:
                log.info("dropping sid=%s: its token expired or was revoked", conn.sid)
                await self._pusher.disconnect(conn.sid)
