"""Hostile clients at the Engine.IO layer (issue 20, items 1-3 and 6, and issue 21's
bad websocket frame), against a real server in this process.

- Sessions without a connection to the namespace are capped per client address and
  on the node: handshakes past a cap are refused before a session is made, so
  thousands of them from one machine cost the node next to nothing. Behind a
  trusted proxy the address is `X-Forwarded-For`'s; from anyone else that header is
  ignored.
- Each connection has one byte budget for everything queued for it: a client that
  never reads is dropped once pushes or answers to its own requests pass it, on a
  websocket and on long polling, and the node's memory stays flat.
- A frame that does not decode closes its connection, with one line in the log and
  no traceback.

The server runs in the test's process, so its memory is this process's VmRSS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from messenger.config import KIB, Settings
from messenger.transport.overrides.guarded_socket import GuardedSocket
from tests.faults.tools import RawSocket, rss_kb
from tests.support import (
    Device,
    Http,
    RunningServer,
    accounts,
    port_of,
    raw_engineio_session,
    start_server,
    websocket_url,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the transport, not the store

POLL = "/socket.io/?EIO=4&transport=polling"
RECORD_SEPARATOR = "\x1e"
PROXY = "127.0.0.1"  # every test client connects from here
CAP = 5
# A connect timeout no test outlasts, so that no session closes on its own midway.
LONG_TIMEOUT = 120.0
# A body of the longest kind: 4,096 characters outside the BMP, each a surrogate
# pair of JSON escapes (12 bytes), about 49 KB per pushed message.
ASTRAL_BODY = "\U0001f600" * 4096
# Room for a reading client's bursts (a window of sends answered with the message,
# and each pushed back to it too), far below a stalled client's backlog.
BUDGET = 1024 * KIB
WINDOW = 4
# Pushes or answers of ~49 KB each sent to a client that reads none of them (~50 MB),
# and how much the node's memory may grow meanwhile: the budget, the kernel's
# buffers, and the flood's own working set (the sender's client runs here too).
FLOOD = 1000
FLOOD_GROWTH_KB = 28 * 1024


class Raw(RawSocket):
    """A hand-made websocket client (tests.faults.tools) that can also write any
    frame."""

    async def join(self, token: str) -> None:
        """CONNECT to the namespace, then read until the backlog is sent."""
        await self.send_text("40" + json.dumps({"token": token}))
        while not (await self.receive()).startswith('42["synced"'):
            pass

    def write_frame(self, payload: bytes) -> None:
        assert self.writer is not None
        self.writer.write(masked_frame(payload))


async def stalled_client(server: RunningServer, token: str) -> tuple[Raw, str]:
    """A client connected to the namespace (its backlog read) that from then on
    reads nothing, with a tiny receive buffer; returns it with its session's sid."""
    before = set(server.node.sio.eio.sockets)
    client = Raw(port_of(server.url))
    await client.connect(token)
    (sid,) = set(server.node.sio.eio.sockets) - before
    return client, sid


async def dropped(server: RunningServer, client: Raw, sid: str, seconds: float = 30) -> bool:
    """Whether the server lets the session go and closes the client's TCP connection."""
    for _ in range(int(seconds / 0.05)):
        if sid not in server.node.sio.eio.sockets and client.closed_by_peer():
            return True
        await asyncio.sleep(0.05)
    return False


async def send_many(sender: Device, to: str, count: int, tag: str) -> None:
    """`count` sends of the largest body, a few at a time, each answered `ok`."""
    window = asyncio.Semaphore(WINDOW)

    async def one(n: int) -> None:
        async with window:
            answer = await sender.send(to, ASTRAL_BODY, f"{tag}-{n}")
            assert answer["ok"], answer
            sender.events.clear()  # its copies of the flood are not the server's memory

    await asyncio.gather(*(one(n) for n in range(count)))


@pytest.fixture
async def running() -> AsyncIterator[list[RunningServer]]:
    """Servers a test starts with its own settings; stopped afterwards."""
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        for eio_sid in list(server.node.sio.eio.sockets):  # no 5 s grace for polls
            await server.node.sio.drop_session(eio_sid)
        await server.stop()


