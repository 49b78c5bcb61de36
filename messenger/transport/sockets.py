"""The Socket.IO edge: handshake auth, then each client event -> `Delivery` -> an ack.

python-socketio is untyped and runs every event as its own task; this module keeps
both facts at the edge. Every event is answered through its acknowledgement, errors
included (G8), and on seed-protocol connections failures are also emitted as `error`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from engineio.async_socket import AsyncSocket

from messenger import protocol
from messenger.auth import Accounts
from messenger.config import Settings
from messenger.delivery import Delivery
from messenger.errors import ErrorCode, MessengerError, invalid
from messenger.events import utc_now
from messenger.live import Connection, LiveHub
from messenger.metrics import Metrics
from messenger.protocol import STATUS_DELIVERED, STATUS_READ
from messenger.ratelimit import RateLimiter
from messenger.store.db import classify_failure
from messenger.streams import StreamReader
from messenger.transport.engineio_socket import LeanSocket
from messenger.transport.engineio_tracking import track_websockets
from messenger.transport.packets import JsonPacket, event_packet
from messenger.writer import Writer

log = logging.getLogger(__name__)

NAMESPACE = "/"
# Seconds an Engine.IO session may go without a connection to the namespace (the
# reference server's `connectTimeout` default), and a closing session's queue has to
# drain before it is dropped.
CONNECT_TIMEOUT_SECONDS = 45.0
CLOSE_GRACE_SECONDS = 5.0
# A CONNECT being decided when the timeout falls is looked at again this much later.
PENDING_RECHECK_SECONDS = 1.0
# Socket.IO packet types BINARY_EVENT and BINARY_ACK, as the first character.
BINARY_TYPES = ("5", "6")
CONNECT_TYPE = "0"
# The event name python-socketio registers a catch-all handler under.
CATCH_ALL = "*"
Handler = Callable[[Connection, Any], Awaitable[dict[str, Any]]]


class TextOnlyServer(socketio.AsyncServer):  # type: ignore[misc]
    """An AsyncServer that refuses binary packets, closes sessions left without a
    connection, and can drop a session outright.

    The protocol carries JSON only. python-socketio would take a binary event header
    as a promise of attachments and swallow every later packet of that client while
    waiting for them; a connection that sends one is dropped instead. Its sessions
    run on `LeanSocket`s (engineio_socket), and an event named "*" is answered like
    any unknown event.

    An Engine.IO session is only a way to reach the namespace. One that is not
    connected `connect_timeout` seconds after it opened, or after its connection
    ended (the client left, or the server disconnected it: logout, a revoked token),
    is closed, as the reference Socket.IO server does (its `connectTimeout`):
    python-socketio would keep it for as long as the client answers pings, open to
    anyone without a token.
    """

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT_SECONDS, **kwargs: Any) -> None:
        super().__init__(serializer=JsonPacket, **kwargs)
        self._transports = track_websockets(self.eio)
        self._connect_timeout = connect_timeout
        self._unattached: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _get_event_handler(
        self, event: str, namespace: str, args: tuple[Any, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        handler, args = super()._get_event_handler(event, namespace, args)
        if event == CATCH_ALL:
            # An event named "*" finds the catch-all as if it were registered under
            # that name, and so without the event name the catch-all is called with
            # first: it would fail, and the client would never hear back (G8).
            args = (event, *args)
        return handler, args

    async def _handle_eio_connect(self, eio_sid: str, environ: Any) -> None:
        # Before the session reads or writes anything: the cheaper websocket loops
        # (see engineio_socket; python-engineio builds its sockets itself).
        socket = self.eio.sockets.get(eio_sid)
        if type(socket) is AsyncSocket:
            socket.__class__ = LeanSocket
        self._expect_connect(eio_sid)
        await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        timer = self._unattached.pop(eio_sid, None)  # set again as its namespace left
        if timer is not None:
            timer.cancel()

    async def _handle_disconnect(self, eio_sid: str, namespace: str, reason: Any = None) -> None:
        # The client left the namespace, or its session is ending (then the timer set
        # here is cancelled by _handle_eio_disconnect, which runs this first).
        await super()._handle_disconnect(eio_sid, namespace, reason)
        self._expect_connect(eio_sid)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or NAMESPACE)
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None:
            self._expect_connect(eio_sid)

    def _expect_connect(self, eio_sid: str, within: float | None = None) -> None:
        """Close the session unless it is connected `within` seconds from now (by
        default `connect_timeout`)."""
        if eio_sid not in self.eio.sockets:
            return
        earlier = self._unattached.pop(eio_sid, None)
        if earlier is not None:
            earlier.cancel()
        self._unattached[eio_sid] = asyncio.get_running_loop().call_later(
            self._connect_timeout if within is None else within,
            self._close_if_unattached,
            eio_sid,
        )

    def _close_if_unattached(self, eio_sid: str) -> None:
        self._unattached.pop(eio_sid, None)
        if eio_sid not in self.eio.sockets:
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        if sid is not None:
            if not self.manager.is_connected(sid, NAMESPACE):
                # A CONNECT (or DISCONNECT) in progress: look again once it is
                # decided. A refused CONNECT does not restart the count, so trying
                # bad tokens does not keep a session open.
                self._expect_connect(eio_sid, within=PENDING_RECHECK_SECONDS)
            return
        log.info("closing eio session %s: no connection to the namespace", eio_sid)
        task = asyncio.create_task(self._close_session(eio_sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_session(self, eio_sid: str) -> None:
        """Close an Engine.IO session after what is queued for it (a DISCONNECT, a
        CONNECT_ERROR), then its websocket: python-engineio sends CLOSE but leaves the
        websocket to the client. One that does not read within the grace is dropped."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        try:
            await asyncio.wait_for(self.eio.disconnect(eio_sid), CLOSE_GRACE_SECONDS)
        except TimeoutError:
            await self.drop_session(eio_sid)
            return
        if socket.upgraded:
            socket.queue.put_nowait(None)  # the writer ends after CLOSE, closing the websocket

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, bytes) or (isinstance(data, str) and data[:1] in BINARY_TYPES):
            log.info(
                "dropping eio session %s: binary packets are not part of the protocol", eio_sid
            )
            await self.drop_session(eio_sid)
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError:
            # A packet python-socketio cannot decode, such as a CONNECT whose auth is
            # a number (read as an ack id, then the rest as bad JSON).
            if isinstance(data, str) and data.startswith(CONNECT_TYPE):
                refusal = MessengerError(
                    ErrorCode.UNAUTHORIZED, "auth must be an object with a token"
                )
                await self._send_packet(
                    eio_sid,
                    self.packet_class(
                        socketio.packet.CONNECT_ERROR, data=connect_error_data(refusal)
                    ),
                )
            else:
                log.info("dropping eio session %s: undecodable packet", eio_sid)
                await self.drop_session(eio_sid)

    async def drop_session(self, eio_sid: str) -> None:
        """Close an Engine.IO session at once, unsent packets and all: for a client
        that stopped reading (its queue would never drain) or broke the protocol."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        await socket.close(wait=False, abort=True)
        while not socket.queue.empty():  # let the unsent packets go
            socket.queue.get_nowait()
            socket.queue.task_done()
        socket.queue.put_nowait(None)  # ends a pending long poll or the ws writer
        transport = self._transports.get(eio_sid)
        if transport is not None:
            transport.abort()  # a writer blocked on a full send buffer wakes up


class SocketPusher:
    """`live.Pusher` over an AsyncServer: emits straight to this node's sockets."""

    def __init__(self, sio: TextOnlyServer) -> None:
        self._sio = sio

    async def emit(self, event: str, data: dict[str, Any], sid: str) -> None:
        """Queue one event on one of this node's sockets (a socket that is gone is
        skipped). Straight to its Engine.IO socket: `AsyncServer.emit` makes a task
        per recipient and waits for them all, and with Redis configured it would
        first send the event round through the queue."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            await self._sio.eio.send(eio_sid, event_packet(event, data))

    def pending(self, sid: str) -> int:
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = self._sio.eio.sockets.get(eio_sid) if eio_sid else None
        queue = getattr(socket, "queue", None)
        return queue.qsize() if queue is not None else 0

    async def disconnect(self, sid: str, abort: bool = False) -> None:
        """End the connection; `abort` also drops the transport at once, unsent packets
        and all (for a client that stopped reading, whose queue would never drain)."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        await self._sio.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
        if abort and eio_sid:
            await self._sio.drop_session(eio_sid)


