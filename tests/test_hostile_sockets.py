"""Hostile clients at the Socket.IO layer (issue 20): what one client can make the
server hold, compute or log through its events.

- A socket that never reads is dropped once what waits for it passes its byte budget
  (`connection_buffer`), whether that is pushes of the largest messages or answers to
  its own requests; `sync` and `history` answers stop at `max_answer_bytes`.
- Every event, known or not, passes the rate limiter; a connection has at most
  `max_pending_requests` events in handling.
- Malformed frames close the connection without a traceback; refusals are logged once
  per connection and a few lines per address.
- G2 holds for retries: a repeat of a stored send gets its message even when the
  recipient has blocked the sender since, or the repeat names someone else.

Frames a python-socketio client would not send go over raw websockets; the server runs
in this process, so its memory is this process's RSS (/proc/self/status).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from messenger.config import KIB, MIB, Settings
from messenger.wire import to_compact_json
from tests.faults.tools import RawSocket, rss_kb
from tests.support import (
    Account,
    Http,
    RunningServer,
    accounts,
    connect_synced,
    port_of,
    start_server,
    websocket_url,
)

# The largest body, of characters outside the BMP: 12 bytes each as JSON escapes.
ASTRAL_BODY = "\U0001f600" * 4096
BUDGET = 1 * MIB
ANSWER_BYTES = 128 * KIB


@pytest.fixture
async def hostile(settings: Settings) -> AsyncIterator[RunningServer]:
    """A server with a small byte budget and answer size, and the default cap on a
    connection's requests (the settings fixture lifts it)."""
    running = await start_server(
        settings.replace(
            connection_buffer=BUDGET,
            max_answer_bytes=ANSWER_BYTES,
            max_pending_requests=Settings().max_pending_requests,
        )
    )
    yield running
    await running.stop()


class Raw:
    """A Socket.IO client spoken by hand over a websocket that reads everything: pings
    are answered, acknowledgements kept by id, pushes counted and dropped."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.acks: dict[int, Any] = {}
        self.pushes = 0
        self.closed = False

    async def connect(self, token: str, **auth: Any) -> None:
        await self.ws.send_str("40" + json.dumps({"token": token, **auth}))
        while not self.closed:
            text = await self.next(10)
            if text is not None and text.startswith("42") and '"synced"' in text[:16]:
                return
        raise AssertionError("closed before synced")

    async def next(self, timeout: float) -> str | None:
        """The next text (None on timeout or once closed)."""
        while not self.closed:
            try:
                message = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                return None
            if message.type != aiohttp.WSMsgType.TEXT:
                self.closed = True
                return None
            text = str(message.data)
            if text == "2":
                await self.ws.send_str("3")
                continue
            match = re.match(r"43(\d+)", text)
            if match:
                self.acks[int(match[1])] = json.loads(text[match.end() :])[0]
            elif text.startswith("42"):
                self.pushes += 1
            return text
        return None

    async def wait_acks(self, ids: range, timeout: float = 20) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not all(i in self.acks for i in ids):
            left = deadline - time.monotonic()
            assert left > 0 and not self.closed, f"{len(self.acks)} of {len(ids)} answered"
            await self.next(left)
        return [self.acks[i] for i in ids]


@contextlib.asynccontextmanager
async def raw(url: str) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(websocket_url(url), max_msg_size=0)
        opened = await ws.receive(timeout=5)
        assert str(opened.data).startswith("0{"), opened
        yield Raw(ws)
        await ws.close()


def send_frame(ack: int, to: str, body: str, client_id: str) -> str:
    """A `send` event as a client writes it: JSON with ASCII escapes."""
    return f"42{ack}" + json.dumps(["send", {"to": to, "body": body, "client_id": client_id}])


async def store_big_messages(url: str, sender: Account, to: str, count: int, tag: str) -> None:
    """`count` messages of ASTRAL_BODY from `sender` to `to`, each acknowledged."""
    async with raw(url) as client:
        await client.connect(sender.token)
        for i in range(count):
            await client.ws.send_str(send_frame(i, to, ASTRAL_BODY, f"{tag}-{i}"))
            await client.wait_acks(range(i, i + 1))
        assert all(client.acks[i]["ok"] for i in range(count)), client.acks


async def stalled(url: str, account: Account) -> RawSocket:
    """A connection that has read its backlog up to `synced` and reads nothing more."""
    socket = RawSocket(port_of(url))
    await socket.connect(account.token)
    return socket


async def wait_closed(sockets: list[RawSocket], timeout: float) -> bool:
    """Whether the server closes every one of `sockets` within `timeout`. Each sends a
    pong now and then: a socket closed with unread data queued for the client sends
    its FIN only after that data, which a client that reads nothing never takes, but
    answers anything the client sends with a reset."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_ones = [socket for socket in sockets if not socket.closed_by_peer()]
        if not open_ones:
            return True
        for socket in open_ones:
            with contextlib.suppress(OSError):
                await asyncio.wait_for(socket.send_text("3"), 0.5)
        await asyncio.sleep(0.2)
    return False


