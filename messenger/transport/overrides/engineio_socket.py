"""A leaner Engine.IO socket for sessions that open straight on a websocket.

python-engineio reads each websocket frame through a new task wrapped in
`asyncio.wait_for` (its idle timeout), and its writer task wakes for each outbound
packet through another `wait_for`, which makes a task and a timer too. With both
sides online every message is two frames in (`send`, `delivered`) and about four
out, and below the peak, where frames rarely share a wake-up, that bookkeeping is
paid for each of them (docs/dev/performance-log.md has what removing it bought).

`LeanSocket` keeps python-engineio's protocol handling (`receive`, ping, close)
and replaces the loops around it:

- frames are awaited directly, with one watchdog timer per session instead of one
  timeout per frame;
- a packet sent while nothing is queued and the kernel takes what it is given is
  written at once as a websocket frame (the transport gathers a loop pass's frames
  into one `send()`, see engineio_tracking); otherwise it joins the queue, which a
  writer task drains, so order holds and a client that reads slowly backs packets
  up in the queue, where the live hub's bounds see them. The writer task is started
  by a put and ends when the queue is empty: an idle session keeps no task, nor
  (CountingQueue) any deque, waiting.

Sessions that start on long polling and upgrade keep the library's own path; in
compressed (permessage-deflate) sessions, whose frames aiohttp must deflate, every
packet goes through the queue and its writer. The
byte budget and the protocol-error closes are `GuardedSocket`'s (guarded_socket),
which every session has, with these loops (`lean_websocket`) or without them.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from engineio import exceptions, packet

from messenger.transport.overrides.guarded_socket import GuardedSocket, shed_data

log = logging.getLogger(__name__)


class LeanSocket(GuardedSocket):
    """A `GuardedSocket` with cheaper websocket loops."""

    _frames: asyncio.Transport | None = None  # set while frames may be written at once
    _writer_busy = False
    # The task writing queued packets, if one runs, and the websocket it writes to
    # while the session has one.
    _writer: asyncio.Task[None] | None = None
    _ws: Any = None

    async def send(self, pkt: packet.Packet) -> None:
        if self._overflowed:
            return  # being dropped: nothing more is queued for it
        if self._frames is None:
            await super().send(pkt)
            return
        if not await self.check_ping_timeout():
            return
        # Read after the check, which may close the session (and so wait).
        transport = self._direct_transport()
        if transport is not None:
            # Nothing queued and little unread: no budget to check here (the common
            # case, kept cheap); what this adds is counted at the next queued send.
            transport.write(websocket_frame(pkt.encode()))
        elif not self._over_budget_with(pkt):
            await self.queue.put(pkt)  # behind what is queued: order holds
            shed_data(pkt)

    def _direct_transport(self) -> asyncio.Transport | None:
        """The transport, when a frame may be written to it at once: nothing queued
        or being written ahead of it, and little the kernel has not taken."""
        transport = self._frames
        if (
            transport is not None
            and not self._writer_busy
            and self.queue.empty()
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= DIRECT_WRITE_LIMIT
        ):
            return transport
        return None

    def _write_ping(self) -> bool:
        transport = self._direct_transport()
        if transport is None:
            return False
        transport.write(PING_FRAME)
        return True

    async def _websocket_handler(self, ws: Any) -> None:
        transport: asyncio.Transport | None = getattr(ws, "transport", None)
        if self.connected or transport is None:
            # An upgrade from long polling (or a driver we do not know): the
            # library's own handshake and loops.
            await super()._websocket_handler(ws)
            return
        self.connected = True
        self.upgraded = True
        response = getattr(ws, "_sock", None)  # the aiohttp WebSocketResponse
        if response is not None and not response.compress:
            # Frames are written at once. (aiohttp deflates a compressed session's
            # frames: every packet of those goes through the writer.)
            self._frames = transport
        # The writer runs only while packets are queued.
        self._ws = ws
        self.queue.on_put = self._wake_writer
        self._wake_writer()  # the handshake's OPEN is queued already
        watchdog = _Watchdog(transport, self.server.ping_interval + self.server.ping_timeout)
        try:
            await self._read_all(ws, watchdog)
        finally:
            watchdog.stop()
            self._frames = None
            self._ws = None
            self.queue.on_put = None
        writer = self._writer
        if writer is not None:
            await self.queue.put(None)  # wakes the writer, which ends
            await writer
        else:
            await ws.close()
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    def _wake_writer(self) -> None:
        if self._writer is None and self._ws is not None and not self.queue.empty():
            self._writer = asyncio.ensure_future(self._write_queued(self._ws))

    async def _read_all(self, ws: Any, watchdog: _Watchdog) -> None:
        limit = self.server.max_http_buffer_size
        while True:
            try:
                data = await ws.wait()
            except Exception:  # closed, aborted by the watchdog, or a frame aiohttp
                return  # refused (bad UTF-8, a bad opcode): it closed the websocket
            if data is None or len(data) > limit:
                return
            watchdog.heard()
            if data == PONG:
                # What receive() does with a PONG, without decoding a packet: most
                # of what an idle session ever reads.
                self.schedule_ping()
                continue
            try:
                pkt = packet.Packet(encoded_packet=data)
            except Exception:  # ValueError mostly; RecursionError for deep JSON
                await self.protocol_error("a frame that does not decode")
                return
            try:
                await self.receive(pkt)
            except exceptions.SocketIsClosedError:
                return
            except Exception:
                # Not the client's doing (what it may send is checked above): the
                # server's own fault, logged with its traceback, and the session
                # ends rather than read on in a state nobody knows.
                if not self._error_logged and self._client_log is not None:
                    self._error_logged = True
                    self._client_log.error(
                        self.address, "engine.io session %s: receive failed", self.sid
                    )
                await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
                return
            if self.closed:
                return  # the client's CLOSE: the websocket closes too

    async def _write_queued(self, ws: Any) -> None:
        """Write what is queued, then end: started by a put (`_wake_writer`), so an
        idle session keeps no task waiting. Direct writes wait while it runs, so
        order holds; the end marker (None) closes the websocket."""
        ended = False
        try:
            while not self.queue.empty():
                self._writer_busy = True
                packets = await self.poll()
                if not packets:
                    ended = True
                    break
                # Until it is written, later packets queue behind it. An uncompressed
                # frame reaches the transport before send() can wait, and from there
                # it is counted as the transport's.
                self._in_flight = 0
                await ws.send(packets[0].encode())
        except Exception as exc:  # the connection is gone: nothing more to write
            log.debug("engine.io session %s: write ended: %r", self.sid, exc)
            ended = True
        finally:
            self._writer_busy = False
            self._in_flight = 0
            self._writer = None
        if ended:
            await ws.close()


# Bytes the kernel has not taken yet, past which packets wait in the queue instead.
DIRECT_WRITE_LIMIT = 64 * 1024
PONG = "3"  # an Engine.IO PONG, as a text frame carries it


def websocket_frame(payload: str | bytes) -> bytes:
    """One unfragmented, unmasked websocket frame (RFC 6455 5.2), as a server sends:
    text for a str, binary for bytes."""
    if isinstance(payload, str):
        first, data = 0x81, payload.encode()
    else:
        first, data = 0x82, payload
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + data
    return struct.pack("!BBQ", first, 127, size) + data


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


PING_FRAME = websocket_frame("2")  # an Engine.IO PING
