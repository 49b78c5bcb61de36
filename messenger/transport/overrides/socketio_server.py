"""python-socketio's `AsyncServer`, corrected where it departs from Socket.IO v5."""

from __future__ import annotations

from typing import Any

import socketio

from messenger.transport.overrides.engine_server import ConformantEngineServer

# The CONNECT_ERROR data for a namespace the server does not serve, as the
# reference server sends it (its clients show `message`).
INVALID_NAMESPACE = {"message": "Invalid namespace"}


class ConformantServer(socketio.AsyncServer):  # type: ignore[misc]
    """An `AsyncServer` whose Engine.IO server is `ConformantEngineServer`."""

    def _engineio_server_class(self) -> Any:
        return ConformantEngineServer

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        if not self._serves(namespace):
            # python-socketio refuses it with the string "Unable to connect".
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    socketio.packet.CONNECT_ERROR, data=INVALID_NAMESPACE, namespace=namespace
                ),
            )
            return
        await super()._handle_connect(eio_sid, namespace, data)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            # python-socketio drops an event of a session that is not connected to
            # its namespace without a word, and keeps the session: a client could
            # send events nobody answers or limits. The reference server closes
            # such a session ("invalid state").
            await self._refuse_session(eio_sid, f"an event outside a connection to {namespace}")
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _refuse_session(self, eio_sid: str, why: str) -> None:
        """End a session that broke the protocol (`why` is for the log)."""
        await self.eio.disconnect(eio_sid)

    def _serves(self, namespace: str) -> bool:
        """python-socketio's test of whether a namespace may be connected to."""
        return bool(
            namespace in self.handlers
            or namespace in self.namespace_handlers
            or self.namespaces == "*"
            or namespace in self.namespaces
        )
