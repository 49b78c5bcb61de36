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
  into one `send()`, see engineio_tracking); otherwise it joins the queue, which the
  writer task drains as before, so order holds and a client that reads slowly
  backs packets up in the queue, where the live hub's bounds see them.

Sessions that start on long polling and upgrade keep the library's own path, and so
do compressed (permessage-deflate) sessions, whose frames aiohttp must deflate.

Every session also has a byte budget (`connection_buffer`): what is queued for it and
not yet taken by the kernel (`pending_bytes`: its queue, counted as packets enter
and leave it, the packet its writer holds, and the transport's write buffer). A send
that would take a session past it drops the session instead: a client that stopped
reading must not hold more of the node's memory than that, whatever is sent to it.
Nothing acknowledged is lost by a drop; what the client missed is in SQL and replays
when it reconnects.

A frame that does not decode, or a packet type no client sends, ends the session as
a protocol error (python-engineio logs a traceback and reads on): one line in the
log, and those rate limited per client address.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

from engineio import exceptions, packet

from messenger.transport.client_address import UNKNOWN
from messenger.transport.client_log import ClientLog
from messenger.transport.overrides.engine_socket import ConformantSocket

log = logging.getLogger(__name__)

# What one queued packet costs beyond its encoded bytes (the packet object, its
# fields, the queue's slot), charged against the budget so that a flood of tiny
# packets is bounded as surely as a few large ones.
PACKET_OVERHEAD = 200
# Packet types a client sends that mean nothing after the handshake: the reference
# server ignores them (python-engineio answers UPGRADE with a NOOP, one queued
# answer per packet however many come).
IGNORED_TYPES = (packet.OPEN, packet.UPGRADE, packet.NOOP)
RECEIVED_TYPES = (packet.CLOSE, packet.PONG, packet.MESSAGE)


def packet_size(pkt: Any) -> int:
    """The encoded size in bytes of a queued packet (None, the queue's end marker,
    is 0). Packets cache their encoding, so this encodes each packet once."""
    if pkt is None:
        return 0
    if pkt.binary:
        # Not encoded here: the encoding would be cached in its websocket form,
        # and a long poll would then fail to send it.
        return len(pkt.data)
    encoded = pkt.encode()
    if isinstance(encoded, str):
        # The packets this server makes are ASCII (JSON escapes the rest).
        return len(encoded) if encoded.isascii() else len(encoded.encode())
    return len(encoded)


class CountingQueue(asyncio.Queue[Any]):
    """A session's send queue that keeps the encoded bytes and the number of the
    packets it holds, as they enter and leave (whoever puts or takes them)."""

    def __init__(self, maxsize: int = 0) -> None:
        self.queued_bytes = 0
        self.queued_packets = 0
        super().__init__(maxsize)

    def _put(self, item: Any) -> None:
        super()._put(item)
        if item is not None:
            self.queued_bytes += packet_size(item)
            self.queued_packets += 1

    def _get(self) -> Any:
        item = super()._get()
        if item is not None:
            self.queued_bytes -= packet_size(item)
            self.queued_packets -= 1
        return item


class LeanSocket(ConformantSocket):
    """An `engineio.async_socket.AsyncSocket` with cheaper websocket loops, a byte
    budget, and protocol errors that close the session."""

    sid: str
    server: Any
    queue: asyncio.Queue[Any]
    connected: bool
    upgraded: bool
    closed: bool
    _frames: asyncio.Transport | None = None  # set while frames may be written at once
    _writer_busy = False
    # The websocket's transport while there is one: its write buffer is pending too.
    _transport: asyncio.Transport | None = None
    # The size of the packet a websocket writer has taken and not yet written.
    _in_flight = 0
    # Bytes pending past which the session is dropped (0: no budget), and who drops it.
    _budget = 0
    _on_overflow: Callable[[LeanSocket, int], None] | None = None
    _overflowed = False
    # The client's address, for the log; its lines go through `_client_log`.
    address = UNKNOWN
    _client_log: ClientLog | None = None
    _error_logged = False

    @classmethod
    def adopt(
        cls,
        socket: Any,
        budget: int = 0,
        on_overflow: Callable[[LeanSocket, int], None] | None = None,
        address: str = UNKNOWN,
        client_log: ClientLog | None = None,
    ) -> LeanSocket:
        """Make `socket` (a session python-engineio just made) a LeanSocket, before it
        reads or writes anything."""
        socket.__class__ = cls
        lean: LeanSocket = socket
        lean._budget = budget
        lean._on_overflow = on_overflow
        lean.address = address
        lean._client_log = client_log
        return lean

    def pending_bytes(self) -> int:
        """Encoded bytes queued for the session and not yet taken by the kernel: its
        queue, the packet its websocket writer holds, and what the websocket's
        transport buffers."""
        queued = self.queue.queued_bytes if isinstance(self.queue, CountingQueue) else 0
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return queued + self._in_flight + buffered

    def use_transport(self, transport: asyncio.Transport | None) -> None:
        """The TCP transport of the session's websocket (None once it is gone)."""
        self._transport = transport

    async def send(self, pkt: packet.Packet) -> None:
        if self._overflowed:
            return  # being dropped: nothing more is queued for it
        if self._frames is None:
            if self._over_budget_with(pkt):
                return
            await super().send(pkt)
            _shed(pkt)
            return
        if not await self.check_ping_timeout():
            return
        # Read after the check, which may close the session (and so wait).
        transport = self._frames
        if (
            transport is not None
            and not self._writer_busy
            and self.queue.empty()
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= DIRECT_WRITE_LIMIT
        ):
            # Nothing queued and little unread: no budget to check here (the common
            # case, kept cheap); what this adds is counted at the next queued send.
            transport.write(websocket_frame(pkt.encode()))
        elif not self._over_budget_with(pkt):
            await self.queue.put(pkt)  # behind what is queued: order holds
            _shed(pkt)

    def _over_budget_with(self, pkt: packet.Packet) -> bool:
        return bool(self._budget) and not self.closed and self._past_budget(packet_size(pkt))

    def _past_budget(self, size: int) -> bool:
        """Whether queueing `size` more bytes takes the session past its budget; if
        so the session is handed to `_on_overflow` to be dropped."""
        queue = self.queue
        packets = queue.queued_packets if isinstance(queue, CountingQueue) else queue.qsize()
        charged = self.pending_bytes() + PACKET_OVERHEAD * (packets + 1)
        if charged + size <= self._budget:
            return False
        self._overflowed = True
        if self._on_overflow is not None:
            self._on_overflow(self, charged + size)
        return True

    async def poll(self) -> list[Any]:
        if not self.upgraded:
            polled: list[Any] = await super().poll()  # a long poll: its timeout answers it
            return polled
        # A websocket writer takes one packet at a time, so that what it holds is
        # counted until written: the packet it took before is written by now.
        self._in_flight = 0
        pkt = await self.queue.get()
        self.queue.task_done()
        if pkt is None:
            return []
        self._in_flight = packet_size(pkt)
        return [pkt]

    async def receive(self, pkt: packet.Packet) -> None:
        kind = pkt.packet_type
        if kind in IGNORED_TYPES:
            return
        if kind not in RECEIVED_TYPES:
            await self.protocol_error(f"packet type {kind!r} from a client")
            raise exceptions.SocketIsClosedError()
        await super().receive(pkt)

    async def protocol_error(self, what: str) -> None:
        """End the session for something no client may send."""
        self._log_once("closing eio session %s from %s: protocol error: %s", what)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)

    def _log_once(self, message: str, what: str) -> None:
        if not self._error_logged:
            self._error_logged = True
            if self._client_log is not None:
                self._client_log.info(self.address, message, self.sid, self.address, what)

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
            self._frames = transport
        writer = asyncio.ensure_future(self._write_all(ws))
        watchdog = _Watchdog(transport, self.server.ping_interval + self.server.ping_timeout)
        try:
            await self._read_all(ws, watchdog)
        finally:
            watchdog.stop()
            self._frames = None
        await self.queue.put(None)  # wakes the writer, which ends
        await writer
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

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

    async def _write_all(self, ws: Any) -> None:
        try:
            while True:
                self._writer_busy = False
                packets = await self.poll()
                if not packets:
                    break
                # Until it is written, later packets queue behind it. An uncompressed
                # frame reaches the transport before send() can wait, and from there
                # it is counted as the transport's.
                self._writer_busy = True
                self._in_flight = 0
                await ws.send(packets[0].encode())
        except Exception as exc:  # the connection is gone: nothing more to write
            log.debug("engine.io session %s: write ended: %r", self.sid, exc)
        self._in_flight = 0
        await ws.close()


def _shed(pkt: packet.Packet) -> None:
    """Let a queued text packet keep only its encoded form: the data it was encoded
    from (as long again) is not read after that."""
    if not pkt.binary and pkt.encode_cache:
        pkt.data = None


# Bytes the kernel has not taken yet, past which packets wait in the queue instead.
DIRECT_WRITE_LIMIT = 64 * 1024


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
