"""The listening socket: aiohttp serving the application on host:port, within bounds
that one client cannot stretch.

- **Header deadline** (`header_timeout`). A connection must deliver a complete request
  line and headers within it: from its opening for the first request, and from the
  first byte of each later one on a keep-alive connection. Bytes arriving slowly do
  not restart it. aiohttp has no such deadline: a client dripping a header a second
  held its connection, and its file descriptor, until the keep-alive timeout (an
  hour by default).
- **Keep-alive idle deadline** (`keepalive_timeout`): aiohttp's own, through its
  public `keepalive_timeout` option. aiohttp also starts it when a connection opens,
  so a first request has the shorter of the two deadlines.
- **Connection caps.** Open TCP connections per peer address
  (`max_connections_per_address`; a peer that is a trusted proxy is capped only on
  the node) and on the node (`max_connections`, or, at 0, the descriptor limit less
  headroom for the databases, Redis and log files). A connection over a cap is
  closed as it is accepted, before aiohttp sees a byte of it.

The caps count TCP peers: behind a reverse proxy every client arrives from the
proxy, so limiting connections per client there is the proxy's job. All of it is per
node.

How, with aiohttp's public interfaces only: the listening socket is ours
(`loop.create_server`), and each accepted connection gets a small protocol of ours
that checks the caps and then hands every byte to the aiohttp protocol made by the
runner's `web.Server` (aiohttp's documented low-level server usage). An aiohttp
middleware, the outermost, tells that protocol when a request's headers have been
parsed (its handler starts) and when its handler is done; websocket and long-poll
requests are inside their handler for their whole life, past their headers, so the
deadline never cuts them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from aiohttp import web

from messenger.config import Settings
from messenger.metrics import Metrics
from messenger.transport.client_address import UNKNOWN, ClientAddresses, normalized
from messenger.transport.pending_sessions import ON_NODE, PER_ADDRESS

log = logging.getLogger(__name__)

# Descriptors kept free of client connections when the node's cap comes from the
# limit: the database pools, Redis, log files, SQLite's -wal and -shm files, the
# event loop's own.
HEADROOM_SHARE = 0.10
MIN_HEADROOM = 64
# Refused connections are logged at most this often, as one line with their counts.
REFUSAL_LOG_SECONDS = 10.0
BACKLOG = 128
# The answer to a connection whose first request's headers did not arrive in time.
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (before, after).

    Every TCP connection is a descriptor, and the usual soft limit (1,024) is far
    below what a node can serve."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        # An unlimited hard limit the kernel refuses as a soft one (macOS): keep it.
        return soft, soft
    return soft, hard


def node_connection_cap(max_connections: int) -> int:
    """`max_connections`, or at 0 the soft descriptor limit less the headroom."""
    if max_connections:
        return max_connections
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    headroom = max(MIN_HEADROOM, int(soft * HEADROOM_SHARE))
    return max(1, soft - headroom)


class ConnectionCaps:
    """Open connections by peer address and on the node, against their caps."""

    def __init__(self, per_address: int, on_node: int, trusted_proxies: Iterable[str]) -> None:
        self.per_address = per_address
        self.on_node = on_node
        self._proxies = ClientAddresses(trusted_proxies)
        self._open: Counter[str] = Counter()
        self.total = 0

    def admit(self, address: str) -> str | None:
        """Count a new connection from `address`; or the cap it would pass (not counted)."""
        if self.total >= self.on_node:
            return ON_NODE
        if self.per_address and self._open[address] >= self.per_address:
            if not self._proxies.is_trusted(address):
                return PER_ADDRESS
        self._open[address] += 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]


def peer_address(transport: asyncio.BaseTransport) -> str:
    """The peer's IP address as text, as the per-address limits key it."""
    peername = transport.get_extra_info("peername")
    host = peername[0] if isinstance(peername, tuple) and peername else None
    return normalized(host) if isinstance(host, str) else UNKNOWN


