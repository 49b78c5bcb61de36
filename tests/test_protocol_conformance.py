"""Engine.IO v4 and Socket.IO v5 as the official protocol test suites and the reference
Node server define them (the corrections in messenger/transport/overrides).

Raw HTTP long polling and raw websockets against a real server: what the suites
check (engine.io-protocol and socket.io-protocol, `test-suite/`), each where
python-engineio or python-socketio answers otherwise, plus what a real client sees
of it (python-socketio's polling client leaving at once). Short ping timings are set
on the running server where a test needs them, as the suites' servers are set up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from messenger.transport.overrides import engine_socket
from tests.support import Device, Http, RunningServer, raw_engineio_session

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the transport, not the store

ENDPOINT = "/socket.io/?EIO=4"
POLL = ENDPOINT + "&transport=polling"
RECORD_SEPARATOR = "\x1e"
CLOSE, PING, PONG, NOOP, UPGRADE = "1", "2", "3", "6", "5"
PROBE, PROBE_ANSWER = "2probe", "3probe"
CONNECT_ERROR = "44"
# A Socket.IO CONNECT with a token no server knows: answered with CONNECT_ERROR,
# which shows the packet was read.
BAD_CONNECT = '40{"token":"not-a-token"}'
# Seconds a request that must be answered at once may take on a loaded machine.
PROMPT = aiohttp.ClientTimeout(total=5)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def open_session(http: aiohttp.ClientSession, url: str) -> str:
    """A long-polling handshake; the session's polling URL."""
    async with http.get(url + POLL, timeout=PROMPT) as response:
        opened = await response.text()
    assert response.status == 200 and opened.startswith("0{"), opened
    return f"{url}{POLL}&sid={json.loads(opened[1:])['sid']}"


def sid_of(session: str) -> str:
    return session.rsplit("sid=", 1)[1]


def websocket_of(session: str) -> str:
    return session.replace("http://", "ws://").replace("transport=polling", "transport=websocket")


async def poll(http: aiohttp.ClientSession, session: str) -> tuple[int, str]:
    async with http.get(session, timeout=PROMPT) as response:
        return response.status, await response.text()


async def post(http: aiohttp.ClientSession, session: str, body: Any) -> tuple[int, str]:
    async with http.post(session, data=body, timeout=PROMPT) as response:
        return response.status, await response.text()


async def leave(http: aiohttp.ClientSession, session: str) -> None:
    """Close a polling session (else the server's shutdown waits for it)."""
    assert await post(http, session, CLOSE) == (200, "ok")


async def probe(http: aiohttp.ClientSession, session: str) -> aiohttp.ClientWebSocketResponse:
    """A websocket for a polling session, its probe answered: the upgrade waits for
    the client's UPGRADE packet."""
    ws = await http.ws_connect(websocket_of(session))
    await ws.send_str(PROBE)
    answer = await ws.receive(timeout=5)
    assert answer.data == PROBE_ANSWER, answer
    return ws


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.01)


def poll_waits(server: RunningServer, sid: str) -> Callable[[], bool]:
    """Whether a GET of session `sid` waits on the server: for its queue (an
    asyncio.Queue's waiting getters), whichever library version serves it."""

    def waits() -> bool:
        socket = server.node.sio.eio.sockets.get(sid)
        return socket is not None and bool(socket.queue._getters)

    return waits


async def assert_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The server closes the websocket (frames it sends first are let through)."""
    while True:
        frame = await ws.receive(timeout=5)
        if frame.type != aiohttp.WSMsgType.TEXT:
            assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frame
            return


# -- the HTTP requests ------------------------------------------------------------------


async def test_a_request_without_a_transport_is_refused(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio takes it for long polling."""
    async with client.get(server.url + ENDPOINT, timeout=PROMPT) as response:
        assert response.status == 400


