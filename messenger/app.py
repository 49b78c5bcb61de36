"""The wiring root: the only place that builds objects. `Node` is one server process
(a node): its database engines, writer, live hub, Socket.IO server and HTTP routes,
started and stopped as one unit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import socketio
from aiohttp import web

from messenger.auth import Accounts
from messenger.config import Settings
from messenger.delivery import Delivery
from messenger.directory import Directory
from messenger.events import StreamItem
from messenger.live import LiveHub
from messenger.metrics import Metrics
from messenger.store.db import open_database
from messenger.streams import StreamReader
from messenger.transport.origins import engineio_origin_check
from messenger.transport.rest import (
    MAX_REQUEST_BYTES,
    RestApi,
    cors_middleware,
    error_middleware,
)
from messenger.transport.sockets import SocketHandlers, SocketPusher
from messenger.writer import Writer

log = logging.getLogger(__name__)

# Engine.IO packets larger than this close the connection. The largest valid event
# is a body of `max_body` characters, each up to 6 bytes as a JSON escape, plus room
# for the rest of the payload; far below python-engineio's 1 MB default.
MIN_PACKET_BYTES = 16 * 1024


def max_packet_bytes(settings: Settings) -> int:
    return max(MIN_PACKET_BYTES, settings.max_body * 6 + 4096)


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.db = open_database(settings.database_url, settings.sqlite_synchronous)
        self.directory = Directory(self.db)
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            cors_allowed_origins=engineio_origin_check(settings.cors_origins),
            max_http_buffer_size=max_packet_bytes(settings),
            logger=False,
            engineio_logger=False,
        )
        self.pusher = SocketPusher(self.sio)
        self.reader = StreamReader(self.db, self.directory)
        self.hub = LiveHub(self.pusher, self.reader, self.metrics)
        self.writer = Writer(self.db, self._publish, self.metrics, settings.write_batch_max)
        self.accounts = Accounts(self.db, settings.token_ttl)
        self.delivery = Delivery(self.db, self.directory, self.writer, self.reader, self.hub)
        SocketHandlers(
            self.sio,
            settings,
            self.accounts,
            self.delivery,
            self.writer,
            self.reader,
            self.hub,
            self.metrics,
        ).register()
        self.app = web.Application(
            middlewares=[error_middleware, cors_middleware(settings.cors_origins)],
            client_max_size=MAX_REQUEST_BYTES,
        )
        rest = RestApi(self.db, self.accounts, self.delivery, self.hub, self.pusher, self.metrics)
        self.app.add_routes(rest.routes())
        self.sio.attach(self.app)
        self._maintenance: asyncio.Task[None] | None = None

    async def _publish(self, items: list[StreamItem]) -> None:
        await self.hub.deliver(items)

    async def start(self) -> None:
        self.writer.start()
        self._maintenance = asyncio.create_task(self._maintain(), name="messenger-maintenance")

    async def stop(self) -> None:
        """Answer every send already taken, then close sockets and engines."""
        await self.writer.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.hub.close()
        # Closing waits for each socket's queue to flush, so the last acks go out.
        if self.sio.eio.sockets:  # python-engineio fails on an empty server
            await self.sio.eio.disconnect()
        await self.sio.shutdown()
        await self.db.dispose()

    async def _maintain(self) -> None:
        """Periodic repair: connections behind their stream head catch up from SQL
        (G9), and sockets whose token expired or was revoked elsewhere are dropped."""
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            try:
                await self.hub.resync()
                await self._drop_dead_tokens()
            except Exception as exc:
                log.warning("maintenance tick failed: %s", exc)

    async def _drop_dead_tokens(self) -> None:
        conns = self.hub.connections()
        if not conns:
            return
        live = await self.accounts.live_tokens(sorted({conn.token_id for conn in conns}))
        for conn in conns:
            if conn.token_id not in live:
                log.info("dropping sid=%s: its token expired or was revoked", conn.sid)
                await self.pusher.disconnect(conn.sid)
