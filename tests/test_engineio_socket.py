"""Engine.IO session liveness over a websocket (messenger/transport/engineio_socket.py
reads frames without a timeout per read, and keeps one watchdog per session instead):
a client that stops answering pings is cut once ping_interval + ping_timeout pass
with nothing heard from it, and a client that answers them is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support import RunningServer

WS_PATH = "/socket.io/?EIO=4&transport=websocket"
PING, PONG = "2", "3"
# Seconds: the server pings every INTERVAL, and a session silent for
# INTERVAL + TIMEOUT is cut.
INTERVAL, TIMEOUT = 0.2, 0.2


@pytest.fixture
async def raw_session(server: RunningServer) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """An Engine.IO session opened straight on a websocket, with short ping timings."""
    eio = server.node.sio.eio
    eio.ping_interval, eio.ping_timeout = INTERVAL, TIMEOUT
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http://", "ws://") + WS_PATH)
        opened = await ws.receive(timeout=5)
        assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{"), opened
        yield ws
        await ws.close()


async def test_a_client_that_stops_answering_pings_is_cut(
    server: RunningServer, raw_session: aiohttp.ClientWebSocketResponse
) -> None:
    pings = 0
    while True:
        frame = await raw_session.receive(timeout=5)  # fails the test if never cut
        if frame.type != aiohttp.WSMsgType.TEXT:
            break
        assert frame.data == PING, frame
        pings += 1
    assert frame.type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    ), frame
    assert pings >= 1  # it was pinged, and said nothing
    assert not server.node.sio.eio.sockets  # the server let the session go


async def test_a_client_that_answers_pings_is_kept(
    server: RunningServer, raw_session: aiohttp.ClientWebSocketResponse
) -> None:
    idle_windows = 5
    pings = 0
    while pings < idle_windows * 2:  # one ping per INTERVAL: five idle windows
        frame = await raw_session.receive(timeout=5)
        assert frame.type == aiohttp.WSMsgType.TEXT and frame.data == PING, frame
        await raw_session.send_str(PONG)
        pings += 1
    assert len(server.node.sio.eio.sockets) == 1