async def test_other_methods_are_refused_with_400(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """405 before (aiohttp's, as only GET, POST and OPTIONS were routed)."""
    for method in ("PUT", "DELETE", "PATCH"):
        async with client.request(method, server.url + POLL, timeout=PROMPT) as response:
            assert response.status == 400, method
    session = await open_session(client, server.url)
    async with client.put(session, data=PONG, timeout=PROMPT) as response:
        assert response.status == 400
    await leave(client, session)


async def test_a_post_is_answered_ok(server: RunningServer, client: aiohttp.ClientSession) -> None:
    session = await open_session(client, server.url)
    assert await post(client, session, PONG) == (200, "ok")
    await leave(client, session)


async def test_the_handshake_gives_sub_second_intervals_in_milliseconds(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """The suites' settings: python-engineio announced int(0.3) * 1000 = 0."""
    eio = server.node.sio.eio
    eio.ping_interval, eio.ping_timeout = 0.3, 0.2
    async with client.get(server.url + POLL, timeout=PROMPT) as response:
        opened = json.loads((await response.text())[1:])
    assert (opened["pingInterval"], opened["pingTimeout"]) == (300, 200)
    assert opened["maxPayload"] == eio.max_http_buffer_size
    await leave(client, f"{server.url}{POLL}&sid={opened['sid']}")


# -- long polling -------------------------------------------------------------------------


async def test_a_bad_packet_in_a_post_closes_the_session(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio logged it and kept the session."""
    session = await open_session(client, server.url)
    assert (await post(client, session, "abc"))[0] == 400
    assert (await poll(client, session))[0] == 400
    assert sid_of(session) not in server.node.sio.eio.sockets


async def test_a_post_past_max_payload_is_refused_at_once(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """With no GET waiting, python-engineio's answer waited for one forever (its
    disconnect waits for the CLOSE packet to be taken); 413 as the reference, and
    the session is closed."""
    session = await open_session(client, server.url)
    too_long = "4" + "x" * server.node.sio.eio.max_http_buffer_size
    assert (await post(client, session, too_long))[0] == 413
    assert (await poll(client, session))[0] == 400


async def test_a_post_without_a_length_is_read_whole_and_bounded(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """A chunked body, sent in pieces: python-engineio read Content-Length bytes, so
    none of it; past max_http_buffer_size it is a 413 all the same."""

    async def pieces(*parts: str) -> AsyncIterator[bytes]:
        for part in parts:
            yield part.encode()
            await asyncio.sleep(0.05)

    session = await open_session(client, server.url)
    body = pieces(PONG + RECORD_SEPARATOR, BAD_CONNECT[:5], BAD_CONNECT[5:])
    assert (await post(client, session, body))[0] == 200
    status, answer = await poll(client, session)
    assert status == 200 and answer.startswith(CONNECT_ERROR), answer
    await leave(client, session)

    session = await open_session(client, server.url)
    chunk = "x" * 16384
    count = server.node.sio.eio.max_http_buffer_size // len(chunk) + 2
    assert (await post(client, session, pieces("4", *[chunk] * count)))[0] == 413
    assert (await poll(client, session))[0] == 400


async def test_a_post_may_carry_more_than_sixteen_packets(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio refused a payload of more than 16 packets (logged, and the
    packets lost); clients batch what they have, bounded by maxPayload only."""
    session = await open_session(client, server.url)
    body = RECORD_SEPARATOR.join([PONG] * 20 + [BAD_CONNECT])
    assert (await post(client, session, body))[0] == 200
    status, answer = await poll(client, session)
    assert status == 200 and answer.startswith(CONNECT_ERROR), answer
    await leave(client, session)


async def test_overlapping_polls_close_the_session(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio served both; the reference refuses the second and answers the
    first with CLOSE."""
    session = await open_session(client, server.url)
    first = asyncio.create_task(poll(client, session))
    await until(poll_waits(server, sid_of(session)), "a GET waits")
    assert (await poll(client, session))[0] == 400
    assert await first == (200, CLOSE)
    assert (await poll(client, session))[0] == 400


async def test_a_waiting_poll_is_answered_when_the_client_closes(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio left the GET waiting until the next ping (what kept
    python-socketio's polling client in `disconnect()`); the reference answers NOOP."""
    session = await open_session(client, server.url)
    waiting = asyncio.create_task(poll(client, session))
    await until(poll_waits(server, sid_of(session)), "a GET waits")
    assert (await post(client, session, CLOSE))[0] == 200
    assert await waiting == (200, NOOP)
    assert (await poll(client, session))[0] == 400


async def test_a_polling_client_leaves_at_once(server: RunningServer) -> None:
    """python-socketio's client on long polling: `disconnect()` took about 30 s."""
    account = await Http(server.url).account("leaver")
    device = await Device(server.url, transports=["polling"]).connect(account.token)
    await device.wait_synced()
    await until(poll_waits(server, device.sio.eio.sid), "the client's GET waits")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await device.disconnect()
    assert loop.time() - started < 3


async def test_an_unanswered_ping_closes_a_polling_session_when_it_times_out(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio noticed it when its service task came by (every ping_timeout
    for one session), and its CLOSE never reached the waiting GET (which timed out
    into a 400); the reference closes at the deadline and answers the GET CLOSE."""
    eio = server.node.sio.eio
    eio.ping_interval, eio.ping_timeout = 0.2, 1.0
    session = await open_session(client, server.url)
    assert await poll(client, session) == (200, PING)
    assert await poll(client, session) == (200, CLOSE)  # no PONG sent
    assert (await poll(client, session))[0] == 400


async def test_a_poll_after_the_ping_timeout_is_refused(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """The suites' check: nothing sent for ping_interval + ping_timeout, then a GET.
    python-engineio answered it with the PING until its service task came by. The
    session is forgotten at its deadline, before any request: a gone client sends
    none, and no service task sweeps the table here."""
    eio = server.node.sio.eio
    eio.ping_interval, eio.ping_timeout = 0.2, 1.0
    session = await open_session(client, server.url)
    await asyncio.sleep(eio.ping_interval + eio.ping_timeout + 0.5)
    assert sid_of(session) not in eio.sockets
    assert (await poll(client, session))[0] == 400


# -- the upgrade --------------------------------------------------------------------------


async def test_the_upgrade_noop_never_reaches_the_websocket(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """With no GET waiting, python-engineio's NOOP for it stayed queued and reached
    the websocket ahead of what followed."""
    session = await open_session(client, server.url)
    ws = await probe(client, session)
    await ws.send_str(UPGRADE)
    await ws.send_str(BAD_CONNECT)
    frame = await ws.receive(timeout=5)
    assert frame.type == aiohttp.WSMsgType.TEXT and frame.data.startswith(CONNECT_ERROR), frame
    await ws.close()


async def test_a_poll_during_the_upgrade_is_held_then_refused_once_upgraded(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """Before UPGRADE a GET is answered NOOP (after a short hold, as the reference's
    upgrade check); one waiting when UPGRADE comes is refused. python-engineio
    answered every GET during the upgrade NOOP at once."""
    session = await open_session(client, server.url)
    ws = await probe(client, session)
    assert await poll(client, session) == (200, NOOP)
    held = asyncio.create_task(poll(client, session))
    await until(lambda: poll_waits(server, sid_of(session))() or held.done(), "a GET is held")
    await ws.send_str(UPGRADE)
    assert (await held)[0] == 400
    await ws.send_str(BAD_CONNECT)
    assert (await ws.receive(timeout=5)).data.startswith(CONNECT_ERROR)
    await ws.close()


async def test_another_websocket_for_the_session_is_closed(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """During the upgrade python-engineio ran a second upgrade on it, left open; after
    it, the library refused the handshake with a 400. The reference accepts it and
    closes it, and the session's own websocket goes on."""
    session = await open_session(client, server.url)
    ws = await probe(client, session)
    during = await client.ws_connect(websocket_of(session))
    await assert_closed(during)
    await ws.send_str(UPGRADE)
    after = await client.ws_connect(websocket_of(session))
    await assert_closed(after)
    await ws.send_str(BAD_CONNECT)
    assert (await ws.receive(timeout=5)).data.startswith(CONNECT_ERROR)
    await ws.close()


async def test_an_upgrade_that_never_completes_is_given_up(
    server: RunningServer, client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """python-engineio waited for the probe, and then for UPGRADE, without a limit:
    the websocket stayed open. The reference gives up after its `upgradeTimeout`,
    closes the websocket, and the session goes on polling."""
    monkeypatch.setattr(engine_socket, "UPGRADE_TIMEOUT", 0.3, raising=False)
    session = await open_session(client, server.url)
    silent = await client.ws_connect(websocket_of(session))
    await assert_closed(silent)
    probed = await probe(client, session)  # and no UPGRADE
    await assert_closed(probed)
    assert (await post(client, session, BAD_CONNECT))[0] == 200
    status, answer = await poll(client, session)
    assert status == 200 and answer.startswith(CONNECT_ERROR), answer
    await leave(client, session)


async def test_an_undecodable_frame_after_an_upgrade_closes_the_session(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    """python-engineio's loop for an upgraded session let the decoding error escape:
    a traceback, and the session left open with its writer waiting."""
    session = await open_session(client, server.url)
    ws = await probe(client, session)
    await ws.send_str(UPGRADE)
    await ws.send_str("abc")
    await assert_closed(ws)
    socket = server.node.sio.eio.sockets.get(sid_of(session))
    assert socket is None or socket.closed


# -- Socket.IO ------------------------------------------------------------------------------


async def test_an_unknown_namespace_is_refused_as_invalid(server: RunningServer) -> None:
    """python-socketio answered with the string "Unable to connect"."""
    async with raw_engineio_session(server.url) as ws:
        await ws.send_str("40/random,")
        frame = await ws.receive(timeout=5)
    assert frame.data == '44/random,{"message":"Invalid namespace"}'


@pytest.mark.parametrize(
    "event", ['42["send",{"to":"bob","body":"hi","client_id":"c1"}]', '42/other,["x"]']
)
async def test_an_event_outside_a_connection_closes_the_session(
    server: RunningServer, event: str
) -> None:
    """python-socketio dropped an event of a session not connected to its namespace
    without a word and kept the session; the reference server closes it."""
    async with raw_engineio_session(server.url) as ws:
        await ws.send_str(event)
        await assert_closed(ws)