# -- the byte budget (items 1 and 2) ------------------------------------------------


async def test_stalled_sockets_flooded_with_large_pushes_are_dropped(
    hostile: RunningServer,
) -> None:
    """Four sockets of one user stop reading while messages of the largest size, ~49 KB
    of JSON each, are pushed to them: each is dropped once its budget is passed, the
    server's memory stays bounded, and the sender is still served."""
    http = Http(hostile.url)
    victim, sender = await accounts(http, "victim", "sender")
    sockets = [await stalled(hostile.url, victim) for _ in range(4)]
    baseline = rss_kb()
    peak = baseline
    async with raw(hostile.url) as client:
        await client.connect(sender.token)
        count = 160  # ~7.5 MB for each stalled socket, past its budget and the kernel's
        for i in range(count):
            await client.ws.send_str(send_frame(i, victim.username, ASTRAL_BODY, f"big-{i}"))
            await client.wait_acks(range(i, i + 1))
            peak = max(peak, rss_kb())
        answers = [client.acks[i] for i in range(count)]
        closed = await wait_closed(sockets, 10)
        print(
            f"\n[pushes] {count} pushes of ~49 KB to 4 stalled sockets: RSS {baseline // 1024} "
            f"MiB, peak +{(peak - baseline) // 1024} MiB; dropped: {closed}"
        )
        assert all(answer["ok"] for answer in answers)
        # The sender's own connection read its pushes all along and is still served.
        assert client.pushes >= count and not client.closed
    for socket in sockets:
        socket.close()
    assert closed, "a socket that never reads was kept past its byte budget"
    # Each stalled socket held at most its budget (plus what the kernel took).
    assert peak - baseline < 40 * 1024


async def test_stalled_socket_flooded_with_sync_answers_is_dropped(
    hostile: RunningServer,
) -> None:
    """A socket that never reads asks `sync` 100 times, a few at a time, for a stream of
    the largest messages: each answer stops at `max_answer_bytes`, the answers pile up
    only to the connection's budget, and then the connection is dropped."""
    http = Http(hostile.url)
    victim, sender = await accounts(http, "victim", "sender")
    await store_big_messages(hostile.url, sender, victim.username, 12, "s")
    socket = await stalled(hostile.url, victim)
    baseline = rss_kb()
    requests = 100  # of answers of ~600 KB each, unbounded: ~60 MB
    frame = json.dumps(["sync", {"after": 0, "limit": 500}])
    peak = baseline
    for ack in range(requests):
        try:
            await socket.send_text(f"42{ack}{frame}")
        except OSError:
            break  # dropped already
        if ack % 4 == 3:
            # In waves within `max_pending_requests`, as the answers it does not read
            # would have told it to.
            await asyncio.sleep(0.1)
            peak = max(peak, rss_kb())
    closing = asyncio.create_task(wait_closed([socket], 15))
    while not closing.done():
        peak = max(peak, rss_kb())
        await asyncio.sleep(0.05)
    closed = closing.result()
    print(
        f"\n[sync answers] {requests} syncs of a ~600 KB stream on a stalled socket: RSS "
        f"{baseline // 1024} MiB, peak +{(peak - baseline) // 1024} MiB; dropped: {closed}"
    )
    socket.close()
    assert peak - baseline < 40 * 1024
    assert closed, "a socket that never reads its answers was kept past its byte budget"


