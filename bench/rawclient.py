"""A bare Socket.IO client over one websocket, for the single-client probes.

python-socketio's client decodes every packet into objects and runs each event
handler as a task: draining a backlog, it costs more CPU per event than the server
does to send it, so the probe would measure itself. This client speaks the few frames
a probe needs (Engine.IO v4 over websocket, the default namespace), and decodes only
what it asks for: an event is recognised by the start of its frame.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

# Engine.IO packet types (the first character of a frame).
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE = "0", "1", "2", "3", "4"
# Socket.IO packet types, after the Engine.IO MESSAGE character.
SIO_CONNECT, SIO_EVENT, SIO_ACK, SIO_CONNECT_ERROR = "0", "2", "3", "4"


class ProtocolError(Exception):
    pass


class RawClient:
    def __init__(self, url: str) -> None:
        base = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        self._url = f"{base}/socket.io/?EIO=4&transport=websocket"
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_ack = 0

    async def connect(self, auth: dict[str, Any]) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self._url, max_msg_size=0)
        opened = await self._frame()
        if not opened.startswith(EIO_OPEN):
            raise ProtocolError(f"expected the Engine.IO open packet, got {opened[:80]!r}")
        await self._ws.send_str(EIO_MESSAGE + SIO_CONNECT + json.dumps(auth))
        answer = await self._frame()
        if not answer.startswith(EIO_MESSAGE + SIO_CONNECT):
            raise ProtocolError(f"connect refused: {answer[:200]!r}")

    async def frames(self) -> Any:
        """Every Socket.IO frame the server sends, as text (`2[...]` for an event),
        answering the server's pings on the way."""
        while True:
            yield (await self._frame())[1:]

    async def call(self, event: str, data: Any) -> Any:
        """Emit an event with an acknowledgement and return the answer; events that
        arrive meanwhile are skipped."""
        assert self._ws is not None
        ack_id = self._next_ack
        self._next_ack += 1
        payload = json.dumps([event, data], separators=(",", ":"))
        await self._ws.send_str(EIO_MESSAGE + SIO_EVENT + str(ack_id) + payload)
        prefix = SIO_ACK + str(ack_id) + "["
        async for frame in self.frames():
            if frame.startswith(prefix):
                return json.loads(frame[len(prefix) - 1 :])[0]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    async def _frame(self) -> str:
        assert self._ws is not None
        while True:
            message = await self._ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ProtocolError(f"the websocket ended: {message.type.name}")
            text: str = message.data
            if text == EIO_PING:
                await self._ws.send_str(EIO_PONG)
                continue
            if text.startswith(EIO_CLOSE):
                raise ProtocolError("the server closed the session")
            if text.startswith(EIO_OPEN):
                return text
            if text.startswith(EIO_MESSAGE):
                return text
