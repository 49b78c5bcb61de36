"""The Socket.IO edge: handshake auth, then each client event -> `Delivery` -> an ack.

python-socketio is untyped and runs every event as its own task; this module keeps
both facts at the edge. Every event is answered through its acknowledgement, errors
included (G8), and on seed-protocol connections failures are also emitted as `error`.

Every event, known or not, passes the rate limiter first, and a connection may have
only `max_pending_requests` of them in handling at once; handshakes are limited per
Engine.IO session. A refusal costs no database work. Lines about a client's
misbehaviour are logged once per connection, and a few per address at most.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio

from messenger import protocol
from messenger.auth import Accounts
from messenger.config import Settings
from messenger.delivery.service import Delivery, LiveConnection, TooManyConnections
from messenger.errors import ErrorCode, MessengerError, invalid
from messenger.metrics import Metrics
from messenger.protocol import STATUS_DELIVERED, STATUS_READ, ChangeCommand
from messenger.ratelimit import RateLimiter
from messenger.store.db import classify_failure
from messenger.transport.client_address import UNKNOWN, ClientAddresses
from messenger.transport.client_log import ClientLog
from messenger.transport.overrides.session_server import CATCH_ALL
from messenger.transport.server import NAMESPACE, connect_error_data
from messenger.wire import HistoryAnswer, PresenceAnswer, SearchAnswer, SyncAnswer

log = logging.getLogger(__name__)

Handler = Callable[[LiveConnection, Any], Awaitable[Mapping[str, Any]]]


class SocketHandlers:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        settings: Settings,
        accounts: Accounts,
        delivery: Delivery,
        metrics: Metrics,
    ) -> None:
        self._sio = sio
        self._settings = settings
        self._accounts = accounts
        self._delivery = delivery
        self._metrics = metrics
        # Events per user; handshakes per Engine.IO session (a session may retry a
        # refused CONNECT); log lines about misbehaviour per address.
        self._limiter = RateLimiter(settings.rate_limit)
        self._handshakes = RateLimiter(settings.rate_limit)
        self._client_log = ClientLog(log)
        self._addresses = ClientAddresses(settings.trusted_proxies)

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
            protocol.EDIT: self._edit,
            protocol.DELETE: self._delete,
            protocol.REACT: self._react,
            protocol.UNREACT: self._unreact,
            protocol.TYPING: self._typing,
            protocol.SEARCH: self._search,
        }
        for name, handler in commands.items():
            sio.on(name, self._wrap(handler), namespace=NAMESPACE)
        sio.on(CATCH_ALL, self._unknown, namespace=NAMESPACE)

    # -- connection lifecycle -----------------------------------------------------

    async def connect(self, sid: str, environ: Any = None, auth: Any = None, *_: Any) -> None:
        if self._sio.manager.is_connected(sid, NAMESPACE):
            # A client sent an *event* named "connect" (its arguments land in these
            # parameters): not a handshake, but an event all the same.
            self._event_named_like_a_handshake(sid)
            return
        address = self._addresses.of_environ(environ) if isinstance(environ, dict) else UNKNOWN
        session = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE) or sid
        if not self._handshakes.allow(session):
            self._metrics.rate_limited.inc()
            self._note(
                address, "socket handshake refused: too many on one session from %s", address
            )
            raise _refusal(MessengerError(ErrorCode.RATE_LIMITED, "too many handshakes; slow down"))
        try:
            await self._handshake(sid, address, auth if isinstance(auth, dict) else {})
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception as exc:  # every handshake gets its answer
            error = classify_failure(exc)
            log.error("socket handshake failed: %s (%r)", error.code, exc)
            raise _refusal(error) from None

    async def _handshake(self, sid: str, address: str, auth: dict[str, Any]) -> None:
        try:
            who = await self._accounts.authenticate(auth.get("token"))
        except MessengerError as exc:
            self._metrics.auth_failures.inc()
            self._note(address, "socket handshake refused from %s: %s", address, exc.message)
            raise _refusal(exc) from None
        try:
            await self._delivery.connect(
                sid,
                who.user,
                who.token_id,
                cursor=auth.get("cursor"),
                seed=auth.get("compat") == protocol.COMPAT_SEED,
                address=address,
            )
        except TooManyConnections as exc:
            self._note(
                address,
                "socket handshake refused: user=%s has %d connections",
                who.user.username,
                exc.cap,
            )
            raise _refusal(exc) from None

    async def disconnect(self, sid: str, reason: Any = None, *_: Any) -> None:
        if self._sio.manager.is_connected(sid, NAMESPACE):
            # An *event* named "disconnect", not the socket going away.
            self._event_named_like_a_handshake(sid)
            return
        conn = self._delivery.disconnect(sid)
        if conn is not None:
            log.info("disconnect user=%s sid=%s reason=%s", conn.user.username, sid, reason)

    # -- events -------------------------------------------------------------------

    def _wrap(self, handler: Handler) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def on_event(sid: str, *args: Any) -> dict[str, Any]:
            conn = self._delivery.connection(sid)
            if conn is None:
                return self._unattached(sid).answer()
            refusal = self._admit(conn)
            if refusal is not None:
                return await self._fail(conn, refusal)
            conn.in_flight += 1
            try:
                if len(args) != 1:
                    raise invalid("an event carries exactly one payload object")
                return {"ok": True, **await handler(conn, args[0])}
            except MessengerError as exc:
                return await self._fail(conn, exc)
            except Exception as exc:
                error = classify_failure(exc)
                log.error("event failed for user=%s: %s (%r)", conn.user.username, error.code, exc)
                return await self._fail(conn, error)
            finally:
                conn.in_flight -= 1

        return on_event

    async def _unknown(self, event: Any, sid: str, *args: Any) -> dict[str, Any]:
        conn = self._delivery.connection(sid)
        if conn is None:
            return self._unattached(sid).answer()
        refusal = self._admit(conn)
        return await self._fail(conn, refusal or invalid(f"unknown event {str(event)[:64]!r}"))

    def _admit(self, conn: LiveConnection) -> MessengerError | None:
        """Why an event of `conn` is refused before any work, if it is: the user's
        rate, or too many of the connection's events still in handling."""
        if not self._limiter.allow(conn.user.id):
            self._metrics.rate_limited.inc()
            self._note_once(conn, "rate", "rate limited user=%s", conn.user.username)
            return MessengerError(ErrorCode.RATE_LIMITED, "too many events; slow down")
        cap = self._settings.max_pending_requests
        if conn.in_flight >= cap:
            self._metrics.rate_limited.inc()
            self._note_once(
                conn, "pending", "user=%s over %d requests at once", conn.user.username, cap
            )
            return MessengerError(
                ErrorCode.RATE_LIMITED, f"at most {cap} requests at once: wait for the answers"
            )
        return None

    def _unattached(self, sid: str) -> MessengerError:
        """The answer to an event of a session the hub does not know (a connection
        being torn down): counted per session like any event, never worked on."""
        if not self._limiter.allow(("sid", sid)):
            return MessengerError(ErrorCode.RATE_LIMITED, "too many events; slow down")
        return MessengerError(ErrorCode.UNAUTHORIZED, "not connected")

    def _event_named_like_a_handshake(self, sid: str) -> None:
        conn = self._delivery.connection(sid)
        if conn is not None:
            self._admit(conn)  # counted like any event; ignored whatever the verdict

    def _note(self, address: str, message: str, *args: Any) -> None:
        """Log a line about a client's misbehaviour, unless its address had its share."""
        self._client_log.info(address, message, *args)

    def _note_once(self, conn: LiveConnection, kind: str, message: str, *args: Any) -> None:
        if kind not in conn.logged:
            conn.logged.add(kind)
            self._note(conn.address, message, *args)

    async def _fail(self, conn: LiveConnection, error: MessengerError) -> dict[str, Any]:
        if conn.seed:
            await self._sio.emit(protocol.ERROR, error.as_dict(), to=conn.sid, ignore_queue=True)
        return error.answer()

    async def _send(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._store_and_wait(
            conn, protocol.parse_send(payload, self._settings.max_body)
        )

    async def _private_message(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        claimed, command = protocol.parse_private_message(
            payload, self._settings.max_body, self._server_client_id()
        )
        if claimed != conn.user.username:
            raise MessengerError(ErrorCode.FORBIDDEN, "from must be the connected user")
        return await self._store_and_wait(conn, command)

    async def _store_and_wait(
        self, conn: LiveConnection, command: protocol.SendCommand
    ) -> dict[str, Any]:
        """Queue in arrival order (the admission lock), then wait for the commit."""
        async with conn.admission:
            stored = await self._delivery.submit_send(conn.user, command)
        return {"message": (await stored).message}

    async def _edit(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._change(conn, protocol.parse_edit(payload, self._settings.max_body))

    async def _delete(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._change(conn, protocol.parse_delete(payload))

    async def _react(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._change(conn, protocol.parse_reaction(payload, add=True))

    async def _unreact(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._change(conn, protocol.parse_reaction(payload, add=False))

    async def _change(self, conn: LiveConnection, command: ChangeCommand) -> dict[str, Any]:
        """Queue in arrival order, like a send, then wait for the commit."""
        async with conn.admission:
            changed = self._delivery.submit_change(conn.user, command)
        return await changed

    async def _typing(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        await self._delivery.typing(conn.sid, conn.user, protocol.parse_typing(payload))
        return {}

    async def _delivered(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._mark(conn, protocol.parse_ids(payload), STATUS_DELIVERED)

    async def _read(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        return await self._mark(conn, protocol.parse_ids(payload), STATUS_READ)

    async def _mark(self, conn: LiveConnection, ids: list[int], status: int) -> dict[str, Any]:
        async with conn.admission:
            updated = self._delivery.submit_mark(conn.user, ids, status)
        return {"updated": await updated}

    async def _history(self, conn: LiveConnection, payload: Any) -> HistoryAnswer:
        return await self._delivery.history(conn.user, protocol.parse_history(payload))

    async def _search(self, conn: LiveConnection, payload: Any) -> SearchAnswer:
        return await self._delivery.search(conn.user, protocol.parse_search(payload))

    async def _sync(self, conn: LiveConnection, payload: Any) -> SyncAnswer:
        return await self._delivery.sync(conn.user, protocol.parse_sync(payload))

    async def _presence(self, conn: LiveConnection, payload: Any) -> PresenceAnswer:
        return await self._delivery.presence(conn.user, protocol.parse_presence(payload))

    async def _block(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        await self._delivery.block(conn.user, protocol.parse_block(payload))
        return {}

    async def _unblock(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        await self._delivery.unblock(conn.user, protocol.parse_block(payload))
        return {}

    @staticmethod
    def _server_client_id() -> str:
        """A fresh client_id for a `privateMessage` that brought none (not idempotent)."""
        return "srv-" + secrets.token_hex(12)


def _refusal(error: MessengerError) -> socketio.exceptions.ConnectionRefusedError:
    """A handshake refusal whose `connect_error` carries {"code", "message"}."""
    refusal = socketio.exceptions.ConnectionRefusedError(error.message)
    refusal.error_args = connect_error_data(error)
    return refusal