async def test_sync_and_history_answers_stop_at_max_answer_bytes(
    hostile: RunningServer,
) -> None:
    """Pages of `sync` and `history` stop at `max_answer_bytes` with `has_more`; paging
    on (sync by cursor, history back by `before` and forward by `after`) finds every
    message once, in order."""
    http = Http(hostile.url)
    ann, bob = await accounts(http, "ann", "bob")
    await store_big_messages(hostile.url, ann, bob.username, 12, "h")
    device, _ = await connect_synced(hostile.url, bob)
    ids = [m["id"] for m in device.messages()]
    assert len(ids) == 12

    def size(answer: dict[str, Any]) -> int:
        return len(to_compact_json(answer))

    seen: list[int] = []
    cursor, has_more, pages = 0, True, 0
    while has_more:
        answer = await device.call("sync", {"after": cursor, "limit": 500})
        assert answer["ok"], answer
        assert size(answer) <= ANSWER_BYTES and answer["events"], size(answer)
        seen += [event["data"]["message"]["id"] for event in answer["events"]]
        cursor, has_more, pages = answer["cursor"], answer["has_more"], pages + 1
    assert seen == ids and pages >= 4, pages

    back: list[int] = []
    query: dict[str, Any] = {"with": ann.username, "limit": 100}
    while True:
        answer = await device.call("history", query)
        assert answer["ok"], answer
        assert size(answer) <= ANSWER_BYTES and answer["messages"], size(answer)
        back = [m["id"] for m in answer["messages"]] + back
        if not answer["has_more"]:
            break
        query = {"with": ann.username, "limit": 100, "before": answer["messages"][0]["id"]}
    assert back == ids

    forward: list[int] = []
    query = {"with": ann.username, "limit": 100, "after": ids[0]}
    while True:
        answer = await device.call("history", query)
        assert answer["ok"], answer
        assert size(answer) <= ANSWER_BYTES and answer["messages"], size(answer)
        forward += [m["id"] for m in answer["messages"]]
        if not answer["has_more"]:
            break
        query = {"with": ann.username, "limit": 100, "after": answer["messages"][-1]["id"]}
    assert forward == ids[1:]
    await device.disconnect()


# -- requests and the rate limit ----------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])  # the writer is held by a file lock
async def test_requests_in_handling_are_capped_per_connection(hostile: RunningServer) -> None:
    """100 `send`s written at once while the writer cannot commit: exactly
    `max_pending_requests` are worked on (they wait for the commit), the others are
    answered `rate_limited` at once; once the writer goes on, all are answered.
    The database is held by another connection's write transaction, so the sends in
    handling stay there for as long as the test needs, however fast the machine."""
    http = Http(hostile.url)
    user, peer = await accounts(http, "many", "peer")
    path = hostile.settings.database_url.split("///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the writer's next batch waits (busy timeout)
    try:
        async with raw(hostile.url) as client:
            await client.connect(user.token)
            for ack in range(100):
                send = {"to": peer.username, "body": "hi", "client_id": f"c-{ack}"}
                await client.ws.send_str(f"42{ack}" + json.dumps(["send", send]))
            refused = await client.wait_acks(range(Settings().max_pending_requests, 100))
            assert all(not a["ok"] and a["error"]["code"] == "rate_limited" for a in refused)
            assert all("at once" in a["error"]["message"] for a in refused), refused[0]
            holder.execute("COMMIT")
            stored = await client.wait_acks(range(Settings().max_pending_requests))
            assert all(a["ok"] for a in stored), stored
    finally:
        holder.close()


async def test_every_event_passes_the_rate_limiter_and_is_logged_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown event names are rate limited like known ones; the refusals are logged
    once for the connection, however many there are."""
    caplog.set_level(logging.INFO)
    running = await start_server(settings.replace(rate_limit=5))
    try:
        http = Http(running.url)
        (user,) = await accounts(http, "flood")
        async with raw(running.url) as client:
            await client.connect(user.token)
            for ack in range(300):
                name = "nope" if ack % 2 else "sync"
                await client.ws.send_str(f"42{ack}" + json.dumps([name, {"after": 0}]))
            answers = await client.wait_acks(range(300))
        unknown = [answers[i] for i in range(1, 300, 2)]
        limited = [a for a in unknown if not a["ok"] and a["error"]["code"] == "rate_limited"]
        assert len(limited) >= 130, [a["error"]["code"] for a in unknown]
        lines = [r for r in caplog.records if "rate limited" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
    finally:
        await running.stop()


async def test_refused_handshakes_are_limited_per_session_and_quiet(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A session that retries CONNECT with bad tokens is refused `rate_limited` past
    the burst, without a token lookup, and its address gets a few log lines only."""
    caplog.set_level(logging.INFO)
    running = await start_server(settings.replace(rate_limit=5))
    try:
        async with raw(running.url) as client:
            refusals = []
            for n in range(40):
                await client.ws.send_str("40" + json.dumps({"token": f"bad-{n}" * 8}))
                text = await client.next(5)
                assert text is not None and text.startswith("44"), text
                refusals.append(json.loads(text[2:])["code"])
        assert refusals[:10] == ["unauthorized"] * 10, refusals
        assert refusals.count("rate_limited") >= 25, refusals
        lines = [r for r in caplog.records if "handshake refused" in r.getMessage()]
        assert 1 <= len(lines) <= 5, [r.getMessage() for r in lines]
    finally:
        await running.stop()


# -- malformed frames (items 6 and 9) -------------------------------------------------

MALFORMED = [
    "42[]",
    "421[]",
    "42{}",
    "421{}",
    "42[{}]",
    "42[[]]",
    "42[null]",
    "421[true]",
    '421"send"',
    "42",
    "421",
    "43",
    "431{}",
    '42["send"',
    "42" + "[" * 1000 + "]" * 1000,
    '421["send",' + "[" * 2000 + "]" * 2000 + "]",
    "42" + "[" * 100_000,
]


@pytest.mark.parametrize("connected", [False, True], ids=["anonymous", "connected"])
async def test_malformed_frames_close_without_a_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture, connected: bool
) -> None:
    """Each malformed Socket.IO frame closes its connection as a protocol error (the
    reference server's answer), with no traceback and at most a line or two of log;
    a well-formed unknown event on the same kind of connection is still answered."""
    caplog.set_level(logging.INFO)
    (user,) = await accounts(Http(server.url), "bad")
    for frame in MALFORMED:
        caplog.clear()
        async with raw(server.url) as client:
            if connected:
                await client.connect(user.token)
            await client.ws.send_str(frame)
            while await client.next(5) is not None:
                pass
            assert client.closed, f"{frame[:20]!r} left the connection open"
        assert "Traceback" not in caplog.text, (frame[:20], caplog.text[:2000])
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], frame[:20]
        assert len(caplog.text) < 600, (frame[:20], caplog.text)
    if connected:
        async with raw(server.url) as client:
            await client.connect(user.token)
            await client.ws.send_str('427["nope",{}]')
            (answer,) = await client.wait_acks(range(7, 8))
            assert answer["error"]["code"] == "invalid", answer


