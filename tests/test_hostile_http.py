"""The listening socket and the process under a hostile client (issue 20, items 5, 9).

- Slowloris: connections that never finish their request line and headers, or that
  drip them, are closed at the header deadline, on a first request and on a
  keep-alive connection's next one; idle keep-alive connections at theirs. Requests
  past their headers (a websocket, a long poll) are not cut.
- Open TCP connections are capped per peer address (a trusted proxy only on the node)
  and on the node; the ones over a cap are closed as they are accepted, and the
  server's descriptors stay bounded. `messenger serve` raises its descriptor limit.
- No token reaches a log line, not even from aiohttp's report of a malformed header.
- A SIGBUS (SQLite's -shm file truncated under the server) is reported on stderr.

Everything runs against real servers on loopback sockets; descriptor counts are read
from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from messenger.config import Settings
from messenger.logs import install_redaction, redact
from messenger.transport.listener import MIN_HEADROOM, node_connection_cap
from tests.processes import ServeGroup, ServeProcess
from tests.support import Http, RunningServer, port_of, raw_engineio_session, start_server

DEADLINE = 0.5  # seconds: the header and keep-alive deadlines the tests set
WITHIN = 10.0  # seconds a connection may take to be closed (a generous bound)
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
COMPLETE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
POLL = "/socket.io/?EIO=4&transport=polling"
LISTENER_LOG = "messenger.transport.listener"


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the transport is under test, not the store


# --- helpers -------------------------------------------------------------------------


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_raw(url: str, source: str = "127.0.0.1") -> Connection:
    return await asyncio.open_connection("127.0.0.1", port_of(url), local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader, within: float = WITHIN) -> bytes:
    """What the server sent before it closed the connection; fails if it does not
    close it within `within` seconds."""
    received = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(4096):
                received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {within}s (received {received[:80]!r})") from None
    return received


async def still_open(reader: asyncio.StreamReader, wait: float = 0.3) -> bool:
    """True if the server neither closed nor answered the connection in `wait` s."""
    try:
        await asyncio.wait_for(reader.read(1), wait)
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False
    return False


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WITHIN)
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return status, body


async def drip(writer: asyncio.StreamWriter, every: float = 0.1) -> None:
    """Send a header a byte at a time, forever (until the connection is gone)."""
    with contextlib.suppress(ConnectionError, OSError):
        while True:
            for byte in b"X-Slow: yes\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(every)


def close_all(connections: list[Connection]) -> None:
    for _reader, writer in connections:
        writer.close()


def server_sockets(port: int, pid: int | str = "self") -> int:
    """Descriptors of process `pid` that are TCP sockets on local port `port`, other
    than the listening one: the server's ends of its connections."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] != "0A":  # 0A: LISTEN
                    inodes.add(fields[9])
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
    return count


