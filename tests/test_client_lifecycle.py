"""The SDK's part of issue 23 against a real server: replies, edits (through the
durable outbox), deletes, reactions, typing and private read receipts, between two
clients."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from messenger.client import (
    Client,
    MessageUpdated,
    MessengerClientError,
    Outgoing,
    ReplyRef,
    Typing,
    read_receipts,
    set_read_receipts,
)
from messenger.client.state import StateStore
from messenger.client.stream import Stream
from tests.support import Account, Device, Http, RunningServer, Servers, accounts, port_of
from tests.test_client import Recorder, eventually, history_rows, opened


async def test_reply_edit_and_reactions_reach_the_other_client(
    server: RunningServer, http: Http
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        seen_a, seen_b = Recorder(a), Recorder(b)
        question = await b.send(ann.username, "lunch at one?")
        answer = await a.send(bob.username, "sure", reply_to=question.id)
        assert answer.reply_to == ReplyRef(question.id, bob.username, "lunch at one?", False)
        assert (answer.edited_at, answer.deleted, answer.reactions) == (None, False, {})

        edited = await a.edit(answer.id, "sure, at one")
        assert (edited.id, edited.body) == (answer.id, "sure, at one")
        assert edited.edited_at is not None
        assert (await b.react(answer.id, "👍")).reactions == {"👍": (bob.username,)}
        both = await a.react(answer.id, "👍")
        assert both.reactions == {"👍": (bob.username, ann.username)}
        assert (await b.unreact(answer.id, "👍")).reactions == {"👍": (ann.username,)}
        await b.edit(question.id, "lunch at two?")

        expected = [
            (answer.id, "edited"),
            (answer.id, "reacted"),
            (answer.id, "reacted"),
            (answer.id, "reacted"),
            (question.id, "edited"),
        ]
        # Both streams get every change, in order, showing the message as it is then.
        await eventually(lambda: seen_b.changes() == expected and seen_a.changes() == expected)
        for seen in (seen_a, seen_b):
            assert seen.updates[0].message.body == "sure, at one"
            assert [dict(u.message.reactions) for u in seen.updates[1:4]] == [
                {"👍": (bob.username,)},
                {"👍": (bob.username, ann.username)},
                {"👍": (ann.username,)},
            ]
            assert seen.updates[4].message.body == "lunch at two?"
        # The updates share the stream with messages and receipts: no hole, no repeat.
        for seen in (seen_a, seen_b):
            cursors = seen.cursors()
            assert cursors == list(range(cursors[0], cursors[0] + len(cursors)))

        # The reply's excerpt is the question as it is now.
        [_, shown] = [m for page in [p async for p in b.history(ann.username)] for m in page]
        assert shown.reply_to == ReplyRef(question.id, bob.username, "lunch at two?", False)
        assert shown.reactions == {"👍": (ann.username,)}


async def test_deletes_for_everyone_and_for_me(server: RunningServer, http: Http) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        seen_a, seen_b = Recorder(a), Recorder(b)
        first = await a.send(bob.username, "oops")
        reply = await b.send(ann.username, "what?", reply_to=first.id)

        tombstone = await a.delete(first.id, for_everyone=True)
        assert tombstone is not None and tombstone.id == first.id
        assert (tombstone.deleted, tombstone.body, tombstone.reactions) == (True, None, {})
        await eventually(lambda: (first.id, "deleted") in seen_b.changes())
        [update] = seen_b.updates
        assert update.message.deleted and update.message.body is None
        rows = [m for page in [p async for p in b.history(ann.username)] for m in page]
        assert [(m.id, m.body, m.deleted) for m in rows] == [
            (first.id, None, True),
            (reply.id, "what?", False),
        ]
        assert rows[1].reply_to == ReplyRef(first.id, None, None, True)

        # bob hides ann's next message from himself: only his stream hears of it.
        second = await a.send(bob.username, "second")
        assert await b.delete(second.id, for_everyone=False) is None
        await eventually(lambda: (second.id, "hidden") in seen_b.changes())
        hidden = seen_b.updates[-1].message
        assert (hidden.hidden, hidden.deleted, hidden.body) == (True, True, None)
        marker = await a.send(bob.username, "marker")  # after the hide in ann's stream
        await eventually(lambda: marker.id in [e.message.id for e in seen_a.messages])
        assert seen_a.changes() == [(first.id, "deleted")]
        assert [m.id for p in [p async for p in b.history(ann.username)] for m in p] == [
            first.id,
            reply.id,
            marker.id,
        ]

        refusals: list[tuple[Callable[[], Awaitable[object]], str]] = [
            (lambda: b.delete(marker.id, for_everyone=True), "forbidden"),  # not bob's
            (lambda: a.edit(reply.id, "mine now"), "forbidden"),  # not ann's
            (lambda: a.edit(first.id, "back"), "not_found"),  # deleted for everyone
            (lambda: b.react(second.id, "👍"), "not_found"),  # bob deleted it for himself
            (lambda: a.react(marker.id, "not an emoji"), "invalid"),
            (lambda: b.send(ann.username, "re", reply_to=first.id), "invalid"),  # deleted
        ]
        for call, code in refusals:
            with pytest.raises(MessengerClientError) as refused:
                await call()
            assert refused.value.code == code
        assert await a.pending() == [] and await b.pending() == []


async def test_an_edit_retried_from_the_outbox_after_a_restart_is_applied_once(
    servers: Servers, tmp_path: Path
) -> None:
    server = await servers.start()
    ann, bob = await accounts(Http(server.url), "ann", "bob")
    state = tmp_path / "ann.state"
    async with opened(server.url, ann, state) as client:
        message = await client.send(bob.username, "v1")
        await servers.stop(server)
        await eventually(lambda: not client.connected)
        editing = asyncio.create_task(client.edit(message.id, "v2"))
        await eventually(lambda: _queued_edits(state) != [])
    with pytest.raises(MessengerClientError) as closed:
        await editing
    assert closed.value.code == "closed"
    [(client_id, edit_of, body)] = _queued_edits(state)
    assert (edit_of, body) == (message.id, "v2")

    server = await servers.start(port_of(server.url))
    # The first attempt reached the server and only its answer was lost; then another
    # device of ann's edited again. The retry must not undo that later edit.
    device = await Device(server.url).connect(ann.token)
    for edit in ({"body": "v2", "client_id": client_id}, {"body": "v3", "client_id": "other-1"}):
        answer = await device.call("edit", {"id": message.id, **edit})
        assert answer["ok"], answer
    await device.disconnect()

    async with opened(server.url, ann, state):
        await eventually(lambda: _queued_edits(state) == [])
    rows = await history_rows(server.url, bob, ann.username)
    assert [(r["id"], r["body"]) for r in rows] == [(message.id, "v3")]
    assert await _stream_changes(server.url, bob) == [(message.id, "edited")] * 2


async def test_typing_reaches_the_other_client_outside_the_stream(
    server: RunningServer, http: Http
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        typing: list[Typing] = []
        b.on_typing(typing.append)
        seen_b = Recorder(b)
        await eventually(lambda: b.cursor is not None)  # the `synced` head is saved
        head = b.cursor
        assert head is not None

        await a.typing(bob.username, True)
        await eventually(lambda: typing == [Typing(ann.username, True)])
        await a.typing(bob.username, False)
        await eventually(lambda: typing[-1:] == [Typing(ann.username, False)])

        # Typing took no place in bob's stream: ann's next message is the next event.
        message = await a.send(bob.username, "typed")
        await eventually(lambda: bool(seen_b.messages))
        assert [(e.cursor, e.message.id) for e in seen_b.messages] == [(head + 1, message.id)]
        assert (seen_b.receipts, seen_b.updates) == ([], [])
        device = await Device(server.url).connect(bob.token)
        answer = await device.call("sync", {"after": head})
        await device.disconnect()
        assert [e["event"] for e in answer["events"]] == ["new_message"]


async def test_private_read_receipts(server: RunningServer, http: Http) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    assert await read_receipts(server.url, bob.token) is True
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        assert await b.set_read_receipts(False) is False
        assert await b.read_receipts() is False
        seen_a, _ = Recorder(a), Recorder(b)  # bob's takes the message: delivered
        message = await a.send(bob.username, "between us")
        await eventually(lambda: seen_a.statuses(message.id) == ["delivered"])
        await b.mark_read([message.id])
        marker = await b.send(ann.username, "marker")  # after any receipt of the read
        await eventually(lambda: marker.id in [e.message.id for e in seen_a.messages])
        assert seen_a.statuses(message.id) == ["delivered"]
        [mine, _] = [m for page in [p async for p in a.history(bob.username)] for m in page]
        assert (mine.status, mine.read_at) == ("delivered", None)
        [theirs, _] = [m for page in [p async for p in b.history(ann.username)] for m in page]
        assert theirs.status == "read"  # bob's own view keeps the truth
    assert await set_read_receipts(server.url, bob.token, True) is True
    with pytest.raises(MessengerClientError) as refused:
        await read_receipts(server.url, "not a token")
    assert refused.value.code == "unauthorized"


async def test_stream_orders_updates_and_fills_their_gaps(
    server: RunningServer, http: Http
) -> None:
    """Stream, fed with `message_updated` pushes a real server made."""
    ann, bob = await accounts(http, "ann", "bob")
    device = await Device(server.url).connect(bob.token)
    head = await device.wait_synced()
    async with Client(server.url, ann.token) as a:
        message = await a.send(bob.username, "e0")
        for i in range(1, 4):
            await a.edit(message.id, f"e{i}")
    await device.wait_for(lambda: len(device.of("message_updated")) == 3)
    pushed = device.of("message_updated")

    async def sync(after: int) -> tuple[list[tuple[str, Any]], int, bool]:
        answer = await device.call("sync", {"after": after, "limit": 500})
        events = [(e["event"], e["data"]) for e in answer["events"]]
        return events, answer["cursor"], answer["has_more"]

    stream = Stream(head + 1)  # the message itself was taken
    [first] = await stream.feed("message_updated", pushed[0], sync)
    assert first.cursor == head + 2
    assert await stream.feed("message_updated", pushed[0], sync) == []  # a repeat
    # The second push is lost: the third shows the jump, and sync brings both.
    filled = await stream.feed("message_updated", pushed[2], sync)
    updates = [e for e in filled if isinstance(e, MessageUpdated)]
    assert [(e.cursor, e.change) for e in updates] == [(head + 3, "edited"), (head + 4, "edited")]
    # A replayed update shows the message as it is now (3.3), whichever edit it was.
    assert [e.message.body for e in updates] == ["e3", "e3"]
    await device.disconnect()


async def test_a_state_file_from_before_edits_keeps_its_outbox(tmp_path: Path) -> None:
    path = tmp_path / "old.state"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            """
            CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                client_id TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL,
                body TEXT NOT NULL, queued_at REAL NOT NULL);
            INSERT INTO outbox (client_id, recipient, body, queued_at)
                VALUES ('c1', 'bob@example.com', 'queued before', 0);
            """
        )
    store = StateStore(path)
    await store.open()
    try:
        await store.enqueue(Outgoing("c2", "", "v2", edit_of=7))
        await store.enqueue(Outgoing("c3", "bob@example.com", "re", reply_to=7))
        assert await store.pending() == [
            Outgoing("c1", "bob@example.com", "queued before"),
            Outgoing("c2", "", "v2", edit_of=7),
            Outgoing("c3", "bob@example.com", "re", reply_to=7),
        ]
    finally:
        await store.close()


def _queued_edits(path: Path) -> list[tuple[str, int, str]]:
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            query = "SELECT client_id, edit_of, body FROM outbox WHERE edit_of IS NOT NULL"
            return list(db.execute(query))
    except sqlite3.OperationalError:
        return []


async def _stream_changes(url: str, account: Account) -> list[tuple[int, str]]:
    """The `message_updated` events in a user's whole stream, as (id, change)."""
    device = await Device(url).connect(account.token)
    try:
        answer = await device.call("sync", {"after": 0, "limit": 500})
        assert answer["ok"] and not answer["has_more"], answer
        updates = [e["data"] for e in answer["events"] if e["event"] == "message_updated"]
        return [(u["message"]["id"], u["change"]) for u in updates]
    finally:
        await device.disconnect()