class SocketHandlers:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        settings: Settings,
        accounts: Accounts,
        delivery: Delivery,
        writer: Writer,
        reader: StreamReader,
        hub: LiveHub,
        metrics: Metrics,
    ) -> None:
        self._sio = sio
        self._settings = settings
        self._accounts = accounts
        self._delivery = delivery
        self._writer = writer
        self._reader = reader
        self._hub = hub
        self._metrics = metrics
        self._limiter = RateLimiter(settings.rate_limit)

    def register(self) -> None:
        sio = self._sio
        sio.on("connect", self.connect, namespace=NAMESPACE)
        sio.on("disconnect", self.disconnect, namespace=NAMESPACE)
        commands: dict[str, Handler] = {
            protocol.SEND: self._send,
            protocol.PRIVATE_MESSAGE: self._private_message,
            protocol.DELIVERED: self._delivered,
            protocol.READ: self._read,
            protocol.HISTORY: self._history,
            protocol.SYNC: self._sync,
            protocol.PRESENCE: self._presence,
            protocol.BLOCK: self._block,
            protocol.UNBLOCK: self._unblock,
        }
        for name, handler in commands.items():
            sio.on(name, self._wrap(handler), namespace=NAMESPACE)
        sio.on(CATCH_ALL, self._unknown, namespace=NAMESPACE)

    # -- connection lifecycle -----------------------------------------------------

    async def connect(self, sid: str, environ: Any, auth: Any = None) -> None:
        if self._sio.manager.is_connected(sid, NAMESPACE):
            # A client sent an *event* named "connect": not a handshake.
            return
        try:
            await self._handshake(sid, auth if isinstance(auth, dict) else {})
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception as exc:  # every handshake gets its answer
            error = classify_failure(exc)
            log.error("socket handshake failed: %s (%r)", error.code, exc)
            raise _refusal(error) from None

    async def _handshake(self, sid: str, auth: dict[str, Any]) -> None:
        try:
            who = await self._accounts.authenticate(auth.get("token"))
        except MessengerError as exc:
            self._metrics.auth_failures.inc()
            log.info("socket handshake refused: %s", exc.message)
            raise _refusal(exc) from None
        head = await self._reader.head(who.user.id)
        # Checked after the last await, so the check and `attach` below happen as one
        # step: simultaneous handshakes cannot slip past the cap together.
        cap = self._settings.max_connections_per_user
        if cap and self._hub.count_of_user(who.user.id) >= cap:
            log.info("socket handshake refused: user=%s has %d connections", who.user.username, cap)
            raise _refusal(
                MessengerError(ErrorCode.RATE_LIMITED, f"at most {cap} connections per user")
            )
        cursor = _optional_cursor(auth.get("cursor"), head)
        base = head if cursor is None else cursor
        conn = Connection(
            sid=sid,
            user=who.user,
            token_id=who.token_id,
            seed=auth.get("compat") == protocol.COMPAT_SEED,
            last_seq=base,
            replay_undelivered_to=base,
        )
        self._hub.attach(conn, head)
        self._writer.touch(who.user.id, utc_now())
        log.info("connect user=%s sid=%s cursor=%s", who.user.username, sid, cursor)

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        if self._sio.manager.is_connected(sid, NAMESPACE):
            return  # an *event* named "disconnect", not the socket going away
        conn = self._hub.detach(sid)
        if conn is not None:
            self._writer.touch(conn.user.id, utc_now())
            log.info("disconnect user=%s sid=%s reason=%s", conn.user.username, sid, reason)

    # -- events -------------------------------------------------------------------

    def _wrap(self, handler: Handler) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def on_event(sid: str, *args: Any) -> dict[str, Any]:
            conn = self._hub.get(sid)
            if conn is None:
                return MessengerError(ErrorCode.UNAUTHORIZED, "not connected").answer()
            try:
                if not self._limiter.allow(conn.user.id):
                    self._metrics.rate_limited.inc()
                    log.info("rate limited user=%s", conn.user.username)
                    raise MessengerError(ErrorCode.RATE_LIMITED, "too many events; slow down")
                if len(args) != 1:
                    raise invalid("an event carries exactly one payload object")
                return {"ok": True, **await handler(conn, args[0])}
            except MessengerError as exc:
                return await self._fail(conn, exc)
            except Exception as exc:
                error = classify_failure(exc)
                log.error("event failed for user=%s: %s (%r)", conn.user.username, error.code, exc)
                return await self._fail(conn, error)

        return on_event

    async def _unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        conn = self._hub.get(sid)
        error = invalid(f"unknown event {str(event)[:64]!r}")
        return await self._fail(conn, error) if conn is not None else error.answer()

    async def _fail(self, conn: Connection, error: MessengerError) -> dict[str, Any]:
        if conn.seed:
            await self._sio.emit(protocol.ERROR, error.as_dict(), to=conn.sid, ignore_queue=True)
        return error.answer()

    async def _send(self, conn: Connection, payload: Any) -> dict[str, Any]:
        return await self._store(conn, protocol.parse_send(payload, self._settings.max_body))

    async def _private_message(self, conn: Connection, payload: Any) -> dict[str, Any]:
        claimed, command = protocol.parse_private_message(
            payload, self._settings.max_body, self._server_client_id()
        )
        if claimed != conn.user.username:
            raise MessengerError(ErrorCode.FORBIDDEN, "from must be the connected user")
        return await self._store(conn, command)

    async def _store(self, conn: Connection, command: protocol.SendCommand) -> dict[str, Any]:
        """Queue in arrival order (the admission lock), then wait for the commit."""
        async with conn.admission:
            stored = await self._delivery.submit_send(conn.user, command)
        return {"message": (await stored).message}

    async def _delivered(self, conn: Connection, payload: Any) -> dict[str, Any]:
        return await self._mark(conn, protocol.parse_ids(payload), STATUS_DELIVERED)

    async def _read(self, conn: Connection, payload: Any) -> dict[str, Any]:
        return await self._mark(conn, protocol.parse_ids(payload), STATUS_READ)

    async def _mark(self, conn: Connection, ids: list[int], status: int) -> dict[str, Any]:
        async with conn.admission:
            updated = self._delivery.submit_mark(conn.user, ids, status)
        return {"updated": await updated}

    async def _history(self, conn: Connection, payload: Any) -> dict[str, Any]:
        return await self._delivery.history(conn.user, protocol.parse_history(payload))

    async def _sync(self, conn: Connection, payload: Any) -> dict[str, Any]:
        return await self._delivery.sync(conn.user, protocol.parse_sync(payload))

    async def _presence(self, conn: Connection, payload: Any) -> dict[str, Any]:
        return await self._delivery.presence(conn.user, protocol.parse_presence(payload))

    async def _block(self, conn: Connection, payload: Any) -> dict[str, Any]:
        await self._delivery.block(conn.user, protocol.parse_block(payload))
        return {}

    async def _unblock(self, conn: Connection, payload: Any) -> dict[str, Any]:
        await self._delivery.unblock(conn.user, protocol.parse_block(payload))
        return {}

    @staticmethod
    def _server_client_id() -> str:
        """A fresh client_id for a `privateMessage` that brought none (not idempotent)."""
        return "srv-" + secrets.token_hex(12)


def _optional_cursor(value: Any, head: int) -> int | None:
    """A connect-time cursor; one of the wrong type or from the future counts as absent."""
    if value is None:
        return None
    try:
        cursor = protocol.parse_cursor(value)
    except MessengerError:
        return None
    return cursor if cursor <= head else None


def _refusal(error: MessengerError) -> socketio.exceptions.ConnectionRefusedError:
    """A handshake refusal whose `connect_error` carries {"code", "message"}."""
    refusal = socketio.exceptions.ConnectionRefusedError(error.message)
    refusal.error_args = connect_error_data(error)
    return refusal


def connect_error_data(error: MessengerError) -> dict[str, Any]:
    """The CONNECT_ERROR data: Python clients see the whole object; JavaScript clients
    see `message`, and `data` holds the object again."""
    return {**error.as_dict(), "data": error.as_dict()}