def socket_descriptors(pid: int) -> int:
    """All socket descriptors of process `pid`."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def metric(server: RunningServer, name: str, **labels: str) -> float:
    """A sample of an in-process server's metrics (read without a connection of its
    own, which a cap under test might refuse)."""
    return server.node.metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningServer]:
    server = await start_server(settings)
    try:
        yield server
    finally:
        await server.stop()


# --- slowloris and keep-alive -------------------------------------------------------


async def test_slowloris_connections_are_closed_at_the_header_deadline(
    settings: Settings,
) -> None:
    """Connections that send part of a request line and headers, or drip a header a
    byte at a time (which must not restart the deadline), are closed within a few
    seconds; a normal request, a websocket and a long poll meanwhile are served."""
    quick = settings.replace(header_timeout=DEADLINE, keepalive_timeout=DEADLINE)
    async with running(quick) as server:
        silent = [await open_raw(server.url) for _ in range(20)]
        dripping = [await open_raw(server.url) for _ in range(20)]
        for _reader, writer in silent + dripping:
            writer.write(PARTIAL)
        drips = [asyncio.create_task(drip(writer)) for _reader, writer in dripping]
        try:
            async with raw_engineio_session(server.url) as ws, aiohttp.ClientSession() as http:
                async with http.get(server.url + POLL) as response:
                    sid = json.loads((await response.text())[1:])["sid"]

                async def long_poll() -> aiohttp.ClientResponse:
                    # Held by the server until it has something to say.
                    timeout = aiohttp.ClientTimeout(20)
                    return await http.get(f"{server.url}{POLL}&sid={sid}", timeout=timeout)

                poll = asyncio.create_task(long_poll())

                answers = await asyncio.gather(*(closed_by_server(r) for r, _w in silent))
                await asyncio.gather(*(closed_by_server(r) for r, _w in dripping))
                assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
                assert (await Http(server.url).request("GET", "/healthz"))[0] == 200

                # Past their headers, both outlive the deadlines.
                await asyncio.sleep(4 * DEADLINE)
                await ws.send_str("40")  # a namespace CONNECT without a token
                frame = await ws.receive(timeout=WITHIN)
                assert frame.type == aiohttp.WSMsgType.TEXT and frame.data.startswith("44")
                assert not poll.done()
                session = Http(server.url)
                status, _ = await session.request("POST", f"{POLL}&sid={sid}", data="40")
                assert status == 200
                async with await asyncio.wait_for(poll, WITHIN) as polled:
                    assert polled.status == 200
                    assert "44" in await polled.text()
                await session.request("POST", f"{POLL}&sid={sid}", data="1")  # CLOSE
        finally:
            for task in drips:
                task.cancel()
            close_all(silent + dripping)
        assert metric(server, "messenger_header_timeouts_total") >= 40


async def test_slowloris_on_a_keep_alive_connections_next_request(settings: Settings) -> None:
    """After a request is answered, the next one on the same connection has the same
    deadline from its first byte, and a drip does not restart it."""
    async with running(settings.replace(header_timeout=DEADLINE)) as server:
        connections = [await open_raw(server.url) for _ in range(10)]
        for reader, writer in connections:
            writer.write(COMPLETE)
            assert (await read_response(reader))[0] == 200
            writer.write(PARTIAL)
        drips = [asyncio.create_task(drip(writer)) for _reader, writer in connections]
        try:
            await asyncio.gather(*(closed_by_server(reader) for reader, _w in connections))
        finally:
            for task in drips:
                task.cancel()
            close_all(connections)


async def test_an_idle_keep_alive_connection_is_closed(settings: Settings) -> None:
    async with running(settings.replace(keepalive_timeout=DEADLINE, header_timeout=60)) as server:
        reader, writer = await open_raw(server.url)
        writer.write(COMPLETE)
        assert (await read_response(reader))[0] == 200
        try:
            assert await closed_by_server(reader) == b""
        finally:
            writer.close()


# --- connection caps ----------------------------------------------------------------


async def test_connections_over_the_per_address_cap_are_closed_at_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """From one address, connections past the cap are closed as they are accepted;
    the server holds no more descriptors than the cap, logs the refusals in one line,
    and counts them. Another address is not affected; closed ones free their place."""
    caplog.set_level(logging.INFO, LISTENER_LOG)
    cap, extra = 5, 200
    async with running(settings.replace(max_connections_per_address=cap)) as server:
        port = port_of(server.url)
        admitted = [await open_raw(server.url) for _ in range(cap)]
        refused = [await open_raw(server.url) for _ in range(extra)]
        other = await open_raw(server.url, source="127.0.0.2")
        try:
            assert all(
                a == b""
                for a in await asyncio.gather(*(closed_by_server(r, within=5) for r, _w in refused))
            )
            assert server_sockets(port) <= cap + 1  # the other address's
            for reader, writer in [*admitted, other]:
                writer.write(COMPLETE)
                assert (await read_response(reader))[0] == 200
            close_all(admitted[:2])
            await asyncio.sleep(0.2)
            again = [await open_raw(server.url) for _ in range(2)]
            for reader, writer in again:
                writer.write(COMPLETE)
                assert (await read_response(reader))[0] == 200
            close_all(again)
        finally:
            close_all(admitted + refused + [other])
        refused_total = "messenger_tcp_connections_refused_total"
        assert metric(server, refused_total, cap="per_address") == extra
    # One line at the first refusal, one with the rest (at the latest on shutdown).
    lines = [r.message for r in caplog.records if r.name == LISTENER_LOG and "refused" in r.message]
    assert len(lines) == 2, lines
    assert ": 1 over the per-address cap" in lines[0], lines
    assert f": {extra - 1} over the per-address cap" in lines[1], lines


async def test_a_trusted_proxy_is_capped_on_the_node_only(settings: Settings) -> None:
    cap = 3
    proxy = settings.replace(max_connections_per_address=cap, trusted_proxies=("127.0.0.1",))
    async with running(proxy) as server:
        through_proxy = [await open_raw(server.url) for _ in range(cap * 4)]
        direct = [await open_raw(server.url, source="127.0.0.2") for _ in range(cap + 2)]
        try:
            for reader, writer in through_proxy + direct[:cap]:
                writer.write(COMPLETE)
                assert (await read_response(reader))[0] == 200
            for reader, _writer in direct[cap:]:
                assert await closed_by_server(reader, within=5) == b""
        finally:
            close_all(through_proxy + direct)


async def test_connections_over_the_node_cap_are_closed_at_once(settings: Settings) -> None:
    cap = 6
    node = settings.replace(max_connections=cap, max_connections_per_address=0)
    async with running(node) as server:
        sources = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        admitted = [await open_raw(server.url, sources[n % 3]) for n in range(cap)]
        refused = [await open_raw(server.url, sources[n % 3]) for n in range(20)]
        try:
            for reader, _writer in refused:
                assert await closed_by_server(reader, within=5) == b""
            assert server_sockets(port_of(server.url)) <= cap
            assert all(await asyncio.gather(*(still_open(r) for r, _w in admitted)))
            close_all(admitted)
            await asyncio.sleep(0.2)
            assert (await Http(server.url).request("GET", "/healthz"))[0] == 200
            assert metric(server, "messenger_tcp_connections_refused_total", cap="node") == 20
        finally:
            close_all(admitted + refused)


def test_the_node_cap_leaves_headroom_below_the_descriptor_limit() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert node_connection_cap(0) == soft - max(MIN_HEADROOM, soft // 10)
    assert node_connection_cap(123) == 123


# --- secrets in logs ----------------------------------------------------------------


def malformed_header_request(token: str) -> bytes:
    """A request whose Authorization line has a control character after the token:
    aiohttp refuses it and logs the line it could not parse."""
    return (
        b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token.encode()
        + b"\x01tail\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("Authorization: Bearer S3CRET'x", "Authorization: "),
        ("headers {'Authorization': 'Bearer S3CRET'}", "headers {'Authorization': "),
        ("GET /socket.io/?EIO=4&token=S3CRET&transport=polling", "&transport=polling"),
        ('{"username": "ann", "password": "two S3CRET \\" words"}', '"username": "ann"'),
        ("{'new_password': 'S3CRET', 'token_id': 7}", "'token_id': 7"),
        ("postgresql://messenger:S3CRET@db/messenger", "@db/messenger"),
    ],
)
def test_redact_hides_each_kind_of_secret(line: str, kept: str) -> None:
    redacted = redact(line)
    assert "S3CRET" not in redacted and kept in redacted, redacted


@pytest.fixture
def redaction() -> Iterator[None]:
    """Records redacted as `configure_logging` sets up for `messenger serve`."""
    previous = logging.getLogRecordFactory()
    install_redaction()
    yield
    logging.setLogRecordFactory(previous)


async def test_a_malformed_header_logs_no_token(
    server: RunningServer, http: Http, redaction: None, caplog: pytest.LogCaptureFixture
) -> None:
    account = await http.account()
    caplog.set_level(logging.DEBUG, "aiohttp")
    reader, writer = await open_raw(server.url)
    writer.write(malformed_header_request(account.token))
    status, _body = await read_response(reader)
    writer.close()
    assert status == 400
    logged = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert logged, "aiohttp logged nothing: the test would prove nothing"
    assert account.token not in caplog.text
    for record in caplog.records:
        assert account.token not in record.getMessage()
        assert account.token not in (record.exc_text or "")


# --- messenger serve ----------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"


@contextlib.contextmanager
def soft_descriptor_limit(limit: int) -> Iterator[int]:
    """Lower this process's soft descriptor limit (children inherit it); yields the
    hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_serve_raises_its_descriptor_limit_and_caps_connections(
    processes: ServeGroup, sqlite_file: str
) -> None:
    cap = 5
    serve = processes(sqlite_file, env={"MESSENGER_MAX_CONNECTIONS_PER_ADDRESS": str(cap)})
    with soft_descriptor_limit(1024) as hard:
        await serve.start()
    if hard > 1024:
        assert f"soft limit raised from 1024 to {hard}" in serve.output()
    headroom = max(MIN_HEADROOM, hard // 10)
    assert f"connection caps: {hard - headroom} open on the node, {cap} per address" in (
        serve.output()
    )

    before = socket_descriptors(serve.pid)
    connections = [await open_raw(serve.url) for _ in range(100)]
    try:
        await asyncio.gather(*(closed_by_server(r, within=5) for r, _w in connections[cap:]))
        assert socket_descriptors(serve.pid) - before <= cap
    finally:
        close_all(connections)


async def test_serve_logs_no_token_of_a_malformed_header(
    processes: ServeGroup, sqlite_file: str
) -> None:
    serve = await processes(sqlite_file).start()
    account = await Http(serve.url).account()
    reader, writer = await open_raw(serve.url)
    writer.write(malformed_header_request(account.token))
    assert (await read_response(reader))[0] == 400
    writer.close()
    for _ in range(int(WITHIN / 0.05)):  # until the line is in the log file
        if "Error handling request" in serve.output():
            break
        await asyncio.sleep(0.05)
    output = serve.output()
    assert "Error handling request" in output, output
    assert account.token not in output
    assert "[redacted]" in output


async def test_a_sigbus_from_a_truncated_shm_file_is_reported(
    processes: ServeGroup, tmp_path: Path, sqlite_file: str
) -> None:
    """SQLite maps its WAL index, the -shm file, into memory: truncated under a
    running server (a careless cleanup, `: > file`), the next transaction touches a
    page past the file's end and the kernel kills the process with SIGBUS. No log
    line could say why; the fault handler now writes the signal and the stacks."""
    serve: ServeProcess = await processes(sqlite_file).start()
    http = Http(serve.url)
    await http.account()
    os.truncate(tmp_path / "serve.db-shm", 0)
    with contextlib.suppress(aiohttp.ClientError):
        await http.register("after@example.com")
    code = await serve.wait_exit(WITHIN)
    assert code == -signal.SIGBUS
    assert "Fatal Python error: Bus error" in serve.output()
