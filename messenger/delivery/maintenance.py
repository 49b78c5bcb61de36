"""The periodic ticks of a node: repairs that SQL makes possible, never urgent.

Every `interval` seconds: connections behind their stream head catch up from SQL (a
lost live push or Redis wake-up is repaired within two ticks, G9), sockets whose
token expired or was revoked on another node are dropped, and text that deletes and
edits removed is erased from the database's files (G10). A tick that fails is
logged with its traceback and the next one runs as usual.
"""

from __future__ import annotations

import logging
from typing import Protocol

from messenger.delivery.live import LiveHub, Pusher
from messenger.periodic import Periodic

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
        self._freed_text = freed_text
        self._periodic = Periodic("maintenance", self._round, interval, first_wait=True)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _round(self) -> None:
        await self.tick()

    async def tick(self) -> None:
        await self._hub.resync()
        await self._drop_dead_tokens()
        if self._freed_text is not None:
            await self._freed_text.erase_freed_text()

    async def _drop_dead_tokens(self) -> None:
        token_ids = sorted(self._hub.token_ids())
        live: set[int] = set()
        for start in range(0, len(token_ids), TOKEN_CHUNK):
            live |= await self._tokens.live_tokens(token_ids[start : start + TOKEN_CHUNK])
        for token_id in token_ids:
            if token_id in live:
                continue
            for conn in self._hub.connections_of_token(token_id):
                log.info("dropping sid=%s: its token expired or was revoked", conn.sid)
                await self._pusher.disconnect(conn.sid)
