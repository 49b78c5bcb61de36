"""The Python SDK against a real server: sending, receipts, the durable outbox,
reconnecting with the cursor, dedupe and gap filling."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import socketio

from messenger.client import (
    Client,
    MessageUpdated,
    MessengerClientError,
    NewMessage,
    Receipt,
    login,
    register,
)
from messenger.client.stream import Stream
from messenger.config import Settings
from tests.support import (
    PASSWORD,
    Account,
    Device,
    Http,
    RunningServer,
    Servers,
    port_of,
    unique_name,
)


async def eventually(predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Poll a condition on SDK state, which has no event of its own to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


class Recorder:
    """Callbacks that record every event a Client hands over."""

    def __init__(self, client: Client) -> None:
        self.messages: list[NewMessage] = []
        self.receipts: list[Receipt] = []
        self.updates: list[MessageUpdated] = []
        client.on_message(self.messages.append)
        client.on_receipt(self.receipts.append)
        client.on_message_updated(self.updates.append)

    def bodies(self) -> list[str | None]:
        return [event.message.body for event in self.messages]

    def changes(self) -> list[tuple[int, str]]:
        return [(event.message.id, event.change) for event in self.updates]

    def cursors(self) -> list[int]:
        """Every stream event's cursor, in stream order."""
        events: list[NewMessage | Receipt | MessageUpdated] = [
            *self.messages,
            *self.receipts,
            *self.updates,
        ]
        return sorted(event.cursor for event in events)

    def statuses(self, message_id: int) -> list[str]:
        return [r.status for r in self.receipts if message_id in r.ids]


@contextlib.asynccontextmanager
async def opened(url: str, account: Account, state: Path | None = None) -> AsyncIterator[Client]:
    async with Client(url, account.token, state, reconnect_delay=0.05) as client:
        async with asyncio.timeout(10):
            await client.wait_synced()
        yield client


async def history_rows(url: str, account: Account, other: str) -> list[dict[str, Any]]:
    device = await Device(url).connect(account.token)
    try:
        answer = await device.call("history", {"with": other, "limit": 100})
        assert answer["ok"], answer
        return list(answer["messages"])
    finally:
        await device.disconnect()


async def test_http_helpers(server: RunningServer) -> None:
    name = unique_name("sdk")
    assert await register(server.url, name.upper(), PASSWORD) == name
    token = await login(server.url, name, PASSWORD)
    with pytest.raises(MessengerClientError) as bad:
        await login(server.url, name, "wrong password")
    assert bad.value.code == "bad_credentials"
    with pytest.raises(MessengerClientError) as taken:
        await register(server.url, name, PASSWORD)
    assert taken.value.code == "username_taken"
    from messenger.client import logout

    await logout(server.url, token)
    with pytest.raises(MessengerClientError) as refused:
        async with Client(server.url, token):
            pass
    assert refused.value.code == "unauthorized"


