"""The wiring root: the only place that builds objects. `Node` is one server process
(a node): its database engines, writer, live hub, Socket.IO server and HTTP routes,
started and stopped as one unit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import socketio
from aiohttp import web

from messenger.auth import Accounts, password_hasher
from messenger.cluster import Cluster, ClusterManager
from messenger.config import Settings
from messenger.delivery import Delivery
from messenger.directory import Directory
from messenger.events import StreamItem
from messenger.hashing import HashPool
from messenger.live import LiveHub
from messenger.metrics import Metrics
from messenger.presence import LocalPresence, Presence, RedisPresence
from messenger.store.db import open_database
from messenger.streams import StreamReader
from messenger.transport.client_address import ClientAddresses
from messenger.transport.origins import engineio_origin_check
from messenger.transport.pusher import SocketPusher
from messenger.transport.rest import (
    MAX_REQUEST_BYTES,
    RestApi,
    cors_middleware,
    error_middleware,
)
from messenger.transport.server import CLOSE_GRACE_SECONDS, TextOnlyServer
from messenger.transport.sockets import SocketHandlers
from messenger.transport.web import add_web_routes
from messenger.writer import Writer

log = logging.getLogger(__name__)

# Engine.IO packets larger than this close the connection. The largest valid event
# is a body of `max_body` characters, each up to 12 bytes as JSON escapes (a character
# outside the BMP is a surrogate pair, two \uXXXX), plus room for the rest of the
# payload; far below python-engineio's 1 MB default.
MIN_PACKET_BYTES = 16 * 1024


def max_packet_bytes(settings: Settings) -> int:
    return max(MIN_PACKET_BYTES, settings.max_body * 12 + 4096)


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.db = open_database(settings.database_url, settings.sqlite_synchronous)
        self.directory = Directory(self.db)
        self.cluster: Cluster | None = None
        self.presence: Presence
        manager: socketio.AsyncManager | None = None
        if settings.redis_url:
            manager = ClusterManager(settings.redis_url, channel=settings.redis_prefix)
            manager.on_stream = self._deliver_from_cluster
            manager.on_revoke = self._disconnect_token
            self.cluster = Cluster(manager)
        self.sio = TextOnlyServer(
            connect_timeout=settings.connect_timeout,
            connection_buffer=settings.connection_buffer,
            max_pending_sessions_per_address=settings.max_pending_sessions_per_address,
            max_pending_sessions=settings.max_pending_sessions,
            addresses=ClientAddresses(settings.trusted_proxies),
            async_mode="aiohttp",
            client_manager=manager,
            cors_allowed_origins=engineio_origin_check(settings.cors_origins),
            max_http_buffer_size=max_packet_bytes(settings),
            logger=False,
            engineio_logger=False,
        )
        self.pusher = SocketPusher(self.sio)
        self.reader = StreamReader(self.db, self.directory)
        self.hub = LiveHub(
            self.pusher,
            self.reader,
            self.metrics,
            self._users_changed,
            connection_buffer=settings.connection_buffer,
        )
        if settings.redis_url:
            self.presence = RedisPresence(
                settings.redis_url, self.hub.local_user_ids, prefix=settings.redis_prefix
            )
        else:
            self.presence = LocalPresence(self.hub.local_user_ids)
        self.writer = Writer(self.db, self._publish, self.metrics, settings.write_batch_max)
        hasher = password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib)
        # Every argon2 hash and verify of the node (registration, login) runs here.
        self.hash_pool = HashPool(settings.hash_workers, settings.hash_queue)
        self.accounts = Accounts(self.db, settings.token_ttl, hasher, self.hash_pool)
        self.delivery = Delivery(
            self.db,
            self.directory,
            self.writer,
            self.reader,
            self.presence,
            settings.max_answer_bytes,
        )
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
        rest = RestApi(
            self.db,
            self.accounts,
            self.delivery,
            self.metrics,
            disconnect_token=self._revoke_everywhere,
            login_burst=settings.login_burst,
            register_burst=settings.register_burst,
            addresses=ClientAddresses(settings.trusted_proxies),
        )
        self.app.add_routes(rest.routes())
        self.sio.attach(self.app)
        add_web_routes(self.app)
        self._maintenance: asyncio.Task[None] | None = None

    async def _publish(self, items: list[StreamItem]) -> None:
        """After a commit: this node's connections now, the other nodes' through Redis."""
        await self.hub.deliver(items)
        if self.cluster is not None:
            self.cluster.publish_stream(items)

    async def _deliver_from_cluster(self, items: list[StreamItem]) -> None:
        await self.hub.deliver(items)

    async def _disconnect_token(self, token_id: int) -> None:
        for conn in self.hub.connections_of_token(token_id):
            await self.pusher.disconnect(conn.sid)

    async def _revoke_everywhere(self, token_id: int) -> None:
        await self._disconnect_token(token_id)
        if self.cluster is not None:
            self.cluster.publish_revoke(token_id)

    def _users_changed(self) -> None:
        self.presence.changed()

    async def start(self) -> None:
        await self.writer.start()
        await self.accounts.prepare()
        if self.cluster is not None:
            self.cluster.start()
        self.presence.start()
        self._maintenance = asyncio.create_task(self._maintain(), name="messenger-maintenance")

    async def stop(self) -> None:
        """Answer every send already taken, then close sockets and engines."""
        await self.writer.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.hub.close()
        await self._close_sockets()
        await self.sio.shutdown()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.presence.stop()
        self.hash_pool.close()
        await self.db.dispose()

    async def _close_sockets(self) -> None:
        """Close every socket, giving each a grace period to flush its queue (the last
        acks); a polling client that never polls again cannot hold the stop up."""
        eio = self.sio.eio

        async def close_all() -> None:
            # python-engineio fails on an empty server; checked in the task itself,
            # as sessions may end before it runs.
            if eio.sockets:
                await eio.disconnect()

        try:
            await asyncio.wait_for(close_all(), CLOSE_GRACE_SECONDS)
        except TimeoutError:
            log.warning("%d sockets did not flush in time; dropping them", len(eio.sockets))
            for eio_sid in list(eio.sockets):
                await self.sio.drop_session(eio_sid)
            eio.sockets.clear()

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
        token_ids = sorted({conn.token_id for conn in conns})
        live: set[int] = set()
        for start in range(0, len(token_ids), 500):  # bounded IN lists
            live |= await self.accounts.live_tokens(token_ids[start : start + 500])
        for conn in conns:
            if conn.token_id not in live:
                log.info("dropping sid=%s: its token expired or was revoked", conn.sid)
                await self.pusher.disconnect(conn.sid)
