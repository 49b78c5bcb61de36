"""G2 exactly-once storage: a `send` repeated with the same sender and client_id is
answered with the first message and stores and pushes nothing new, also when the
repeats race each other or come after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from messenger.config import Settings
from messenger.store.models import messages
from tests.support import Account, Device, Http, RunningServer, sql, start_server


async def connect(url: str, account: Account) -> Device:
    device = await Device(url).connect(account.token)
    await device.wait_synced()
    return device


async def stored_rows(database_url: str, client_id: str) -> list[dict[str, Any]]:
    """The messages rows with this client_id, read straight from the database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(messages.c.id, messages.c.sender_id, messages.c.body).where(
                    messages.c.client_id == client_id
                )
            )
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


async def count_messages(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(messages))).scalar())
    finally:
        await engine.dispose()


async def test_repeated_send_answers_the_first_message(server: RunningServer, http: Http) -> None:
    """G2: a retry gets the same id, no second `new_message` anywhere, one stored row."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a = await connect(server.url, ann)
    b = await connect(server.url, bob)
    first = await a.send(bob.username, "once", "dup-1")
    assert first["ok"], first
    await b.wait_for(lambda: len(b.messages()) == 1)
    again = await a.send(bob.username, "once", "dup-1")
    assert again == first
    # Even with a different body, the key is (sender, client_id): the first one wins.
    changed = await a.send(bob.username, "a different body", "dup-1")
    assert changed == first

    # A later message is a barrier: a second push of dup-1 would have come before it.
    barrier = await a.send(bob.username, "barrier", "dup-2")
    for device in (a, b):
        await device.wait_for(lambda d=device: len(d.messages()) == 2)  # type: ignore[misc]
        assert [m["id"] for m in device.messages()] == [
            first["message"]["id"],
            barrier["message"]["id"],
        ]
        assert device.cursors() == sorted(set(device.cursors()))
    rows = await stored_rows(server.settings.database_url, "dup-1")
    assert [row["id"] for row in rows] == [first["message"]["id"]]
    assert rows[0]["body"] == "once"
    history = await b.call("history", {"with": ann.username})
    assert [m["id"] for m in history["messages"]] == [
        first["message"]["id"],
        barrier["message"]["id"],
    ]
    await a.disconnect()
    await b.disconnect()


async def test_concurrent_duplicates_store_one_row(server: RunningServer, http: Http) -> None:
    """G2: 20 identical sends in flight at once all answer the same id; one row."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a = await connect(server.url, ann)
    b = await connect(server.url, bob)
    answers = await asyncio.gather(*(a.send(bob.username, "racy", "same") for _ in range(20)))
    assert all(answer["ok"] for answer in answers), answers
    assert len({answer["message"]["id"] for answer in answers}) == 1, answers
    assert all(answer == answers[0] for answer in answers)
    rows = await stored_rows(server.settings.database_url, "same")
    assert len(rows) == 1, rows
    assert rows[0]["id"] == answers[0]["message"]["id"]

    barrier = await a.send(bob.username, "barrier", "after-same")
    await b.wait_for(lambda: barrier["message"]["id"] in {m["id"] for m in b.messages()})
    assert [m["id"] for m in b.messages()] == [
        answers[0]["message"]["id"],
        barrier["message"]["id"],
    ]
    await a.disconnect()
    await b.disconnect()


