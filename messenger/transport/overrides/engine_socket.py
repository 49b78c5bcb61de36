"""python-engineio's `AsyncSocket`, corrected where it departs from Engine.IO v4.

What a session does on long polling and during an upgrade, as the protocol and the
reference server (engine.io) define it:

- a GET that waits is answered when the session closes: NOOP when the client sent
  CLOSE, CLOSE when the server ended it; a second GET while one waits is a protocol
  error that ends the session;
- a ping left unanswered closes the session when `ping_timeout` runs out, and a
  request after that is refused;
- a POST is read whole, at most `max_http_buffer_size` bytes (413 beyond, with the
  session closed), and a packet in it that does not decode ends the session;
- the upgrade answers the probe, ends the waiting GET with a NOOP of its own (never
  through the queue, so it cannot reach the websocket), holds a GET that comes
  while it waits for UPGRADE and refuses it once the upgrade is done, gives up
  after `UPGRADE_TIMEOUT`, and closes any other websocket for the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from engineio import exceptions, packet
from engineio.async_socket import AsyncSocket

log = logging.getLogger(__name__)

# Seconds a client has to send the probe and then UPGRADE (the reference's
# `upgradeTimeout`), and a GET that comes in between is held (its upgrade check).
UPGRADE_TIMEOUT = 10.0
UPGRADE_POLL_HOLD = 0.1
RECORD_SEPARATOR = "\x1e"
JSONP_FIELD = "d="
PROBE, PROBE_ANSWER, UPGRADE = "2probe", "3probe", "5"
# Packet types a client may send over polling, and those of them that mean nothing
# there (the reference ignores them).
CLIENT_PACKETS = (
    packet.OPEN,
    packet.CLOSE,
    packet.PONG,
    packet.MESSAGE,
    packet.UPGRADE,
    packet.NOOP,
)
IGNORED_POLLED = (packet.OPEN, packet.UPGRADE, packet.NOOP)
# Timers' tasks, kept until they finish.
_tasks: set[asyncio.Task[Any]] = set()


class ContentTooLarge(exceptions.ContentTooLongError):  # type: ignore[misc]
    """A POST longer than the server's `max_http_buffer_size`: answered 413."""


