"""Engine.IO sessions left without a connection to the namespace are closed.

python-socketio keeps an Engine.IO session for as long as its client answers pings,
connected to a namespace or not: anyone could hold sessions open without a token,
and a logged-out client that ignores its DISCONNECT would keep its own. messenger
closes a session that is not connected `connect_timeout` seconds after it opened
(a refused CONNECT does not restart the count) or after its connection ended, as the
reference Socket.IO server does (`connectTimeout`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from messenger.config import Settings
from tests.support import Http, RunningServer, raw_engineio_session, start_server

TIMEOUT = 0.3  # seconds: the servers' connect timeout in these tests
PING, PONG, CLOSE = "2", "3", "1"
POLL = "/socket.io/?EIO=4&transport=polling"
RECORD_SEPARATOR = "\x1e"  # between the packets of a long-poll answer
CONNECT, DISCONNECT, CONNECT_ERROR = "40", "41", "44"

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the transport, not the store


@pytest.fixture
async def quick_server(settings: Settings) -> AsyncIterator[RunningServer]:
    running = await start_server(settings.replace(connect_timeout=TIMEOUT))
    yield running
    await running.stop()


@pytest.fixture
async def ws(quick_server: RunningServer) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with raw_engineio_session(quick_server.url) as socket:
        yield socket


async def connect(ws: aiohttp.ClientWebSocketResponse, token: str) -> str | None:
    """Send a namespace CONNECT; the answer's packet type ("40" or "44"), or None if
    the session was closed instead."""
    try:
        await ws.send_str(CONNECT + json.dumps({"token": token}))
    except ConnectionResetError:
        return None
    while True:
        frame = await ws.receive(timeout=5)
        if frame.type != aiohttp.WSMsgType.TEXT:
            return None
        if frame.data.startswith((CONNECT, CONNECT_ERROR)):
            return frame.data[:2]


async def frames_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """Every text frame until the server closes the websocket, pings answered (a test
    fails with a timeout if it stays open)."""
    frames: list[str] = []
    while True:
        frame = await ws.receive(timeout=10)
        if frame.type != aiohttp.WSMsgType.TEXT:
            return frames
        frames.append(frame.data)
        if frame.data == PING:
            await ws.send_str(PONG)


async def assert_open_for(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    """Frames may come (the backlog, `synced`), a close may not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            frame = await ws.receive(timeout=left)
        except TimeoutError:
            return
        assert frame.type == aiohttp.WSMsgType.TEXT, f"the session was closed: {frame}"
        if frame.data == PING:
            await ws.send_str(PONG)


async def test_a_session_that_never_connects_is_closed(
    quick_server: RunningServer, ws: aiohttp.ClientWebSocketResponse
) -> None:
    frames = await frames_until_closed(ws)
    assert frames[-1:] == [CLOSE], frames  # a graceful Engine.IO close, not a cut
    assert not quick_server.node.sio.eio.sockets


async def test_a_polling_session_that_never_connects_is_closed(
    quick_server: RunningServer,
) -> None:
    """Socket.IO clients open with long polling: there the CLOSE answers a poll, and
    the session is gone after it."""
    async with aiohttp.ClientSession() as http:
        async with http.get(quick_server.url + POLL) as response:
            opened = await response.text()
        assert opened.startswith("0{"), opened
        session = f"{quick_server.url}{POLL}&sid={json.loads(opened[1:])['sid']}"
        async with http.get(session, timeout=aiohttp.ClientTimeout(total=10)) as response:
            assert CLOSE in (await response.text()).split(RECORD_SEPARATOR)
        async with http.get(session) as response:
            assert response.status == 400  # an unknown session
    assert not quick_server.node.sio.eio.sockets


async def test_a_refused_session_is_closed(
    quick_server: RunningServer, ws: aiohttp.ClientWebSocketResponse
) -> None:
    assert await connect(ws, "not-a-token") == CONNECT_ERROR
    assert (await frames_until_closed(ws))[-1:] == [CLOSE]
    assert not quick_server.node.sio.eio.sockets


async def test_trying_bad_tokens_does_not_keep_a_session(
    quick_server: RunningServer, ws: aiohttp.ClientWebSocketResponse
) -> None:
    """A refused CONNECT does not restart the count: a client that keeps trying is
    closed all the same, well before the tries run out."""
    tries = 40  # one every half timeout: twenty timeouts in all
    for _ in range(tries):
        answer = await connect(ws, "not-a-token")
        if answer is None:
            break
        assert answer == CONNECT_ERROR
        await asyncio.sleep(TIMEOUT / 2)
    else:
        raise AssertionError(f"still open after {tries} refused tries")
    assert not quick_server.node.sio.eio.sockets


async def test_a_connected_session_stays_after_a_refused_try(
    quick_server: RunningServer, ws: aiohttp.ClientWebSocketResponse
) -> None:
    """A client may try CONNECT again on the same session, as Socket.IO clients do
    with new credentials; once connected, the timeout no longer applies."""
    ann = await Http(quick_server.url).account("ann")
    assert await connect(ws, "not-a-token") == CONNECT_ERROR
    assert await connect(ws, ann.token) == CONNECT
    await assert_open_for(ws, 5 * TIMEOUT)
    assert len(quick_server.node.sio.eio.sockets) == 1


async def test_logout_closes_the_session_after_its_disconnect(
    quick_server: RunningServer, ws: aiohttp.ClientWebSocketResponse
) -> None:
    """The server's DISCONNECT comes first, so that the client knows why, then the
    session closes, even for a client that keeps answering pings."""
    http = Http(quick_server.url)
    ann = await http.account("ann")
    assert await connect(ws, ann.token) == CONNECT
    status, _ = await http.request("DELETE", "/api/v1/sessions/current", token=ann.token)
    assert status == 204
    frames = await frames_until_closed(ws)
    assert DISCONNECT in frames and frames[-1] == CLOSE, frames
    assert not quick_server.node.sio.eio.sockets