async def test_concurrent_duplicates_from_two_devices(server: RunningServer, http: Http) -> None:
    """G2: the key is the sender, not the connection: two devices of one user racing
    with the same client_id store one message."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a1 = await connect(server.url, ann)
    a2 = await connect(server.url, ann)
    answers = await asyncio.gather(
        *(device.send(bob.username, "twice", "shared") for device in (a1, a2) for _ in range(5))
    )
    assert len({answer["message"]["id"] for answer in answers}) == 1, answers
    assert len(await stored_rows(server.settings.database_url, "shared")) == 1
    await a1.disconnect()
    await a2.disconnect()


@pytest.fixture
async def first_node(settings: Settings) -> AsyncIterator[list[RunningServer]]:
    """A server whose node the test may replace; whichever runs last is stopped."""
    nodes = [await start_server(settings)]
    yield nodes
    await nodes[-1].stop()


async def test_duplicate_after_restart_answers_the_first_message(
    first_node: list[RunningServer], settings: Settings
) -> None:
    """G2: idempotency lives in the database, so it survives a restart of the server."""
    http = Http(first_node[0].url)
    ann, bob = await http.account("ann"), await http.account("bob")
    a = await connect(first_node[0].url, ann)
    first = await a.send(bob.username, "before restart", "restart-1")
    assert first["ok"], first
    await a.disconnect()
    await first_node[0].stop()

    first_node.append(await start_server(settings))
    url = first_node[-1].url
    a = await connect(url, ann)
    b = await connect(url, bob)
    assert [m["id"] for m in b.messages()] == [first["message"]["id"]]
    again = await a.send(bob.username, "before restart", "restart-1")
    assert again == first
    barrier = await a.send(bob.username, "barrier", "restart-2")
    await b.wait_for(lambda: barrier["message"]["id"] in {m["id"] for m in b.messages()})
    assert [m["id"] for m in b.messages()] == [first["message"]["id"], barrier["message"]["id"]]
    assert len(await stored_rows(settings.database_url, "restart-1")) == 1
    await a.disconnect()
    await b.disconnect()


async def test_same_client_id_from_two_senders_stores_two(
    server: RunningServer, http: Http
) -> None:
    """G2: client_ids are the sender's own: another sender's equal one is a new message."""
    ann, bob, cat = [await http.account(name) for name in ("ann", "bob", "cat")]
    a = await connect(server.url, ann)
    c = await connect(server.url, cat)
    b = await connect(server.url, bob)
    from_ann = await a.send(bob.username, "from ann", "common")
    from_cat = await c.send(bob.username, "from cat", "common")
    assert from_ann["ok"] and from_cat["ok"]
    assert from_ann["message"]["id"] != from_cat["message"]["id"]
    assert from_cat["message"]["from"] == cat.username
    assert from_cat["message"]["body"] == "from cat"
    await b.wait_for(lambda: len(b.messages()) == 2)
    assert {m["body"] for m in b.messages()} == {"from ann", "from cat"}
    rows = await stored_rows(server.settings.database_url, "common")
    assert sorted(row["id"] for row in rows) == sorted(
        [from_ann["message"]["id"], from_cat["message"]["id"]]
    )
    assert await count_messages(server.settings.database_url) == 2
    for device in (a, b, c):
        await device.disconnect()


async def test_a_repeat_among_new_sends_stores_each_new_one_once(
    server: RunningServer, http: Http
) -> None:
    """The writer first takes every send of a batch for new, and a stored key among
    them fails that attempt as a whole; the batch runs again with each key looked up.
    The repeat gets the stored message, every new send is stored once, and the failed
    attempt took no stream position (both streams stay contiguous)."""
    url = server.settings.database_url
    ann, bob = await http.account("ann"), await http.account("bob")
    a = await connect(server.url, ann)
    first = await a.send(bob.username, "first", "k-0")
    assert first["ok"], first

    # Fired together so that they share write batches with the repeat.
    sends = [a.send(bob.username, f"new {i}", f"k-{i}") for i in range(1, 11)]
    sends.insert(5, a.send(bob.username, "first, again", "k-0"))
    answers = await asyncio.gather(*sends)

    assert all(answer["ok"] for answer in answers), answers
    assert answers[5]["message"] == first["message"]
    new = answers[:5] + answers[6:]
    assert [m["message"]["body"] for m in new] == [f"new {i}" for i in range(1, 11)]
    assert len({m["message"]["id"] for m in new} | {first["message"]["id"]}) == 11
    rows = await sql(
        url,
        "SELECT username, stream_seq FROM users ORDER BY id",
        "SELECT count(*) FROM stream_events",
        "SELECT count(*) FROM messages",
    )
    assert rows == [(ann.username, 11), (bob.username, 11), (22,), (11,)]
    await a.disconnect()
