"""The Socket.IO server's hold on its Engine.IO sessions: the moments python-socketio
has no public hook for (a session opened or closed, a namespace connection decided or
left, a packet it cannot take), and the sessions themselves, reached, closed and
dropped. `TextOnlyServer` (transport/server.py) decides what to do at each moment
through the hooks named here, without a private name of the libraries."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from socket import SO_LINGER, SOL_SOCKET
from typing import Any

import socketio
from engineio.async_socket import AsyncSocket

from messenger.transport.overrides.engine_socket import ConformantSocket
from messenger.transport.overrides.engineio_server import GuardedEngineServer, Response
from messenger.transport.overrides.engineio_tracking import track_websockets
from messenger.transport.overrides.rooms import IndexedManager
from messenger.transport.overrides.socketio_server import ConformantServer

# Socket.IO packet types BINARY_EVENT and BINARY_ACK, as the first character.
BINARY_TYPES = ("5", "6")
CONNECT_TYPE = "0"
# The event name python-socketio registers a catch-all handler under.
CATCH_ALL = "*"
# SO_LINGER on, with a zero timeout: close() resets the connection.
LINGER_RESET = struct.pack("ii", 1, 0)


class SessionServer(ConformantServer):
    """A `ConformantServer` on a `GuardedEngineServer` that tells its subclass when
    sessions open and close, refuses binary packets, and reaches, closes and drops
    sessions for it.

    Hooks, each a no-op here: `session_opened(eio_sid, environ)` before the session
    reads or writes anything; `connect_handled(eio_sid)` after a CONNECT is decided;
    `namespace_left(eio_sid)` after the namespace connection ended; `session_closed
    (eio_sid)` after the session ended; `refuse_session(eio_sid, why)` for a packet
    that breaks the protocol (it drops the session here); `refuse_connect(eio_sid)` for
    a CONNECT python-socketio cannot decode.
    """

    eio: GuardedEngineServer

    def __init__(self, coalesce: bool = True, **kwargs: Any) -> None:
        if kwargs.get("client_manager") is None:  # one node: its rooms indexed (rooms)
            kwargs["client_manager"] = IndexedManager()
        super().__init__(**kwargs)
        self._transports = track_websockets(self.eio, coalesce=coalesce)

    def _engineio_server_class(self) -> Any:
        return GuardedEngineServer

    def guard_handshakes(
        self,
        admit: Callable[[dict[str, Any]], Response | None],
        done: Callable[[dict[str, Any]], None],
    ) -> None:
        """Have the Engine.IO server ask `admit` about each handshake (a refusal, or
        None to go on), and tell `done` when one is over."""
        self.eio.admit = admit
        self.eio.handshake_done = done

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

    # -- the moments, as hooks ----------------------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: Any) -> None:
        self.session_opened(eio_sid, environ)
        await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, data)
        self.connect_handled(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        self.session_closed(eio_sid)

    async def _handle_disconnect(self, eio_sid: str, namespace: str, reason: Any = None) -> None:
        # The client left the namespace, or its session is ending (then
        # _handle_eio_disconnect runs this first).
        await super()._handle_disconnect(eio_sid, namespace, reason)
        self.namespace_left(eio_sid)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, bytes) or (isinstance(data, str) and data[:1] in BINARY_TYPES):
            await self.refuse_session(eio_sid, "binary packets are not part of the protocol")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError:
            # A packet python-socketio cannot decode, such as a CONNECT whose auth is
            # a number (read as an ack id, then the rest as bad JSON).
            if isinstance(data, str) and data.startswith(CONNECT_TYPE):
                await self.refuse_connect(eio_sid)
            else:
                await self.refuse_session(eio_sid, "undecodable packet")

    async def _refuse_session(self, eio_sid: str, why: str) -> None:
        # ConformantServer's refusal of an event outside a connection, through the hook.
        await self.refuse_session(eio_sid, why)

    def session_opened(self, eio_sid: str, environ: Any) -> None:
        pass

    def connect_handled(self, eio_sid: str) -> None:
        pass

    def namespace_left(self, eio_sid: str) -> None:
        pass

    def session_closed(self, eio_sid: str) -> None:
        pass

    async def refuse_session(self, eio_sid: str, why: str) -> None:
        await self.drop_session(eio_sid)

    async def refuse_connect(self, eio_sid: str) -> None:
        pass

    # -- the sessions -------------------------------------------------------------------

    def has_session(self, eio_sid: str) -> bool:
        return eio_sid in self.eio.sockets

    def session_ids(self) -> list[str]:
        return list(self.eio.sockets)

    def plain_session(self, eio_sid: str) -> AsyncSocket | None:
        """The session as python-engineio (or our conformance class) made it, for the
        subclass to give it a class of its own; None once it has one, or is gone."""
        socket = self.eio.sockets.get(eio_sid)
        if type(socket) in (AsyncSocket, ConformantSocket):
            return socket
        return None

    def session_backlog(self, eio_sid: str) -> int:
        """Bytes queued for the session and not yet taken by the kernel, as a
        `GuardedSocket` counts them; another session: its queue's length."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return 0
        pending_bytes = getattr(socket, "pending_bytes", None)
        if pending_bytes is not None:
            return int(pending_bytes())
        queue = getattr(socket, "queue", None)
        return queue.qsize() if queue is not None else 0

    async def send_to_session(self, eio_sid: str, packet: str) -> None:
        """Queue an encoded Socket.IO packet straight on the session."""
        await self.eio.send(eio_sid, packet)

    async def send_connect_error(self, eio_sid: str, data: Any) -> None:
        await self._send_packet(
            eio_sid, self.packet_class(socketio.packet.CONNECT_ERROR, data=data)
        )

    async def end_session(self, eio_sid: str, grace: float) -> None:
        """Close an Engine.IO session after what is queued for it (a DISCONNECT, a
        CONNECT_ERROR), then its websocket: python-engineio sends CLOSE but leaves the
        websocket to the client. One that does not read within `grace` is dropped."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        try:
            await asyncio.wait_for(self.eio.disconnect(eio_sid), grace)
        except TimeoutError:
            await self.drop_session(eio_sid)
            return
        if socket.upgraded:
            socket.queue.put_nowait(None)  # the writer ends after CLOSE, closing the websocket

    async def end_all_sessions(self) -> None:
        """Close every session after what is queued for it."""
        # python-engineio fails on an empty server; checked here, as sessions may end
        # before this runs.
        if self.eio.sockets:
            await self.eio.disconnect()

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
            reset(transport)  # a writer blocked on a full send buffer wakes up
        # python-engineio forgets a closed session only when a request or its
        # service task (every ping_timeout) comes across it.
        self.eio.sockets.pop(eio_sid, None)

    def forget_sessions(self) -> None:
        """Forget every session, whatever state it is in."""
        self.eio.sockets.clear()


def reset(transport: asyncio.Transport) -> None:
    """Abort a connection with a reset: closing a socket whose client reads nothing
    would leave the kernel holding what it could not send (up to megabytes), and
    the connection open, behind a FIN that never goes out."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
        except OSError:
            pass  # already closed: abort() has nothing left to do either
    transport.abort()
