"""`live.Pusher` over the Socket.IO server: per-connection emits on this node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger.transport.overrides.packets import event_packet
from messenger.transport.server import NAMESPACE, TextOnlyServer


class SocketPusher:
    """`live.Pusher` over an AsyncServer: emits straight to this node's sockets."""

    def __init__(self, sio: TextOnlyServer) -> None:
        self._sio = sio

    async def emit(self, event: str, data: Mapping[str, Any], sid: str) -> None:
        """Queue one event on one of this node's sockets (a socket that is gone is
        skipped). Straight to its Engine.IO socket: `AsyncServer.emit` makes a task
        per recipient and waits for them all, and with Redis configured it would
        first send the event round through the queue."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            await self._sio.send_to_session(eio_sid, event_packet(event, data))

    def pending(self, sid: str) -> int:
        """Bytes queued for the connection and not yet taken by the kernel: pushes,
        answers and pings alike, as its Engine.IO socket counts them."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        return self._sio.session_backlog(eio_sid) if eio_sid else 0

    async def disconnect(self, sid: str, abort: bool = False) -> None:
        """End the connection; `abort` also drops the transport at once, unsent packets
        and all (for a client that stopped reading, whose queue would never drain)."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        await self._sio.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
        if abort and eio_sid:
            await self._sio.drop_session(eio_sid)
