"""The group-commit `Writer` in process, on a real SQLite file: `stop` answers every
item submitted before it and refuses the rest, and a failing item fails only itself.
(tests/test_writer.py checks the same failure paths through a running server.)"""

from __future__ import annotations

import asyncio

import pytest

from messenger.delivery.batch import SendResult
from messenger.delivery.writer import Writer
from messenger.errors import ErrorCode, MessengerError
from messenger.metrics import Metrics
from messenger.protocol import STATUS_DELIVERED
from messenger.store.db import Database
from messenger.store.streams import stream_heads
from messenger.store.users import insert_user, users_by_names
from messenger.wire import StreamItem, UserRef, utc_now
from tests.support import poison_messages


class Published:
    """The writer's notifier (`AfterCommit`): what it handed on after each commit."""

    def __init__(self) -> None:
        self.items: list[StreamItem] = []

    async def committed(self, items: list[StreamItem]) -> None:
        self.items.extend(items)


async def two_users(db: Database) -> tuple[UserRef, UserRef]:
    ann = await db.write(insert_user, "ann", "x", utc_now())
    bob = await db.write(insert_user, "bob", "x", utc_now())
    return UserRef(ann, "ann"), UserRef(bob, "bob")


async def last_seen(db: Database) -> dict[str, bool]:
    """Whether each user's `last_seen` (what touches write) is set."""
    rows = await db.read(users_by_names, ["ann", "bob"])
    return {row["username"]: row["last_seen"] is not None for row in rows}


async def test_stop_answers_every_submitted_item_then_refuses_new_ones(database: Database) -> None:
    """Items queued before `stop` are committed and answered by the time it returns,
    across several batches and while one is committing; afterwards sends and marks
    fail `unavailable` at once and touches are dropped."""
    ann, bob = await two_users(database)
    published = Published()
    writer = Writer(database, published, Metrics(), batch_max=4)
    await writer.start()
    early = [writer.submit_send(ann, bob, f"early {i}", f"e-{i}") for i in range(3)]
    await asyncio.sleep(0)  # the writer takes them as its first batch
    late = [writer.submit_send(ann, bob, f"late {i}", f"l-{i}") for i in range(10)]
    writer.touch(bob.id, utc_now())
    # A fresh database numbers messages from 1: the first two are early ones.
    mark = writer.submit_mark(bob, [1, 2], STATUS_DELIVERED)

    await writer.stop()

    sends = early + late
    assert mark.done() and all(future.done() for future in sends)
    results = [future.result() for future in sends]
    assert all(isinstance(result, SendResult) and result.created for result in results)
    ids = [result.message["id"] for result in results]
    assert ids == sorted(ids) and len(set(ids)) == 13 and ids[:2] == [1, 2]
    assert mark.result() == 2
    assert await last_seen(database) == {"ann": False, "bob": True}
    # 13 messages in both streams, and the delivery receipt in ann's.
    assert len(published.items) == 2 * 13 + 1
    heads = await database.read(stream_heads, [ann.id, bob.id])
    assert heads == {ann.id: 14, bob.id: 13}

    for refused in (
        lambda: writer.submit_send(ann, bob, "after", "after-1"),
        lambda: writer.submit_mark(bob, ids, STATUS_DELIVERED),
    ):
        with pytest.raises(MessengerError) as caught:
            refused()
        assert caught.value.code == ErrorCode.UNAVAILABLE
    writer.touch(ann.id, utc_now())  # dropped, never raises
    assert await database.read(stream_heads, [ann.id, bob.id]) == heads
    assert await last_seen(database) == {"ann": False, "bob": True}


async def test_a_failing_item_fails_alone_and_the_others_commit(
    database: Database, db_url: str
) -> None:
    """A batch the database refuses for one item is run again item by item: that item
    fails `internal` and takes no stream position, the others are stored, answered
    and published."""
    ann, bob = await two_users(database)
    await poison_messages(db_url, "NEW.body = 'poison'")
    published = Published()
    writer = Writer(database, published, Metrics())
    await writer.start()
    bodies = ["one", "two", "poison", "three", "four"]
    futures = [writer.submit_send(ann, bob, body, f"p-{i}") for i, body in enumerate(bodies)]
    answers = await asyncio.gather(*futures, return_exceptions=True)
    await writer.stop()

    (failed,) = [a for a in answers if isinstance(a, BaseException)]
    assert isinstance(failed, MessengerError) and failed.code == ErrorCode.INTERNAL
    assert answers.index(failed) == 2
    stored = [a.message["body"] for a in answers if isinstance(a, SendResult)]
    assert stored == ["one", "two", "three", "four"]
    assert await database.read(stream_heads, [ann.id, bob.id]) == {ann.id: 4, bob.id: 4}
    assert sorted(item.seq for item in published.items if item.user_id == bob.id) == [1, 2, 3, 4]
