"""The wiring root: the only place that builds objects. `Node` is one server process
(a node): its database engines, writer, live hub, Socket.IO server and HTTP routes,
built, started and stopped as one unit. It has no behaviour of its own: what happens
after a commit is `delivery.notifier`, the periodic repairs `delivery.maintenance`."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiohttp import web

from messenger.accounts_service import AccountService
from messenger.attachments.blobs import open_blob_store
from messenger.attachments.collector import Collector
from messenger.attachments.service import Attachments
from messenger.auth import Accounts, password_hasher
from messenger.cluster.bus import Cluster, ClusterManager
from messenger.cluster.presence import LocalPresence, Presence, RedisPresence
from messenger.config import Settings
from messenger.delivery.changes import Windows
from messenger.delivery.live import LiveHub
from messenger.delivery.maintenance import Maintenance
from messenger.delivery.notifier import Notifier
from messenger.delivery.search import Search
from messenger.delivery.search_index import SearchIndexer
from messenger.delivery.service import ANSWER_ENVELOPE_BYTES, Delivery
from messenger.delivery.streams import StreamReader
from messenger.delivery.typing import Typing
from messenger.delivery.writer import Writer
from messenger.directory import Directory
from messenger.hashing import HashPool
from messenger.metrics import Metrics
from messenger.push.subscriptions import PushSubscriptions
from messenger.push.worker import PushSettings, PushWorker
from messenger.store.db import open_database
from messenger.transport.account_routes import AccountRoutes
from messenger.transport.attachment_routes import AttachmentRoutes
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
        self.presence: Presence
        manager: ClusterManager | None = None
        if settings.redis_url:
            manager = ClusterManager(settings.redis_url, channel=settings.redis_prefix)
        self.cluster = Cluster(manager) if manager is not None else None
        self.sio = TextOnlyServer(
            connect_timeout=settings.connect_timeout,
            connection_buffer=settings.connection_buffer,
            max_pending_sessions_per_address=settings.max_pending_sessions_per_address,
            max_pending_sessions=settings.max_pending_sessions,
            addresses=ClientAddresses(settings.trusted_proxies),
            lean_websocket=settings.lean_websocket,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
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
            # Built just below, from the hub's own list of users.
            lambda: self.presence.changed(),
            connection_buffer=settings.connection_buffer,
        )
        if settings.redis_url:
            self.presence = RedisPresence(
                settings.redis_url, self.hub.local_user_ids, prefix=settings.redis_prefix
            )
        else:
            self.presence = LocalPresence(self.hub.local_user_ids)
        self.notifier = Notifier(self.hub, self.pusher, self.cluster)
        if manager is not None:
            manager.on_stream = self.notifier.from_other_node
            manager.on_revoke = self.notifier.drop_token_here
        self.writer = Writer(
            self.db,
            self.notifier,
            self.metrics,
            settings.write_batch_max,
            Windows(edit=settings.edit_window, delete=settings.delete_window),
        )
        hasher = password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib)
        # Every argon2 hash and verify of the node (registration, login) runs here.
        self.hash_pool = HashPool(settings.hash_workers, settings.hash_queue)
        self.accounts = Accounts(self.db, settings.token_ttl, hasher, self.hash_pool)
        self.typing = Typing(self.hub, self.pusher, self.db, self.cluster)
        if manager is not None:
            manager.on_typing = self.typing.from_other_node
        self.delivery = Delivery(
            self.db,
            self.directory,
            self.writer,
            self.reader,
            self.hub,
            self.presence,
            self.typing,
            Search(
                self.db,
                self.directory,
                settings.max_answer_bytes - ANSWER_ENVELOPE_BYTES,
                self.metrics,
            ),
            settings.max_answer_bytes,
            settings.max_connections_per_user,
        )
        SocketHandlers(
            self.sio,
            settings,
            self.accounts,
            self.delivery,
            self.metrics,
        ).register()
        self.app = web.Application(
            middlewares=[error_middleware, cors_middleware(settings.cors_origins)],
            client_max_size=MAX_REQUEST_BYTES,
        )
        self.push = PushSubscriptions(self.db, settings.push_allow_http)
        self.push_worker: PushWorker | None = None
        rest = RestApi(
            self.db,
            self.accounts,
            self.delivery,
            self.push,
            self.metrics,
            disconnect_token=self.notifier.revoke,
            login_burst=settings.login_burst,
            register_burst=settings.register_burst,
            addresses=ClientAddresses(settings.trusted_proxies),
        )
        self.app.add_routes(rest.routes())
        self.blob_store = open_blob_store(settings, self.db)
        self.attachments = Attachments(
            self.db, self.blob_store, settings.max_attachment, settings.attachment_quota
        )
        self.app.add_routes(AttachmentRoutes(self.attachments, rest.authenticated).routes())
        # Password changes, sessions, removal and export; what they end is dropped on
        # every node, as a logout is.
        self.account_service = AccountService(
            self.db, self.accounts, self.notifier.revoke, settings.login_burst
        )
        self.app.add_routes(AccountRoutes(self.account_service, rest.authenticated).routes())
        self.collector = Collector(
            self.db,
            self.blob_store,
            self.attachments,
            timedelta(seconds=settings.upload_ttl),
            self.metrics,
        )
        self.sio.attach(self.app)
        add_web_routes(self.app)
        self.maintenance = Maintenance(
            self.hub, self.pusher, self.accounts, settings.resync_interval, self.writer
        )
        self.search_indexer = SearchIndexer(self.db, settings.resync_interval, self.metrics)

    async def start(self) -> None:
        await self.writer.start()
        await self.accounts.prepare()
        keys = await self.push.prepare()
        self.push_worker = PushWorker(
            self.db,
            self.presence,
            keys,
            PushSettings(
                delay=timedelta(seconds=self.settings.push_delay),
                allowed_hosts=self.settings.push_allow_http,
                contact=self.settings.push_contact,
            ),
            self.metrics,
        )
        self.push_worker.start()
        self.collector.start()
        if self.cluster is not None:
            self.cluster.start()
        self.presence.start()
        self.maintenance.start()
        self.search_indexer.start()

    async def stop(self) -> None:
        """Answer every send already taken, then close sockets and engines."""
        await self.writer.stop()
        await self.maintenance.stop()
        # After the writer's last batch: its changes leave the index before the end.
        await self.search_indexer.stop()
        if self.push_worker is not None:
            await self.push_worker.stop()
        await self.collector.stop()
        await self.hub.close()
        self.typing.close()
        await self._close_sockets()
        await self.sio.shutdown()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.presence.stop()
        self.hash_pool.close()
        await self.accounts.close()
        await self.db.dispose()

    async def _close_sockets(self) -> None:
        """Close every socket, giving each a grace period to flush its queue (the last
        acks); a polling client that never polls again cannot hold the stop up."""
        try:
            await asyncio.wait_for(self.sio.end_all_sessions(), CLOSE_GRACE_SECONDS)
        except TimeoutError:
            left = self.sio.session_ids()
            log.warning("%d sockets did not flush in time; dropping them", len(left))
            for eio_sid in left:
                await self.sio.drop_session(eio_sid)
            self.sio.forget_sessions()