async def serve(running: list[RunningServer], settings: Settings) -> RunningServer:
    server = await start_server(settings)
    running.append(server)
    return server


async def poll_handshake(
    http: aiohttp.ClientSession, url: str, forwarded_for: str | None = None
) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with http.get(url + POLL, headers=headers) as response:
        return response.status, await response.text(), response.headers


async def ws_handshake_status(url: str, forwarded_for: str | None = None) -> int:
    """101 for a websocket session opened directly, else the refusal's status."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(websocket_url(url), headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


def assert_refused(status: int, body: str, headers: Any, expected: int) -> None:
    """A refused handshake: the status, the Engine.IO error body, a Retry-After."""
    assert status == expected, (status, body)
    error = json.loads(body)
    assert error["code"] == 4 and error["message"], error
    assert int(headers["Retry-After"]) >= 1


# -- sessions without a connection ------------------------------------------------------


async def test_handshakes_past_the_per_address_cap_are_refused(
    settings: Settings, running: list[RunningServer]
) -> None:
    """Behind a trusted proxy each client address has its own cap: one address past
    it is refused (429, polling and websocket alike) while another still opens."""
    server = await serve(
        running,
        settings.replace(
            trusted_proxies=(PROXY,),
            max_pending_sessions_per_address=CAP,
            max_pending_sessions=0,
            connect_timeout=LONG_TIMEOUT,
        ),
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(CAP):
            status, body, _ = await poll_handshake(http, server.url, "203.0.113.1")
            assert status == 200 and body.startswith("0{"), (status, body)
        assert_refused(*await poll_handshake(http, server.url, "203.0.113.1"), 429)
        assert await ws_handshake_status(server.url, "203.0.113.1") == 429
        # A client prepending a forged hop is still the proxy's last hop.
        forged = "198.51.100.7, 203.0.113.1"
        assert (await poll_handshake(http, server.url, forged))[0] == 429
        status, body, _ = await poll_handshake(http, server.url, "203.0.113.2")
        assert status == 200 and body.startswith("0{"), (status, body)
    assert server.node.sio.pending_sessions("203.0.113.1") == CAP
    assert server.node.sio.pending_sessions("203.0.113.2") == 1
    assert len(server.node.sio.eio.sockets) == CAP + 1


async def test_a_forged_forwarded_for_is_ignored_without_a_trusted_proxy(
    settings: Settings, running: list[RunningServer]
) -> None:
    """With no trusted proxy, X-Forwarded-For names nobody: every handshake counts
    against the TCP peer, whatever address it claims."""
    server = await serve(
        running,
        settings.replace(
            max_pending_sessions_per_address=CAP,
            max_pending_sessions=0,
            connect_timeout=LONG_TIMEOUT,
        ),
    )
    async with aiohttp.ClientSession() as http:
        for n in range(CAP):
            status, body, _ = await poll_handshake(http, server.url, f"203.0.113.{n + 1}")
            assert status == 200, (status, body)
        assert_refused(*await poll_handshake(http, server.url, "203.0.113.99"), 429)
    assert server.node.sio.pending_sessions(PROXY) == CAP


async def test_the_node_cap_counts_every_address(
    settings: Settings, running: list[RunningServer]
) -> None:
    """Past the node's cap a handshake is refused (503) from any address."""
    server = await serve(
        running,
        settings.replace(
            trusted_proxies=(PROXY,),
            max_pending_sessions_per_address=0,
            max_pending_sessions=CAP,
            connect_timeout=LONG_TIMEOUT,
        ),
    )
    async with aiohttp.ClientSession() as http:
        for n in range(CAP):
            assert (await poll_handshake(http, server.url, f"203.0.113.{n + 1}"))[0] == 200
        assert_refused(*await poll_handshake(http, server.url, "198.51.100.1"), 503)
        assert await ws_handshake_status(server.url, "198.51.100.2") == 503
    assert server.node.sio.pending_sessions() == CAP


