"""The websocket session loops of messenger/transport/overrides/engineio_socket.py.

Liveness: frames are read without a timeout per read, with one watchdog per session
instead, so a client that stops answering pings must still be cut once
ping_interval + ping_timeout pass with nothing heard, and one that answers them kept.

Order (G4): a packet is written at once while nothing is queued, and queued behind
the others otherwise; a client that stops reading for a while and reads again must
still get every event once, in cursor order, across the switch between the two.

CI runs these with the library's loops too (MESSENGER_TEST_LEAN_WEBSOCKET=0): the
same liveness and order hold there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from messenger.config import MIB, Settings
from messenger.transport.overrides.engineio_socket import DIRECT_WRITE_LIMIT, websocket_frame
from tests.faults.tools import RawSocket
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

PING, PONG = "2", "3"
# Seconds: the server pings every INTERVAL, and a session silent for
# INTERVAL + TIMEOUT is cut.
INTERVAL, TIMEOUT = 0.2, 0.2


@pytest.fixture
async def raw_session(server: RunningServer) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """An Engine.IO session opened straight on a websocket, with short ping timings."""
    eio = server.node.sio.eio
    eio.ping_interval, eio.ping_timeout = INTERVAL, TIMEOUT
    async with raw_engineio_session(server.url) as ws:
        yield ws


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
    if not server.settings.lean_websocket:
        # python-engineio's loops close the websocket before the session, which the
        # server forgets once its handler returns: a moment after the client sees it.
        for _ in range(50):
            if not server.node.sio.eio.sockets:
                break
            await asyncio.sleep(0.02)
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


@pytest.mark.parametrize("backend", ["sqlite"])  # the transport's heartbeat, not the store's
async def test_the_heartbeat_follows_the_settings(settings: Settings) -> None:
    """MESSENGER_PING_INTERVAL / _TIMEOUT: announced in the handshake, and the PINGs
    come at that interval (each after the PONG before it), not the library's 25 s."""
    server = await start_server(settings.replace(ping_interval=1.0, ping_timeout=2.0))
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(websocket_url(server.url))
            opened = await ws.receive(timeout=5)
            announced = json.loads(opened.data[1:])
            assert (announced["pingInterval"], announced["pingTimeout"]) == (1000, 2000)
            loop = asyncio.get_running_loop()
            started = loop.time()
            gaps = []
            for _ in range(3):
                frame = await ws.receive(timeout=5)
                assert frame.type == aiohttp.WSMsgType.TEXT and frame.data == PING, frame
                gaps.append(loop.time() - started)
                started = loop.time()
                await ws.send_str(PONG)
            # Each PING an interval after the last PONG, up to the wheel's tick later.
            assert all(0.9 <= gap <= 1.0 + 0.1 + 0.5 for gap in gaps), gaps
            await ws.close()
    finally:
        await server.stop()


async def test_a_compressed_session_gets_every_packet_through_its_writer(
    server: RunningServer,
) -> None:
    """permessage-deflate (as browsers ask for it): frames are deflated by aiohttp, so
    every packet goes through the queue and a writer started for it; the OPEN, a
    CONNECT's answer and the PINGs all arrive, in order."""
    eio = server.node.sio.eio
    eio.ping_interval, eio.ping_timeout = INTERVAL, TIMEOUT
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(websocket_url(server.url), compress=15)
        assert ws.compress == 15  # the server took the extension
        opened = await ws.receive(timeout=5)
        assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{"), opened
        await ws.send_str('40{"token":"not a token"}')
        refused = await ws.receive(timeout=5)
        assert refused.data.startswith("44"), refused
        for _ in range(3):
            frame = await ws.receive(timeout=5)
            assert frame.type == aiohttp.WSMsgType.TEXT and frame.data == PING, frame
            await ws.send_str(PONG)
        await ws.close()


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_websocket_frames_carry_their_length_as_rfc_6455_says(size: int) -> None:
    """Short lengths in the second byte, up to 65,535 in the next two (126), longer in
    the next eight (127); FIN set, no mask; text for a str, binary for bytes."""
    for payload, opcode in (("x" * size, 0x1), (b"\x00" * size, 0x2)):
        frame = websocket_frame(payload)
        assert frame[0] == 0x80 | opcode
        assert frame[1] & 0x80 == 0  # a server's frames are not masked
        marker = frame[1]
        if size < 126:
            assert marker == size
            header = 2
        elif size < 65_536:
            assert marker == 126 and int.from_bytes(frame[2:4], "big") == size
            header = 4
        else:
            assert marker == 127 and int.from_bytes(frame[2:10], "big") == size
            header = 10
        assert frame[header:] == (payload.encode() if isinstance(payload, str) else payload)


@pytest.mark.parametrize("backend", ["sqlite"])  # the transport's order, not the store's
async def test_a_reader_that_pauses_gets_every_event_once_in_order(settings: Settings) -> None:
    # A byte budget well past the backlog: this is about order, not about when a
    # client that stopped reading is dropped (tests/test_hostile_engineio.py).
    server = await start_server(settings.replace(connection_buffer=64 * MIB))
    try:
        await pause_and_read(server, Http(server.url))
    finally:
        await server.stop()


async def pause_and_read(server: RunningServer, http: Http) -> None:
    reader, writer = await accounts(http, "pauser", "flooder")
    paused = RawSocket(port_of(server.url))  # a tiny receive buffer: the server backs up
    start = (await paused.connect(reader.token))["cursor"]
    sender = await Device(server.url).connect(writer.token)
    body = "x" * 2000

    async def send(first: int, last: int) -> None:
        for chunk in range(first, last, 100):
            answers = await asyncio.gather(
                *(
                    sender.send(reader.username, body, f"pause-{n}")
                    for n in range(chunk, min(chunk + 100, last))
                )
            )
            assert all(answer["ok"] for answer in answers)

    # ~7 MB while the client reads nothing: past what the kernel buffers for a
    # loopback connection (it grows a send buffer up to 4 MB here) and past
    # DIRECT_WRITE_LIMIT, so packets queue.
    backed_up, more = 3500, 1000
    await send(0, backed_up)
    assert DIRECT_WRITE_LIMIT < backed_up * len(body)
    sockets = server.node.sio.eio.sockets.values()
    assert any(socket.queue.qsize() for socket in sockets), "nothing was queued"

    cursors: list[int] = []

    async def read(count: int) -> None:
        while len(cursors) < count:
            frame = await paused.receive()
            if frame.startswith("42"):
                name, data = json.loads(frame[2:])
                if name == "new_message":
                    cursors.append(data["cursor"])

    # It reads again while more arrive: the queue drains as new packets come, and
    # none of them may overtake a queued one.
    total = backed_up + more
    await asyncio.wait_for(asyncio.gather(read(total), send(backed_up, total)), 60)
    assert cursors == list(range(start + 1, start + total + 1))
    paused.close()
    await sender.disconnect()
