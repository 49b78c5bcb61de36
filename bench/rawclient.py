"""A bare Socket.IO client over one websocket, for the load generator and the probes.

python-socketio's client decodes every packet into objects and waits for each frame,
in and out, through an `asyncio.wait_for` (a task and a timer per frame): on the two
cores the servers under test share with it, the load generator spent as much CPU per
message as the servers did, and its share of the cores showed up in their latency.
This client speaks the few frames the benchmark needs (Engine.IO v4 over websocket,
the default namespace) straight over aiohttp's websocket:

- `listen` reads frames until the session ends, hands events to one callback in
  order and acknowledgements to the callbacks `emit` registered;
- `frames` and `call` are for a probe that reads its one connection inline (draining a
  backlog, one request at a time); use either them or `listen` on a client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

# Engine.IO packet types (the first character of a frame).
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE = "0", "1", "2", "3", "4"
# Socket.IO packet types, after the Engine.IO MESSAGE character.
SIO_CONNECT, SIO_DISCONNECT, SIO_EVENT, SIO_ACK = "0", "1", "2", "3"

OnEvent = Callable[[str, Any], Awaitable[None]]
OnAck = Callable[[Any], None]


class ProtocolError(Exception):
    pass


class RawClient:
    """One Socket.IO session; `http` shares a session's connection pool among clients
    (the client then leaves it open on close)."""

    def __init__(self, url: str, http: aiohttp.ClientSession | None = None) -> None:
        base = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        self._url = f"{base}/socket.io/?EIO=4&transport=websocket"
        self._http = http
        self._owns_http = http is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_ack = 0
        self._acks: dict[int, OnAck] = {}
        self.connected = False

    async def connect(self, auth: dict[str, Any]) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self._url, max_msg_size=0)
        opened = await self._frame()
        if not opened.startswith(EIO_OPEN):
            raise ProtocolError(f"expected the Engine.IO open packet, got {opened[:80]!r}")
        await self._ws.send_str(EIO_MESSAGE + SIO_CONNECT + json.dumps(auth))
        answer = await self._frame()
        if not answer.startswith(EIO_MESSAGE + SIO_CONNECT):
            raise ProtocolError(f"connect refused: {answer[:200]!r}")
        self.connected = True

    async def emit(self, event: str, data: Any, on_ack: OnAck | None = None) -> None:
        """Send an event; `listen` calls `on_ack(answer)` when the server acknowledges it."""
        assert self._ws is not None
        frame = EIO_MESSAGE + SIO_EVENT
        if on_ack is not None:
            ack_id = self._next_ack
            self._next_ack += 1
            self._acks[ack_id] = on_ack
            frame += str(ack_id)
        await self._ws.send_str(frame + json.dumps([event, data], separators=(",", ":")))

    async def listen(self, on_event: OnEvent) -> None:
        """Read until the session ends: each event to `on_event(name, data)`, awaited
        before the next frame is read (so in order), each acknowledgement to its
        `emit` callback."""
        try:
            async for frame in self.frames():
                kind = frame[:1]
                if kind == SIO_EVENT and frame[1:2] == "[":
                    name, *args = json.loads(frame[1:])
                    await on_event(name, args[0] if args else None)
                elif kind == SIO_ACK:
                    start = frame.index("[")
                    callback = self._acks.pop(int(frame[1:start]), None)
                    if callback is not None:
                        args = json.loads(frame[start:])
                        callback(args[0] if args else None)
                elif kind == SIO_DISCONNECT:
                    return
        except (ProtocolError, aiohttp.ClientError):
            return
        finally:
            self.connected = False

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
        self.connected = False
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None and self._owns_http:
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
