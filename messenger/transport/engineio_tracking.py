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
the largest single cost (17 % of the server's time). The frames one pass of the loop
writes to a connection now leave in one `send()`, at the end of that pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


def track_websockets(eio: Any) -> dict[str, asyncio.Transport]:
    """Make `eio` (an engineio.AsyncServer on aiohttp) record the TCP transport of every
    open websocket session; returns the live map from Engine.IO sid to transport."""
    transports: dict[str, asyncio.Transport] = {}
    base = eio._async["websocket"]

    class TrackedWebSocket(base):  # type: ignore[misc, valid-type]
        async def __call__(self, environ: dict[str, Any]) -> Any:
            sid = getattr(getattr(self.handler, "__self__", None), "sid", None)
            request = environ.get("aiohttp.request")
            transport = getattr(request, "transport", None)
            if sid is None or transport is None:
                return await super().__call__(environ)
            transports[sid] = transport
            self.transport = transport
            CoalescedWrites(transport)
            try:
                return await super().__call__(environ)
            finally:
                transports.pop(sid, None)

    # A copy: the driver's table is shared by every server in the process.
    eio._async = {**eio._async, "websocket": TrackedWebSocket}
    return transports


class CoalescedWrites:
    """Gathers what is written to `transport` during one pass of the event loop and
    writes it at the end of the pass, in one call. Installs itself on the transport;
    closing flushes first, aborting drops what is pending."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._write = transport.write
        self._writelines = transport.writelines
        self._close = transport.close
        self._abort = transport.abort
        self._chunks: list[bytes] = []
        transport.write = self.write  # type: ignore[method-assign]
        transport.writelines = self.writelines  # type: ignore[method-assign, assignment]
        transport.close = self.close  # type: ignore[method-assign]
        transport.abort = self.abort  # type: ignore[method-assign]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._chunks:
            self._loop.call_soon(self.flush)
        # A caller may reuse its buffer once write() returns: keep a copy of it.
        self._chunks.append(data if type(data) is bytes else bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        self.flush()  # keep the order of what was written
        self._writelines(chunks)

    def flush(self) -> None:
        chunks, self._chunks = self._chunks, []
        if chunks and not self._transport.is_closing():
            self._write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def close(self) -> None:
        self.flush()
        self._close()

    def abort(self) -> None:
        self._chunks.clear()
        self._abort()
