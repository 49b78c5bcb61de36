"""The Engine.IO session every connection runs on: a byte budget, and protocol errors
that close the session. Both are security bounds, so they hold with the lean
websocket loops off (`lean_websocket`) as well as on (`LeanSocket` subclasses this).

Every session has a byte budget (`connection_buffer`): what is queued for it and
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
import collections
import contextlib
import logging
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


class CountingQueue:
    """A session's send queue that keeps the encoded bytes and the number of the
    packets it holds, as they enter and leave (whoever puts or takes them).

    The part of `asyncio.Queue`'s interface that python-engineio and the overrides
    use, unbounded. asyncio's queue makes four deques as it is made (items, getters,
    putters, its join event's waiters); on the lean websocket path most sessions never
    queue a packet nor wait on their queue, so here each is made on first use.
    """

    __slots__ = (
        "_done",
        "_getters",
        "_items",
        "_unfinished",
        "on_put",
        "queued_bytes",
        "queued_packets",
    )

    def __init__(self, maxsize: int = 0) -> None:
        if maxsize:
            raise ValueError("a session's queue is bounded by bytes, not by packets")
        self.queued_bytes = 0
        self.queued_packets = 0
        self._items: collections.deque[Any] | None = None
        self._getters: collections.deque[asyncio.Future[None]] | None = None
        self._unfinished = 0  # put and not yet marked task_done, as asyncio's queue
        self._done: asyncio.Event | None = None  # made by the first join() that waits
        # Called after each put, whoever puts: a writer that runs only while there is
        # something queued starts here (LeanSocket).
        self.on_put: Callable[[], None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        if item is not None:
            self.queued_bytes += packet_size(item)
            self.queued_packets += 1
        self._unfinished += 1
        if self._done is not None:
            self._done.clear()
        self._wake_getter()
        if self.on_put is not None:
            self.on_put()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None  # most sessions queue only their OPEN packet, ever
        if item is not None:
            self.queued_bytes -= packet_size(item)
            self.queued_packets -= 1
        return item

    async def get(self) -> Any:
        while not self._items:
            if self._getters is None:
                self._getters = collections.deque()
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    self._wake_getter()  # it was woken for an item: pass it on
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._done is not None:
            self._done.set()

    async def join(self) -> None:
        if self._unfinished > 0:
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return


class GuardedSocket(ConformantSocket):
    """An `engineio.async_socket.AsyncSocket` with a byte budget, and protocol errors
    that close the session; python-engineio's own loops otherwise."""

    sid: str
    server: Any
    queue: CountingQueue
    connected: bool
    upgraded: bool
    closed: bool
    # The websocket's transport while there is one: its write buffer is pending too.
    _transport: asyncio.Transport | None = None
    # The size of the packet a websocket writer has taken and not yet written.
    _in_flight = 0
    # Bytes pending past which the session is dropped (0: no budget), and who drops it.
    _budget = 0
    _on_overflow: Callable[[GuardedSocket, int], None] | None = None
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
        on_overflow: Callable[[GuardedSocket, int], None] | None = None,
        address: str = UNKNOWN,
        client_log: ClientLog | None = None,
    ) -> Any:
        """Make `socket` (a session python-engineio just made) one of this class,
        before it reads or writes anything."""
        socket.__class__ = cls
        guarded: GuardedSocket = socket
        guarded._budget = budget
        guarded._on_overflow = on_overflow
        guarded.address = address
        guarded._client_log = client_log
        return guarded

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
        if self._over_budget_with(pkt):
            return
        await super().send(pkt)
        shed_data(pkt)

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
        try:
            await super()._websocket_handler(ws)
        except Exception:
            # python-engineio decodes frames outside its loop's error handling: a
            # frame that does not decode ends the handler with the session open and
            # its writer waiting. End both.
            await self.protocol_error("a frame that does not decode")
            self.queue.put_nowait(None)  # the writer ends, closing the websocket


def shed_data(pkt: packet.Packet) -> None:
    """Let a queued text packet keep only its encoded form: the data it was encoded
    from (as long again) is not read after that."""
    if not pkt.binary and pkt.encode_cache:
        pkt.data = None
