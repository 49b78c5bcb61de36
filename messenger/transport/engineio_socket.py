"""A leaner Engine.IO socket for sessions that open straight on a websocket.

python-engineio reads each websocket frame through a new task wrapped in
`asyncio.wait_for` (its idle timeout), and its writer task wakes for each outbound
packet through another `wait_for`, which makes a task and a timer too. With both
sides online every message is two frames in (`send`, `delivered`) and about four
out, so at moderate rates, where frames rarely share a wake-up, that bookkeeping
was about half of the event loop's time per message.

`LeanSocket` keeps python-engineio's protocol handling (`receive`, `send`, ping,
close) and replaces only the two loops: frames are awaited directly, with one
watchdog timer per session instead of one timeout per frame, and the writer waits
on its queue without a timeout (the reader's end, or `close`, wakes it with None).
Sessions that start on long polling and upgrade keep the library's own path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engineio import exceptions, packet
from engineio.async_socket import AsyncSocket

log = logging.getLogger(__name__)


class LeanSocket(AsyncSocket):  # type: ignore[misc]
    """An `engineio.async_socket.AsyncSocket` with cheaper websocket loops."""

    connected: bool
    upgraded: bool

    async def poll(self) -> list[Any]:
        if not self.upgraded:
            polled: list[Any] = await super().poll()  # a long poll: its timeout answers it
            return polled
        first = await self.queue.get()
        self.queue.task_done()
        if first is None:
            return []
        packets = [first]
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is None:
                self.queue.put_nowait(None)  # the writer ends after these
                break
            packets.append(pkt)
        return packets

    async def _websocket_handler(self, ws: Any) -> None:
        transport: asyncio.Transport | None = getattr(ws, "transport", None)
        if self.connected or transport is None:
            # An upgrade from long polling (or a driver we do not know): the
            # library's own handshake and loops.
            await super()._websocket_handler(ws)
            return
        self.connected = True
        self.upgraded = True
        writer = asyncio.ensure_future(self._write_all(ws))
        watchdog = _Watchdog(transport, self.server.ping_interval + self.server.ping_timeout)
        try:
            await self._read_all(ws, watchdog)
        finally:
            watchdog.stop()
        await self.queue.put(None)  # wakes the writer, which ends
        await writer
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    async def _read_all(self, ws: Any, watchdog: _Watchdog) -> None:
        limit = self.server.max_http_buffer_size
        while True:
            try:
                data = await ws.wait()
            except Exception:  # closed, aborted by the watchdog, or not text/bytes
                return
            if data is None or len(data) > limit:
                return
            watchdog.heard()
            try:
                await self.receive(packet.Packet(encoded_packet=data))
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                return
            except Exception:
                log.exception("engine.io session %s: receive failed", self.sid)

    async def _write_all(self, ws: Any) -> None:
        try:
            while packets := await self.poll():
                for pkt in packets:
                    await ws.send(pkt.encode())
        except Exception as exc:  # the connection is gone: nothing more to write
            log.debug("engine.io session %s: write ended: %r", self.sid, exc)
        await ws.close()


class _Watchdog:
    """Aborts the connection once nothing has been heard for `idle` seconds: the
    idle timeout python-engineio puts on every read, as one timer per session that
    rearms itself only when it fires."""

    def __init__(self, transport: asyncio.Transport, idle: float) -> None:
        self._transport = transport
        self._idle = idle
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer = self._loop.call_at(self._last + idle, self._check)

    def heard(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        deadline = self._last + self._idle
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check)
        else:
            self._transport.abort()

    def stop(self) -> None:
        self._timer.cancel()