class ConformantSocket(AsyncSocket):  # type: ignore[misc]
    """An Engine.IO session as the protocol's reference server keeps it.

    The server changes a new session's class to this one after its `connect` event
    (subclasses such as `LeanSocket` are set by then), so there is no `__init__`:
    the state below starts from class defaults.
    """

    connected: bool
    upgrading: bool
    upgraded: bool
    closing: bool
    closed: bool
    last_ping: float | None  # when the PING that awaits its PONG went out (time.time())
    # Set while a long-poll GET waits; its result ends that GET: the packets to
    # answer with, or None for a 400 (the session moved to its websocket).
    _poll_end: asyncio.Future[list[Any] | None] | None = None
    # The probe was answered and the UPGRADE packet has not come yet.
    _probed = False
    # When an unanswered ping times out (loop time), and the timer that checks it.
    _pong_deadline: float | None = None
    _pong_timer: asyncio.TimerHandle | None = None

    # -- long polling ---------------------------------------------------------------

    async def handle_get_request(self, environ: Mapping[str, Any]) -> Any:
        if asks_for_websocket(environ, self.upgrade_protocols):
            if self.upgrading or self.upgraded:
                # python-engineio runs a second upgrade on the same session (or
                # fails with OSError); the reference accepts and closes it.
                return await self.server.refuse_websocket(environ)
            return await super().handle_get_request(environ)
        if not await self.check_ping_timeout():
            return self.server._bad_request("Session closed: ping timeout")
        if self._poll_end is not None:
            # python-engineio serves both; the reference ends the session and
            # answers the waiting GET with CLOSE.
            log.info("closing eio session %s: overlapping polls", self.sid)
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            return self.server._bad_request("Overlapping poll")
        try:
            packets = await self._long_poll()
        except exceptions.QueueEmpty:
            await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise
        if packets is None:
            # python-engineio answers a GET during an upgrade with a NOOP at once;
            # once the upgrade is done the session's HTTP requests are refused.
            return self.server._bad_request("Unexpected HTTP request")
        return packets

    async def _long_poll(self) -> list[Any] | None:
        """Wait for packets to send, or for something that ends the GET
        (`_end_poll`); python-engineio could only end it through the queue."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[list[Any] | None] = loop.create_future()
        self._poll_end = ended
        hold = None
        if self._probed:
            hold = loop.call_later(UPGRADE_POLL_HOLD, self._end_held_poll)
        getter = loop.create_task(self.queue.get())
        try:
            await asyncio.wait(
                (getter, ended),
                timeout=self.server.ping_interval + self.server.ping_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self._poll_end = None
            if hold is not None:
                hold.cancel()
            if not getter.done():
                getter.cancel()  # leaves any packet in the queue
        if getter.done() and not getter.cancelled():
            self.queue.task_done()
            return self._with_queued(getter.result())
        if ended.done():
            return ended.result()
        raise exceptions.QueueEmpty()

    def _with_queued(self, first: Any) -> list[Any]:
        """`first` and what is queued behind it, up to an end marker (None)."""
        if first is None:
            return []
        packets = [first]
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is None:
                self.queue.put_nowait(None)
                break
            packets.append(pkt)
        return packets

    def _end_held_poll(self) -> None:
        """A GET that came during the upgrade: NOOP while the upgrade waits for its
        UPGRADE packet, a 400 once it is done (the GET is then the client's error).
        Answered at the end of its hold either way, after the probe's answer, which
        a client may need to read first."""
        self._end_poll(None if self.upgraded else [packet.Packet(packet.NOOP)])

    def _end_poll(self, answer: list[Any] | None) -> None:
        ended = self._poll_end
        if ended is not None and not ended.done():
            ended.set_result(answer)

    async def handle_post_request(self, environ: Mapping[str, Any]) -> None:
        """Read the body whole and receive its packets in order.

        python-engineio reads `Content-Length` bytes with one `read()`, which may
        return less (a body without it is read as empty), caps a payload at 16
        packets (a client may batch more), and on a packet that does not decode
        logs and keeps the session. Here the session ends on a bad packet (400,
        EngineIOError) or a body over `max_http_buffer_size` (413, ContentTooLarge),
        as the reference server does.
        """
        limit = self.server.max_http_buffer_size
        declared = environ.get("CONTENT_LENGTH") or ""
        body = None
        if not (declared.isdigit() and int(declared) > limit):
            body = await _read_at_most(environ["wsgi.input"], limit)
        if body is None:
            log.info("closing eio session %s: POST over %d bytes", self.sid, limit)
            await self._end_for_transport_error()
            raise ContentTooLarge()
        try:
            packets = decode_payload(body)
        except ValueError as exc:
            log.info("closing eio session %s: bad packet in a POST (%s)", self.sid, exc)
            await self._end_for_transport_error()
            raise exceptions.EngineIOError() from None
        for pkt in packets:
            if self.closing or self.closed:
                break  # after CLOSE the rest means nothing
            if pkt.packet_type not in IGNORED_POLLED:
                await self.receive(pkt)

    async def _end_for_transport_error(self) -> None:
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)

    async def close(
        self, wait: bool = True, abort: bool = False, reason: str | None = None
    ) -> None:
        ending = not self.closed and not self.closing
        await super().close(wait=wait, abort=abort, reason=reason)
        if not ending:
            return
        self._stop_pong_timer()
        # python-engineio forgets a closed session when a request, or its service
        # task (not run here), comes across it; a gone client sends no request.
        if self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]
        if abort and not self.upgraded:
            # python-engineio leaves a waiting GET to time out. The reference ends
            # it: with NOOP when the client sent CLOSE, with CLOSE otherwise.
            kind = packet.NOOP if reason == self.server.reason.CLIENT_DISCONNECT else packet.CLOSE
            self._end_poll([packet.Packet(kind)])

    # -- heartbeat --------------------------------------------------------------------

    def schedule_ping(self) -> None:
        # python-engineio starts a task that sleeps `ping_interval` and sends the PING;
        # here the session waits in the server's PingWheel (heartbeat) instead.
        if self.last_ping:  # the start, or a PONG: no answer is awaited any more
            self._pong_deadline = None
            self._stop_pong_timer()
            self.last_ping = None
            self.server.ping_wheel.add(self, self.server.ping_interval)

    def ping_due(self) -> None:
        """The PING is due (called by the PingWheel): sent now, or by a task when it
        must queue."""
        if self.closing or self.closed:
            return
        self.last_ping = time.time()
        loop = asyncio.get_running_loop()
        self._pong_deadline = deadline = loop.time() + self.server.ping_timeout
        if not self._write_ping():
            task = asyncio.ensure_future(self._queue_ping(deadline))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    def _write_ping(self) -> bool:
        """Whether the PING could be written without queueing (LeanSocket can)."""
        return False

    async def _queue_ping(self, deadline: float) -> None:
        await self.send(packet.Packet(packet.PING))
        if not self.upgraded and self._pong_deadline == deadline and not self.closed:
            # python-engineio notices a missing PONG when its service task (not run
            # here, see heartbeat) passes by or a packet is sent; a polling session
            # is closed when the timeout runs out. (A websocket's reads time out on
            # their own.)
            self._pong_timer = asyncio.get_running_loop().call_at(deadline, self._pong_overdue)

    def _pong_overdue(self) -> None:
        self._pong_timer = None
        if self._pong_deadline is None or self.closing or self.closed:
            return
        task = asyncio.ensure_future(self._expire())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    async def _expire(self) -> None:
        if not self.closed:
            await self.check_ping_timeout()

    def _stop_pong_timer(self) -> None:
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None

    async def check_ping_timeout(self) -> bool:
        # python-engineio compares wall-clock seconds with `>` and closes without
        # abort, whose CLOSE packet its own send() then drops; here the loop's clock
        # against the deadline set when the PING went out.
        if self.closed:
            raise exceptions.SocketIsClosedError()
        deadline = self._pong_deadline
        if deadline is None or self.closing or asyncio.get_running_loop().time() < deadline:
            return True
        log.info("closing eio session %s: ping timeout", self.sid)
        await self.close(wait=False, abort=True, reason=self.server.reason.PING_TIMEOUT)
        return False

    # -- upgrade ----------------------------------------------------------------------

    async def _websocket_handler(self, ws: Any) -> None:
        if not self.connected:  # a session opened on this websocket
            await super()._websocket_handler(ws)
            return
        if self.upgrading or self.upgraded:
            await ws.close()
            return
        self.upgrading = True
        try:
            upgraded = await asyncio.wait_for(self._probe(ws), UPGRADE_TIMEOUT)
        except (TimeoutError, OSError):
            upgraded = False
        self.upgrading = self._probed = False
        if not upgraded or self.closing or self.closed:
            log.info("eio session %s: websocket upgrade abandoned", self.sid)
            self._end_poll([packet.Packet(packet.NOOP)])  # polling goes on
            await ws.close()
            return
        self.upgraded = True  # a GET held during the upgrade is refused when its hold ends
        # The library's loops, entered as for a session opened on the websocket
        # (that branch marks it connected and upgraded again).
        self.connected = False
        try:
            await super()._websocket_handler(ws)
        except Exception as exc:
            # python-engineio decodes frames outside its loop's error handling: a
            # frame that does not decode ends the handler with the session open and
            # its writer waiting. End both.
            log.info("closing eio session %s: undecodable frame (%r)", self.sid, exc)
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            self.queue.put_nowait(None)  # the writer ends, closing the websocket

    async def _probe(self, ws: Any) -> bool:
        """The upgrade's handshake (the writer is not running yet, so the answer is
        written here). python-engineio ends the waiting GET by queueing a NOOP,
        which reaches the websocket instead when no GET waits."""
        if await ws.wait() != PROBE:
            return False
        await ws.send(PROBE_ANSWER)
        self._probed = True
        self._end_poll([packet.Packet(packet.NOOP)])
        return bool(await ws.wait() == UPGRADE)


def asks_for_websocket(environ: Mapping[str, Any], protocols: list[str]) -> bool:
    """Whether a GET is a websocket handshake (python-engineio's own test)."""
    connection = [part.strip() for part in environ.get("HTTP_CONNECTION", "").lower().split(",")]
    return "upgrade" in connection and environ.get("HTTP_UPGRADE", "").lower() in protocols


def decode_payload(body: bytes) -> list[Any]:
    """The packets of a polling payload; ValueError if one does not decode or is
    not one a client sends (a PING from the client is the wrong direction in v4)."""
    text = body.decode()
    if text.startswith(JSONP_FIELD):  # a JSONP POST sends the payload as a form field
        text = urllib.parse.parse_qs(text).get("d", [""])[0]
    packets = [packet.Packet(encoded_packet=part) for part in text.split(RECORD_SEPARATOR)]
    for pkt in packets:
        if pkt.packet_type not in CLIENT_PACKETS:
            raise ValueError(f"packet type {pkt.packet_type} from a client")
    return packets


async def _read_at_most(stream: Any, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