class Listener:
    """aiohttp serving `app` with the deadlines and caps of `settings`.

    `setup()` runs the application's startup; `listen(host, port)` opens the socket;
    `stop_accepting()` closes it; `close()` also ends the connections and cleans up
    the application (so does the runner's own `cleanup()`)."""

    def __init__(
        self,
        app: web.Application,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.header_timeout = settings.header_timeout
        self.caps = ConnectionCaps(
            settings.max_connections_per_address,
            node_connection_cap(settings.max_connections),
            settings.trusted_proxies,
        )
        self.connections: dict[asyncio.BaseProtocol, GuardedConnection] = {}
        self._refusals: Counter[str] = Counter()
        self._last_refused = ""
        self._refusal_log: asyncio.TimerHandle | None = None
        self._socket: asyncio.Server | None = None
        self.port = 0  # the port listened on, once listening
        app.middlewares.insert(0, self._mark_requests)
        app.on_shutdown.insert(0, self._on_shutdown)
        self.runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=settings.keepalive_timeout,
        )

    async def setup(self) -> None:
        await self.runner.setup()

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: GuardedConnection(self), host, port, backlog=BACKLOG, reuse_address=True
        )
        self._socket = server
        self.port = int(server.sockets[0].getsockname()[1])
        log.info(
            "connection caps: %d open on the node, %s per address; header deadline %gs, "
            "keep-alive %gs",
            self.caps.on_node,
            self.caps.per_address or "no cap",
            self.header_timeout,
            self.settings.keepalive_timeout,
        )

    def stop_accepting(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def close(self) -> None:
        self.stop_accepting()
        await self.runner.cleanup()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # The runner's cleanup() ends the connections: no new one may come meanwhile.
        self.stop_accepting()
        if self._refusal_log is not None:
            self._refusal_log.cancel()
        self._log_refusals(again=False)

    def new_handler(self) -> asyncio.Protocol:
        server = self.runner.server
        assert server is not None, "setup() first"
        return server()

    def admitted(self) -> None:
        if self.metrics is not None:
            self.metrics.tcp_connections.set(self.caps.total)

    def released(self, address: str) -> None:
        self.caps.release(address)
        if self.metrics is not None:
            self.metrics.tcp_connections.set(self.caps.total)

    def refused(self, cap: str, address: str) -> None:
        if self.metrics is not None:
            self.metrics.tcp_refused.labels(cap).inc()
        self._refusals[cap] += 1
        self._last_refused = address
        if self._refusal_log is None:
            self._log_refusals()

    def headers_late(self) -> None:
        if self.metrics is not None:
            self.metrics.header_timeouts.inc()

    def _log_refusals(self, again: bool = True) -> None:
        """One line for the refusals since the last; `again`: look again in a while."""
        self._refusal_log = None
        if not self._refusals:
            return
        counts = []
        if self._refusals[PER_ADDRESS]:
            counts.append(f"{self._refusals[PER_ADDRESS]} over the per-address cap")
        if self._refusals[ON_NODE]:
            counts.append(f"{self._refusals[ON_NODE]} over the node's cap")
        log.warning(
            "refused TCP connections: %s (caps: %d per address, %d on the node); the last from %s",
            " and ".join(counts),
            self.caps.per_address,
            self.caps.on_node,
            self._last_refused,
        )
        self._refusals.clear()
        if again:
            loop = asyncio.get_running_loop()
            self._refusal_log = loop.call_later(REFUSAL_LOG_SECONDS, self._log_refusals)

    @web.middleware
    async def _mark_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = self.connections.get(request.protocol)
        if connection is None:
            return await handler(request)
        connection.request_started()
        try:
            return await handler(request)
        finally:
            connection.request_finished()


class GuardedConnection(asyncio.Protocol):
    """One accepted TCP connection: admitted under the caps or closed at once, and
    closed if a request's headers are late; the rest is aiohttp's protocol's."""

    __slots__ = (
        "_deadline",
        "_in_request",
        "_inner",
        "_listener",
        "_served",
        "_transport",
        "address",
    )

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False
        self._served = False
        self.address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        listener = self._listener
        self.address = peer_address(transport)
        refused = listener.caps.admit(self.address)
        if refused is not None:
            transport.abort()
            listener.refused(refused, self.address)
            return
        self._transport = transport
        self._inner = inner = listener.new_handler()
        listener.connections[inner] = self
        listener.admitted()
        self._start_deadline()
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        # Between requests, the first byte of the next one starts its deadline. Bytes
        # that come while a handler runs are its body, or a request pipelined behind
        # it: that one has aiohttp's keep-alive deadline once the handler is done.
        if self._deadline is None and not self._in_request:
            self._start_deadline()
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        inner, self._inner, self._transport = self._inner, None, None
        if inner is None:
            return  # refused: never counted
        self._listener.connections.pop(inner, None)
        self._listener.released(self.address)
        inner.connection_lost(exc)

    def request_started(self) -> None:
        """The headers of a request are in: its handler starts."""
        self._stop_deadline()
        self._in_request = True
        self._served = True

    def request_finished(self) -> None:
        self._in_request = False

    def _start_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._listener.header_timeout, self._headers_late)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._listener.headers_late()
        # A 408 only where no answer can be on its way already: before any request.
        if not self._served and transport.get_write_buffer_size() == 0:
            transport.write(REQUEST_TIMEOUT)
            transport.close()
        else:
            transport.abort()