async def test_a_session_stops_counting_while_connected(
    settings: Settings, running: list[RunningServer]
) -> None:
    """A session that connects to the namespace frees its place under the cap; when
    its connection ends (logout) it counts again, until it closes."""
    server = await serve(
        running,
        settings.replace(
            max_pending_sessions_per_address=2,
            max_pending_sessions=0,
            connect_timeout=LONG_TIMEOUT,
        ),
    )
    http = Http(server.url)
    ann = await http.account("ann")
    sio = server.node.sio
    async with raw_engineio_session(server.url) as first, raw_engineio_session(server.url):
        assert sio.pending_sessions(PROXY) == 2
        assert await ws_handshake_status(server.url) == 429
        await first.send_str("40" + json.dumps({"token": ann.token}))
        while not (await first.receive(timeout=5)).data.startswith("40"):
            pass
        assert sio.pending_sessions(PROXY) == 1
        async with raw_engineio_session(server.url):  # its place is free
            assert sio.pending_sessions(PROXY) == 2
        status, _ = await http.request("DELETE", "/api/v1/sessions/current", token=ann.token)
        assert status == 204
        for _ in range(100):  # the server's DISCONNECT is on its way
            if sio.pending_sessions(PROXY) == 2:
                break
            await asyncio.sleep(0.05)
        assert sio.pending_sessions(PROXY) == 2
    for _ in range(100):
        if sio.pending_sessions(PROXY) == 0:
            break
        await asyncio.sleep(0.05)
    assert sio.pending_sessions() == 0  # closed sessions count no more