async def test_send_receive_delivered_and_read(server: RunningServer, http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    async with opened(server.url, ann) as ann_client, opened(server.url, bob) as bob_client:
        ann_events = Recorder(ann_client)
        received: list[NewMessage] = []

        async def read_events() -> None:
            async for event in bob_client.events():
                if isinstance(event, NewMessage):
                    received.append(event)

        reader = asyncio.create_task(read_events())
        message = await ann_client.send(bob.username, "hello bob")
        assert (message.sender, message.recipient, message.body) == (
            ann.username,
            bob.username,
            "hello bob",
        )
        assert message.status == "sent"
        await eventually(lambda: [e.message.id for e in received] == [message.id])
        # bob's iterator took it, so the SDK said `delivered` on its own.
        await eventually(lambda: ann_events.statuses(message.id) == ["delivered"])
        assert await bob_client.mark_read([message.id]) == 1
        await eventually(lambda: ann_events.statuses(message.id) == ["delivered", "read"])
        # ann's own message came back to her device too, once.
        assert [e.message.id for e in ann_events.messages] == [message.id]
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

        with pytest.raises(MessengerClientError) as unknown:
            await ann_client.send("nobody@example.com", "hi")
        assert unknown.value.code == "not_found"
        with pytest.raises(MessengerClientError) as myself:
            await ann_client.send(ann.username, "hi")
        assert myself.value.code == "invalid"
        assert await ann_client.pending() == []  # refused sends leave the outbox

        pages = [page async for page in bob_client.history(ann.username, limit=1)]
        assert [[m.id for m in page] for page in pages] == [[message.id]]


def after_passes(passes: int, action: Callable[[], object]) -> None:
    """Run `action` now (0) or that many passes of the event loop from now."""
    if passes:
        asyncio.get_running_loop().call_soon(after_passes, passes - 1, action)
    else:
        action()


@pytest.mark.parametrize("passes", [0, 1, 2, 3])
async def test_a_task_cancelled_as_its_answer_arrives_ends(
    server: RunningServer, http: Http, monkeypatch: pytest.MonkeyPatch, passes: int
) -> None:
    """The chat's /quit once hung: `close()` cancelled the task that was marking a
    message read just as the server's answer came in; python-socketio's `call` (an
    `asyncio.wait_for` on Python 3.11) returned the answer instead of raising, and the
    task went on with its loop. Here the cancel lands 0-3 passes of the event loop
    after the answer is taken off the socket; the loop must end every time."""
    ann, bob = await http.account("ann"), await http.account("bob")
    async with opened(server.url, ann) as ann_client, opened(server.url, bob) as bob_client:
        message = await ann_client.send(bob.username, "hi")
        targets: list[asyncio.Task[None]] = []
        handle_ack = socketio.AsyncClient._handle_ack

        async def cancel_on_answer(sio: Any, *args: Any) -> None:
            await handle_ack(sio, *args)  # hands the answer to the waiting request
            if targets:
                after_passes(passes, targets.pop().cancel)

        async def mark_read_forever() -> None:
            while True:  # like the client's own tasks: a loop around requests
                await bob_client.request("read", {"ids": [message.id]})

        monkeypatch.setattr(socketio.AsyncClient, "_handle_ack", cancel_on_answer)
        task = asyncio.create_task(mark_read_forever())
        targets.append(task)
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done and task.cancelled()


async def test_history_pages_newest_first(server: RunningServer, http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    async with opened(server.url, ann) as client:
        sent = [await client.send(bob.username, f"m{i}") for i in range(5)]
        pages = [page async for page in client.history(bob.username, limit=2)]
    ids = [m.id for m in sent]
    assert [[m.id for m in page] for page in pages] == [ids[3:5], ids[1:3], ids[0:1]]


async def test_outbox_survives_a_client_restart(
    servers: Servers, tmp_path: Path, settings: Settings
) -> None:
    server = await servers.start()
    http = Http(server.url)
    ann, bob = await http.account("ann"), await http.account("bob")
    state = tmp_path / "ann.state"
    async with opened(server.url, ann, state) as client:
        await servers.stop(server)  # the server goes away: the send cannot be answered
        await eventually(lambda: not client.connected)
        sending = asyncio.create_task(client.send(bob.username, "written offline"))
        await eventually(lambda: _outbox(state) != [])
    # The client is closed (the process "restarted"): the send never got its answer.
    with pytest.raises(MessengerClientError) as closed:
        await sending
    assert closed.value.code == "closed"
    [(client_id, body)] = _outbox(state)
    assert body == "written offline"

    server = await servers.start()
    # Suppose the first attempt had reached the server and only its answer was lost.
    device = await Device(server.url).connect(ann.token)
    first = await device.send(bob.username, "written offline", client_id)
    assert first["ok"], first
    await device.disconnect()

    async with opened(server.url, ann, state) as client:
        await eventually(lambda: _outbox(state) == [])
    rows = await history_rows(server.url, bob, ann.username)
    assert [(r["client_id"], r["body"]) for r in rows] == [(client_id, "written offline")]


async def test_queued_sends_go_out_once_in_order_after_restart(
    servers: Servers, tmp_path: Path
) -> None:
    server = await servers.start()
    ann, bob = await Http(server.url).account("ann"), await Http(server.url).account("bob")
    state = tmp_path / "ann.state"
    async with opened(server.url, ann, state) as client:
        await servers.stop(server)
        await eventually(lambda: not client.connected)
        tasks = [asyncio.create_task(client.send(bob.username, f"n{i}")) for i in range(3)]
        await eventually(lambda: len(_outbox(state)) == 3)
        server = await servers.start(port_of(server.url))  # same URL: reconnects by itself
        sent = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [m.body for m in sent] == ["n0", "n1", "n2"]
    assert [m.id for m in sent] == sorted(m.id for m in sent)
    rows = await history_rows(server.url, bob, ann.username)
    assert [r["body"] for r in rows] == ["n0", "n1", "n2"]


async def test_reconnect_with_cursor_gets_exactly_the_missed_events(
    servers: Servers, tmp_path: Path
) -> None:
    server = await servers.start()
    ann, bob = await Http(server.url).account("ann"), await Http(server.url).account("bob")
    state = tmp_path / "ann.state"
    bob_device = await Device(server.url).connect(bob.token)
    async with opened(server.url, ann, state) as client:
        seen = Recorder(client)
        old = await client.send(bob.username, "before")
        await eventually(lambda: len(seen.messages) == 1)
        await eventually(lambda: client.cursor == seen.messages[0].cursor)
        cursor = client.cursor
    await bob_device.disconnect()

    # While ann is away the server restarts, bob reads her message and answers twice.
    await servers.stop(server)
    server = await servers.start(port_of(server.url))
    bob_device = await Device(server.url).connect(bob.token)
    await bob_device.wait_synced()
    assert (await bob_device.call("read", {"ids": [old.id]}))["ok"]
    replies = [await bob_device.send(ann.username, f"r{i}", f"r{i}") for i in range(2)]

    async with Client(server.url, ann.token, state) as client:
        seen = Recorder(client)
        await asyncio.wait_for(client.wait_synced(), 10)
        await eventually(lambda: len(seen.messages) == 2)
    assert seen.bodies() == ["r0", "r1"]  # not "before" again
    assert cursor is not None
    missed = sorted([*seen.receipts, *seen.messages], key=lambda e: e.cursor)
    assert [(e.cursor, type(e).__name__) for e in missed[:3]] == [
        (cursor + 1, "Receipt"),
        (cursor + 2, "NewMessage"),
        (cursor + 3, "NewMessage"),
    ]
    assert seen.receipts[0].status == "read" and seen.receipts[0].ids == (old.id,)
    # Anything later is ann's own `delivered` of the replies, told to her stream too.
    assert all(r.status == "delivered" and r.by == ann.username for r in seen.receipts[1:])
    # ann took both replies, so bob hears they were delivered.
    reply_ids = [r["message"]["id"] for r in replies]
    await bob_device.wait_for(
        lambda: (
            reply_ids
            == sorted(
                i for r in bob_device.of("receipt") if r["status"] == "delivered" for i in r["ids"]
            )
        )
    )
    await bob_device.disconnect()


async def test_live_client_reconnects_after_a_server_restart(servers: Servers) -> None:
    server = await servers.start()
    ann, bob = await Http(server.url).account("ann"), await Http(server.url).account("bob")
    async with opened(server.url, ann) as client:
        seen = Recorder(client)
        await servers.stop(server)
        await eventually(lambda: not client.connected)
        server = await servers.start(port_of(server.url))
        bob_device = await Device(server.url).connect(bob.token)
        await bob_device.send(ann.username, "after the restart", "x1")
        await eventually(lambda: seen.bodies() == ["after the restart"])
        await bob_device.disconnect()


@pytest.mark.parametrize("passes", [0, 1, 2, 3])
async def test_closing_as_a_reconnect_completes_returns(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, passes: int
) -> None:
    """The same swallowed cancel in python-socketio's `connect` (see the test above):
    a client closed just as its reconnect completes must not keep its connection."""
    server = await servers.start()
    ann = await Http(server.url).account("ann")
    closing: list[asyncio.Task[None]] = []
    handle_connect = socketio.AsyncClient._handle_connect

    client = await Client(server.url, ann.token, reconnect_delay=0.05).__aenter__()
    try:
        await servers.stop(server)
        await eventually(lambda: not client.connected)

        async def close_on_connect(sio: Any, *args: Any) -> None:
            await handle_connect(sio, *args)
            if not closing:
                after_passes(passes, lambda: closing.append(asyncio.ensure_future(client.close())))

        monkeypatch.setattr(socketio.AsyncClient, "_handle_connect", close_on_connect)
        server = await servers.start(port_of(server.url))
        await eventually(lambda: bool(closing))
        done, _ = await asyncio.wait(closing, timeout=5)
        assert closing[0] in done
    finally:
        if not closing:
            await client.close()


async def test_a_message_replayed_before_it_was_taken_is_shown_once(
    servers: Servers,
) -> None:
    server = await servers.start()
    ann, bob = await Http(server.url).account("ann"), await Http(server.url).account("bob")
    release = asyncio.Event()
    shown: list[int] = []

    async def slow(event: NewMessage) -> None:
        shown.append(event.message.id)
        await release.wait()  # the app is busy: the message is not taken yet

    async with opened(server.url, ann) as client:
        client.on_message(slow)
        bob_device = await Device(server.url).connect(bob.token)
        sent = await bob_device.send(ann.username, "once", "o1")
        await bob_device.disconnect()
        await eventually(lambda: len(shown) == 1)
        # The connection drops while the app holds the message: not delivered yet, so
        # the new connection replays it (G6).
        await servers.stop(server)
        server = await servers.start(port_of(server.url))
        await eventually(lambda: client.connected)
        release.set()
        await asyncio.wait_for(client.wait_synced(), 10)
        rows = await history_rows(server.url, ann, bob.username)
        await eventually(lambda: client.cursor is not None and client.cursor >= 1)
    assert shown == [sent["message"]["id"]]
    assert rows[0]["id"] == sent["message"]["id"]


def _outbox(path: Path) -> list[tuple[str, str]]:
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return list(db.execute("SELECT client_id, body FROM outbox ORDER BY seq"))
    except sqlite3.OperationalError:
        return []


# -- the stream rules as a unit, fed with what a real server sends --------------------


async def _recorded_stream(server: RunningServer, http: Http) -> tuple[Device, list[Any], int]:
    """Bob sends ann three messages while a raw device of ann records her stream."""
    ann, bob = await http.account("ann"), await http.account("bob")
    ann_device = await Device(server.url).connect(ann.token)
    head = await ann_device.wait_synced()
    bob_device = await Device(server.url).connect(bob.token)
    for i in range(3):
        await bob_device.send(ann.username, f"g{i}", f"g{i}")
    await bob_device.disconnect()
    await ann_device.wait_for(lambda: len(ann_device.of("new_message")) == 3)
    return ann_device, ann_device.of("new_message"), head


async def test_stream_fills_a_gap_with_sync(server: RunningServer, http: Http) -> None:
    device, pushed, head = await _recorded_stream(server, http)
    calls: list[int] = []

    async def sync(after: int) -> tuple[list[tuple[str, Any]], int, bool]:
        calls.append(after)
        answer = await device.call("sync", {"after": after, "limit": 500})
        events = [(e["event"], e["data"]) for e in answer["events"]]
        return events, answer["cursor"], answer["has_more"]

    stream = Stream(None)
    assert await stream.feed("synced", {"cursor": head}, sync) == []
    first = await stream.feed("new_message", pushed[0], sync)
    assert [e.cursor for e in first] == [head + 1] and calls == []
    # The second push is lost: the third shows a jump, and sync brings both.
    filled = await stream.feed("new_message", pushed[2], sync)
    assert calls == [head + 1]
    assert [e.message.body for e in filled if isinstance(e, NewMessage)] == ["g1", "g2"]
    assert stream.cursor == head + 3
    # The late copy of the lost push is a duplicate now.
    assert await stream.feed("new_message", pushed[1], sync) == []
    await device.disconnect()


async def test_stream_drops_duplicates_and_fills_up_to_synced(
    server: RunningServer, http: Http
) -> None:
    device, pushed, head = await _recorded_stream(server, http)

    async def sync(after: int) -> tuple[list[tuple[str, Any]], int, bool]:
        answer = await device.call("sync", {"after": after, "limit": 1})
        events = [(e["event"], e["data"]) for e in answer["events"]]
        return events, answer["cursor"], answer["has_more"]

    stream = Stream(head)
    assert len(await stream.feed("new_message", pushed[0], sync)) == 1
    assert await stream.feed("new_message", pushed[0], sync) == []  # G6 repeat
    # `synced` says the stream is two events further: fetched page by page.
    filled = await stream.feed("synced", {"cursor": head + 3}, sync)
    assert [e.cursor for e in filled] == [head + 2, head + 3]
    assert stream.synced and stream.cursor == head + 3
    await device.disconnect()
