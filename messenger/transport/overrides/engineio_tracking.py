"""The TCP transport under each websocket: kept so it can be cut, and written in
one piece per pass of the event loop.

python-engineio writes to a websocket from a task that waits for the kernel's send
buffer to drain. For a client that stopped reading, that wait never ends: closing
the Engine.IO socket marks it closed but leaves the task, the file descriptor and the
queued packets pinned until the client hangs up. Aborting the TCP transport ends the
wait at once. python-engineio keeps no reference to it, so this wraps its aiohttp
websocket class to remember each session's transport.

Every Engine.IO packet is a websocket frame of its own, and aiohttp hands each frame
to the kernel with a `send()` of its own: replaying a backlog, that system call was
the largest single cost of the server's time. The frames one pass of the loop
writes to a connection now leave in one `send()`, at the end of that pass. The
gathering transport wraps the real one on the connection's aiohttp protocol, which
every writer of the connection (aiohttp's, ours) reads it from; uvloop's transports
cannot have their methods replaced, so wrapping is what works on both loops. With
`lean_websocket` off the transport is only kept, not wrapped: the gathering is one
of the performance overrides that setting turns off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from messenger.transport.overrides.guarded_socket import GuardedSocket


def track_websockets(eio: Any, coalesce: bool = True) -> dict[str, asyncio.Transport]:
    """Make `eio` (an engineio.AsyncServer on aiohttp) record the TCP transport of every
    open websocket session, a `CoalescedTransport` if `coalesce`; returns the live map
    from Engine.IO sid to transport."""
    transports: dict[str, asyncio.Transport] = {}
    base = eio._async["websocket"]

    class TrackedWebSocket(base):  # type: ignore[misc, valid-type]
        async def __call__(self, environ: dict[str, Any]) -> Any:
            session = getattr(self.handler, "__self__", None)
            sid = getattr(session, "sid", None)
            protocol = getattr(environ.get("aiohttp.request"), "_protocol", None)
            if sid is None or sid in transports or protocol is None or protocol.transport is None:
                # Not a session's websocket, or a second one for a session that has
                # one (an upgrade attempt it refuses): the first stays the tracked one.
                return await super().__call__(environ)
            transport = protocol.transport
            if coalesce:
                transport = protocol.transport = CoalescedTransport(transport)
                self.transport = transport  # LeanSocket writes its frames to it
            transports[sid] = transport
            if isinstance(session, GuardedSocket):
                session.use_transport(transport)  # what it buffers is pending
            try:
                return await super().__call__(environ)
            finally:
                transports.pop(sid, None)
                if isinstance(session, GuardedSocket):
                    session.use_transport(None)

    # A copy: the driver's table is shared by every server in the process.
    eio._async = {**eio._async, "websocket": TrackedWebSocket}
    return transports


class CoalescedTransport(asyncio.Transport):
    """Wraps a transport: what is written to it during one pass of the event loop is
    written to the real one at the end of the pass, in one call. Closing flushes
    first, aborting drops what is pending; everything else is the real transport's."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self._inner = inner
        self._loop = asyncio.get_running_loop()
        self._chunks: list[bytes] = []
        self._pending = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._chunks:
            self._loop.call_soon(self.flush)
        # A caller may reuse its buffer once write() returns: keep a copy of it.
        chunk = data if type(data) is bytes else bytes(data)
        self._chunks.append(chunk)
        self._pending += len(chunk)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        self.flush()  # keep the order of what was written
        self._inner.writelines(chunks)

    def flush(self) -> None:
        chunks, self._chunks, self._pending = self._chunks, [], 0
        if chunks and not self._inner.is_closing():
            self._inner.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + self._pending

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def abort(self) -> None:
        self._chunks.clear()
        self._pending = 0
        self._inner.abort()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()