async def test_thousands_of_handshakes_from_one_address_cost_next_to_nothing(
    settings: Settings, running: list[RunningServer]
) -> None:
    """Opening sessions as fast as it can, without ever connecting, one client gets
    the per-address cap (the default) and the node's memory stays flat. Before,
    each attempt made a session (~10 MB per thousand) that lived until its connect
    timeout."""
    server = await serve(running, settings.replace(connect_timeout=LONG_TIMEOUT))
    attempts = 4000
    cap = settings.max_pending_sessions_per_address
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as http:
        await poll_handshake(http, server.url)  # warm up: the first handshake's costs
        await server.node.sio.drop_session(next(iter(server.node.sio.eio.sockets)))
        await asyncio.sleep(0.1)
        before = rss_kb()

        async def one() -> None:
            status = (await poll_handshake(http, server.url))[0]
            statuses[status] = statuses.get(status, 0) + 1

        for _ in range(attempts // 200):
            await asyncio.gather(*(one() for _ in range(200)))
        grown_kb = rss_kb() - before
    print(f"\n[handshakes] {attempts} attempts: {statuses}, RSS +{grown_kb} kB")
    assert statuses == {200: cap, 429: attempts - cap}, statuses
    assert len(server.node.sio.eio.sockets) <= cap
    assert grown_kb < 16 * 1024, f"RSS grew {grown_kb} kB over {attempts} handshakes"


# -- one byte budget per connection ----------------------------------------------------


def budget_settings(settings: Settings) -> Settings:
    return settings.replace(connection_buffer=BUDGET, max_answer_bytes=64 * KIB)


async def test_a_websocket_that_never_reads_is_dropped_past_its_budget(
    settings: Settings, running: list[RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Pushes of the largest messages to a client that reads nothing: the kernel's
    buffers fill, then its queue, and once the budget is passed the connection is
    dropped (logged once), with the node's memory bounded. Before, its queue took
    every push (~49 KB each), for as long as the client answered pings."""
    caplog.set_level(logging.INFO)
    server = await serve(running, budget_settings(settings))
    http = Http(server.url)
    reader, writer = await accounts(http, "stalled", "pusher")
    sender = await Device(server.url).connect(writer.token)
    victim, victim_sid = await stalled_client(server, reader.token)
    before = rss_kb()
    await send_many(sender, reader.username, FLOOD, "flood")
    was_dropped = await dropped(server, victim, victim_sid)
    grown_kb = rss_kb() - before
    print(f"\n[pushes] {FLOOD} pushes to a client that reads nothing: RSS +{grown_kb} kB")
    assert was_dropped, "the stalled connection was kept"
    lines = [r for r in caplog.records if victim_sid in r.getMessage()]
    assert any("stopped reading" in r.getMessage() for r in lines), lines
    assert len([r for r in lines if "stopped reading" in r.getMessage()]) == 1
    assert grown_kb < FLOOD_GROWTH_KB, f"RSS grew {grown_kb} kB"
    assert sender.sio.connected  # the sender, who reads, is untouched
    victim.close()
    await sender.disconnect()


async def test_answers_a_client_never_reads_are_bounded_too(
    settings: Settings, running: list[RunningServer]
) -> None:
    """A client asking for large `sync` answers without reading them: its own
    answers count against the same budget, and past it the connection is dropped."""
    server = await serve(running, budget_settings(settings))
    http = Http(server.url)
    reader, writer = await accounts(http, "asker", "filler")
    sender = await Device(server.url).connect(writer.token)
    await send_many(sender, reader.username, 20, "fill")
    victim, victim_sid = await stalled_client(server, reader.token)
    before = rss_kb()
    for n in range(FLOOD):  # each answered with a ~49 KB message
        if victim.closed_by_peer():
            break
        try:
            await victim.send_text(f'42{n}["sync",{{"after":0,"limit":500}}]')
        except ConnectionError:
            break
    was_dropped = await dropped(server, victim, victim_sid)
    grown_kb = rss_kb() - before
    print(f"\n[answers] {n + 1} sync requests never read: RSS +{grown_kb} kB")
    assert was_dropped, "the connection kept its answers"
    assert grown_kb < FLOOD_GROWTH_KB, f"RSS grew {grown_kb} kB"
    victim.close()
    await sender.disconnect()


async def test_a_polling_client_that_never_polls_is_dropped_past_its_budget(
    settings: Settings, running: list[RunningServer]
) -> None:
    """On long polling, what waits for the next GET is the queue: a client that
    connects and never polls again is dropped once pushes pass its budget."""
    server = await serve(running, budget_settings(settings))
    http = Http(server.url)
    reader, writer = await accounts(http, "nopoll", "pusher")
    sender = await Device(server.url).connect(writer.token)
    async with aiohttp.ClientSession() as client:
        _, opened, _ = await poll_handshake(client, server.url)
        sid = json.loads(opened[1:])["sid"]
        session = f"{server.url}{POLL}&sid={sid}"
        async with client.post(session, data="40" + json.dumps({"token": reader.token})) as r:
            assert r.status == 200
        async with client.get(session) as r:  # the CONNECT's answer; then no more polls
            assert "40{" in await r.text()
        socket = server.node.sio.eio.sockets[sid]
        await send_many(sender, reader.username, 60, "poll")
        for _ in range(100):
            if sid not in server.node.sio.eio.sockets:
                break
            await asyncio.sleep(0.05)
        assert sid not in server.node.sio.eio.sockets, (
            f"kept with {socket.queue.qsize()} packets queued"
        )
    await sender.disconnect()


async def test_an_upgraded_session_that_never_reads_is_dropped_past_its_budget(
    settings: Settings, running: list[RunningServer]
) -> None:
    """A session that opened on long polling and moved to a websocket runs
    python-engineio's own websocket loops; its budget holds there too."""
    server = await serve(running, budget_settings(settings))
    http = Http(server.url)
    reader, writer = await accounts(http, "upgraded", "pusher")
    sender = await Device(server.url).connect(writer.token)
    async with aiohttp.ClientSession() as client:
        _, opened, _ = await poll_handshake(client, server.url)
    sid = json.loads(opened[1:])["sid"]
    victim = Raw(port_of(server.url))
    await victim.open(sid)
    await victim.join(reader.token)
    session = server.node.sio.eio.sockets[sid]
    assert isinstance(session, GuardedSocket) and session.upgraded
    await send_many(sender, reader.username, 300, "upgraded")  # ~15 MB
    assert await dropped(server, victim, sid), f"kept with {session.pending_bytes()} bytes pending"
    victim.close()
    await sender.disconnect()


async def test_pending_bytes_follow_what_the_client_has_not_read(
    settings: Settings, running: list[RunningServer]
) -> None:
    """The count goes up while a client pauses and back to nothing once it has read
    everything: it does not drift, so a client that keeps up is never dropped."""
    server = await serve(running, settings.replace(connection_buffer=16 * 1024 * KIB))
    http = Http(server.url)
    reader, writer = await accounts(http, "pauser", "pusher")
    sender = await Device(server.url).connect(writer.token)
    paused, sid = await stalled_client(server, reader.token)
    session = server.node.sio.eio.sockets[sid]
    assert isinstance(session, GuardedSocket)
    count = 150  # ~7 MB: past the kernel's buffers, so packets queue
    await send_many(sender, reader.username, count, "pause")
    assert session.pending_bytes() > 64 * KIB
    received = 0
    while received < count:
        frame = await asyncio.wait_for(paused.receive(), 30)
        if frame.startswith('42["new_message"'):
            received += 1
    for _ in range(100):
        if session.pending_bytes() == 0:
            break
        await asyncio.sleep(0.05)
    assert session.pending_bytes() == 0
    paused.close()
    await sender.disconnect()


# -- bad frames ---------------------------------------------------------------------------


def masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client's websocket frame (masked, as RFC 6455 requires), of any bytes."""
    mask = secrets.token_bytes(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", size)
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", size)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


BAD_FRAMES = {
    "empty": b"",
    "not a packet type": b"x",
    "unknown packet type": b"9",
    "a ping from the client": b"2",
    "bad base64": b"b!",
    "JSON nested past the decoder": b"4" + b"[" * 20_000,
    "invalid UTF-8": b"\xff\xfe",
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
@pytest.mark.parametrize("authed", [False, True])
async def test_a_bad_frame_closes_the_connection_without_a_traceback(
    settings: Settings,
    running: list[RunningServer],
    caplog: pytest.LogCaptureFixture,
    name: str,
    authed: bool,
) -> None:
    """Before or after auth, a frame that is no Engine.IO packet a client sends closes
    the connection, logged in one line at most and never with a traceback. Before,
    python-engineio's decode errors were logged with a traceback for every such
    frame and the connection read on. (Bad UTF-8 and bad base64 were already
    closed, by aiohttp and as a binary packet: pinned here all the same.)"""
    caplog.set_level(logging.INFO)
    server = await serve(running, settings)
    token = (await Http(server.url).account("frames")).token
    if authed:
        client, sid = await stalled_client(server, token)
    else:
        client = Raw(port_of(server.url))
        sid = await client.open()
    client.write_frame(BAD_FRAMES[name])
    closed = False
    try:
        while True:
            await asyncio.wait_for(client.receive(), 5)
    except (ConnectionError, asyncio.IncompleteReadError):
        closed = True
    except TimeoutError:
        pass
    assert closed, f"{name}: the connection stayed open"
    client.close()  # not waiting for the closing handshake
    for _ in range(100):
        if not server.node.sio.eio.sockets:
            break
        await asyncio.sleep(0.02)
    assert not server.node.sio.eio.sockets
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    about = [r for r in caplog.records if sid in r.getMessage()]
    assert len(about) <= 1, [r.getMessage() for r in about]  # one line at most


async def test_stray_upgrade_packets_are_not_answered(
    settings: Settings, running: list[RunningServer]
) -> None:
    """UPGRADE outside an upgrade means nothing (the reference ignores it);
    python-engineio answered each with a NOOP, so a flood of them queued as many
    answers as the client cared to send."""
    server = await serve(running, settings)
    async with raw_engineio_session(server.url) as ws:
        for _ in range(1000):
            await ws.send_str("5")
        answers = 0
        try:
            while True:
                frame = await ws.receive(timeout=1)
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                answers += frame.data == "6"
        except TimeoutError:
            pass
        assert answers == 0
        assert len(server.node.sio.eio.sockets) == 1  # and the session is fine
