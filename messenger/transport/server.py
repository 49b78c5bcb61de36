"""The Socket.IO server class: JSON-only packets, sessions closed when left without a
connection and capped while they have none, a byte budget per session, and a way to
drop a session outright."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from messenger.errors import ErrorCode, MessengerError
from messenger.transport.client_address import ClientAddresses
from messenger.transport.client_log import ClientLog
from messenger.transport.overrides.engineio_server import Response, refusal
from messenger.transport.overrides.engineio_socket import LeanSocket
from messenger.transport.overrides.guarded_socket import GuardedSocket
from messenger.transport.overrides.packets import JsonPacket
from messenger.transport.overrides.session_server import SessionServer
from messenger.transport.pending_sessions import PER_ADDRESS, PendingSessions

log = logging.getLogger(__name__)

NAMESPACE = "/"
# Seconds an Engine.IO session may go without a connection to the namespace (the
# reference server's `connectTimeout` default), and a closing session's queue has to
# drain before it is dropped.
CONNECT_TIMEOUT_SECONDS = 45.0
CLOSE_GRACE_SECONDS = 5.0
# A CONNECT being decided when the timeout falls is looked at again this much later.
PENDING_RECHECK_SECONDS = 1.0
# What the handshake's admission leaves in its environ for the session's connect.
HANDSHAKE_KEY = "messenger.handshake"
ADDRESS_KEY = "messenger.client_address"


class TextOnlyServer(SessionServer):
    """An AsyncServer that refuses binary packets, closes sessions left without a
    connection and caps how many there are, bounds what each session may have
    queued, and can drop a session outright.

    The protocol carries JSON only. python-socketio would take a binary event header
    as a promise of attachments and swallow every later packet of that client while
    waiting for them; a connection that sends one is dropped instead. Its sessions
    run on `LeanSocket`s (engineio_socket), or with `lean_websocket` off on
    `GuardedSocket`s, python-engineio's own loops with the same bounds; an event
    named "*" is answered like any unknown event.

    An Engine.IO session is only a way to reach the namespace. One that is not
    connected `connect_timeout` seconds after it opened, or after its connection
    ended (the client left, or the server disconnected it: logout, a revoked token),
    is closed, as the reference Socket.IO server does (its `connectTimeout`):
    python-socketio would keep it for as long as the client answers pings, open to
    anyone without a token. While they last, such sessions are capped per client
    address (`max_pending_sessions_per_address`, the address behind trusted proxies)
    and on the node (`max_pending_sessions`): a handshake past a cap is refused
    (429 and 503), before python-engineio makes a session of it.

    Each session may hold `connection_buffer` bytes that its client has not read
    (queued, or in the transport's buffer); a send past that drops the session.
    """

    def __init__(
        self,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        connection_buffer: int = 0,
        max_pending_sessions_per_address: int = 0,
        max_pending_sessions: int = 0,
        addresses: ClientAddresses | None = None,
        lean_websocket: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(coalesce=lean_websocket, serializer=JsonPacket, **kwargs)
        self._socket_class: type[GuardedSocket] = LeanSocket if lean_websocket else GuardedSocket
        self._connect_timeout = connect_timeout
        self._connection_buffer = connection_buffer
        self._addresses = addresses or ClientAddresses()
        self._pending = PendingSessions(max_pending_sessions_per_address, max_pending_sessions)
        self._handshakes = itertools.count()
        self._client_log = ClientLog(log)
        self._unattached: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.guard_handshakes(self._admit, self._handshake_done)

    def pending_sessions(self, address: str | None = None) -> int:
        """Sessions without a connection to the namespace, from `address` or all."""
        return self._pending.count(address)

    # -- the handshake ------------------------------------------------------------

    def _admit(self, environ: dict[str, Any]) -> Response | None:
        """Refuse an Engine.IO handshake past a cap on sessions without a connection;
        otherwise count it, under a key of its own until it has a sid."""
        address = self._addresses.of_environ(environ)
        cap = self._pending.refusal(address)
        if cap is not None:
            self._client_log.info(
                address,
                "refusing an engine.io handshake from %s: %d sessions without a connection"
                " from it, %d on the node",
                address,
                self._pending.count(address),
                self._pending.count(),
            )
            if cap == PER_ADDRESS:
                return refusal(
                    429,
                    "Too many sessions without a connection from this address",
                    self._connect_timeout,
                )
            return refusal(503, "Too many sessions without a connection", self._connect_timeout)
        key = f"handshake-{next(self._handshakes)}"
        environ[HANDSHAKE_KEY] = key
        environ[ADDRESS_KEY] = address
        self._pending.opened(key, address)
        return None

    def _handshake_done(self, environ: dict[str, Any]) -> None:
        key = environ.get(HANDSHAKE_KEY)
        if key is not None:
            self._pending.closed(key)  # nothing when it became a session

    def session_opened(self, eio_sid: str, environ: Any) -> None:
        # Before the session reads or writes anything: the byte budget, and the
        # cheaper websocket loops unless `lean_websocket` is off (see guarded_socket
        # and engineio_socket; python-engineio builds its sockets itself).
        socket = self.plain_session(eio_sid)
        address = environ.get(ADDRESS_KEY) or self._addresses.of_environ(environ)
        if socket is not None:
            self._socket_class.adopt(
                socket,
                budget=self._connection_buffer,
                on_overflow=self._over_budget,
                address=address,
                client_log=self._client_log,
            )
        key = environ.get(HANDSHAKE_KEY)
        if key is not None:
            self._pending.rename(key, eio_sid)
        else:
            self._pending.opened(eio_sid, address)
        self._expect_connect(eio_sid)

    # -- the namespace connection ---------------------------------------------------

    def connect_handled(self, eio_sid: str) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        if sid is not None and self.manager.is_connected(sid, NAMESPACE):
            self._pending.attached(eio_sid)

    def session_closed(self, eio_sid: str) -> None:
        timer = self._unattached.pop(eio_sid, None)  # set again as its namespace left
        if timer is not None:
            timer.cancel()
        self._pending.closed(eio_sid)

    def namespace_left(self, eio_sid: str) -> None:
        # The client left the namespace, or its session is ending (then the timer set
        # here is cancelled by session_closed, which comes after).
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
        default `connect_timeout`); until then it counts as without a connection."""
        if not self.has_session(eio_sid):
            return
        self._pending.detached(eio_sid)
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
        if not self.has_session(eio_sid):
            self._pending.closed(eio_sid)  # gone without its disconnect event
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        if sid is not None:
            if not self.manager.is_connected(sid, NAMESPACE):
                # A CONNECT (or DISCONNECT) in progress: look again once it is
                # decided. A refused CONNECT does not restart the count, so trying
                # bad tokens does not keep a session open.
                self._expect_connect(eio_sid, within=PENDING_RECHECK_SECONDS)
            return
        self._client_log.info(
            self._address_of(eio_sid),
            "closing eio session %s: no connection to the namespace",
            eio_sid,
        )
        self._in_background(self.end_session(eio_sid, CLOSE_GRACE_SECONDS))

    # -- packets ----------------------------------------------------------------------

    async def refuse_connect(self, eio_sid: str) -> None:
        refusal = MessengerError(ErrorCode.UNAUTHORIZED, "auth must be an object with a token")
        await self.send_connect_error(eio_sid, connect_error_data(refusal))

    async def refuse_session(self, eio_sid: str, why: str) -> None:
        self._client_log.info(
            self._address_of(eio_sid), "dropping eio session %s: %s", eio_sid, why
        )
        await self.drop_session(eio_sid)

    # -- dropping ---------------------------------------------------------------------

    def _over_budget(self, socket: GuardedSocket, charged: int) -> None:
        """A send would take `socket` past its byte budget: drop it now (its sends are
        refused from here on). Nothing acknowledged is lost: what it missed is in
        SQL and replays on reconnect."""
        self._client_log.info(
            socket.address,
            "dropping eio session %s: it stopped reading (%d bytes pending, %d with the"
            " next packet, over the connection buffer of %d)",
            socket.sid,
            socket.pending_bytes(),
            charged,
            self._connection_buffer,
        )
        self._in_background(self.drop_session(socket.sid))

    def _address_of(self, eio_sid: str) -> str:
        return self._pending.address(eio_sid) or "unknown"

    def _in_background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def connect_error_data(error: MessengerError) -> dict[str, Any]:
    """The CONNECT_ERROR data: Python clients see the whole object; JavaScript clients
    see `message`, and `data` holds the object again."""
    return {**error.as_dict(), "data": error.as_dict()}