async def test_flood_of_malformed_frames_writes_little_log(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """5,000 four-byte frames that each logged a traceback: the first closes the
    connection, and the log holds a line or two."""
    caplog.set_level(logging.INFO)
    (user,) = await accounts(Http(server.url), "flood")
    for connect in (False, True):
        caplog.clear()
        async with raw(server.url) as client:
            if connect:
                await client.connect(user.token)
            with contextlib.suppress(ConnectionError):
                for n in range(5000):
                    await client.ws.send_str(("42[]", "42{}", "42[{}]")[n % 3])
            while await client.next(5) is not None:
                pass
            assert client.closed
        assert "Traceback" not in caplog.text
        assert len(caplog.text) < 1000, caplog.text[:3000]


# -- G2 for retries (item 8) ----------------------------------------------------------


@pytest.mark.parametrize("compat", [None, "seed"])
async def test_a_retried_send_gets_its_stored_message_whatever_it_names_now(
    server: RunningServer, http: Http, compat: str | None
) -> None:
    """G2: once (ann, client_id) is stored, a repeat answers that message even after
    bob blocked ann, and even if the repeat names an unknown user or ann herself; a
    new client_id still gets the refusals."""
    ann, bob = await accounts(http, "ann", "bob")
    auth: dict[str, Any] = {"compat": compat} if compat else {}
    a, _ = await connect_synced(server.url, ann, **auth)
    b, _ = await connect_synced(server.url, bob)
    event, body_key = ("privateMessage", "message") if compat else ("send", "body")

    async def send(to: str, client_id: str) -> Any:
        payload = {"to": to, body_key: "kept", "client_id": client_id}
        if compat:
            payload["from"] = ann.username
        return await a.call(event, payload)

    first = await send(bob.username, "g2-1")
    assert first["ok"], first
    blocked = await b.call("block", {"user": ann.username})
    assert blocked["ok"], blocked
    for to in (bob.username, "nobody-at-all@example.com", ann.username):
        again = await send(to, "g2-1")
        assert again == first, (to, again)
    refusals = {
        to: (await send(to, f"g2-new-{n}"))["error"]["code"]
        for n, to in enumerate((bob.username, "nobody-at-all@example.com", ann.username))
    }
    assert refusals == {
        bob.username: "forbidden",
        "nobody-at-all@example.com": "not_found",
        ann.username: "invalid",
    }
    await a.disconnect()
    await b.disconnect()
