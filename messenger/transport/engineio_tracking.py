"""Lets the server cut a websocket even while a write to it is blocked.

python-engineio writes to a websocket from a task that waits for the kernel's send
buffer to drain. For a client that stopped reading, that wait never ends: closing
the Engine.IO socket marks it closed but leaves the task, the file descriptor and the
queued packets pinned until the client hangs up. Aborting the TCP transport ends the
wait at once. python-engineio keeps no reference to it, so this wraps its aiohttp
websocket class to remember each session's transport.
"""

from __future__ import annotations

import asyncio
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
            try:
                return await super().__call__(environ)
            finally:
                transports.pop(sid, None)

    # A copy: the driver's table is shared by every server in the process.
    eio._async = {**eio._async, "websocket": TrackedWebSocket}
    return transports
