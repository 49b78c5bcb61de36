"""`LiveHub`: pushes in cursor order, the short hold of events behind a gap, the held
maximum, the two-tick resync and the byte budget. The hub reads a real SQLite file
whose rows `apply_batch` wrote; the transport is `RecordingPusher`, a double of the
`Pusher` protocol the live side is written against."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from messenger.delivery.batch import SendOrder, apply_batch
from messenger.delivery.live import GAP_WAIT, HELD_MAX, LiveConnection, LiveHub
from messenger.delivery.streams import StreamReader
from messenger.directory import Directory
from messenger.metrics import Metrics
from messenger.protocol import SYNCED
from messenger.store.db import Database
from messenger.store.streams import stream_head
from messenger.store.users import insert_user
from messenger.wire import StreamItem, UserRef, utc_now

BUDGET = 64 * 1024


@dataclass
class RecordingPusher:
    """The transport boundary: records what is emitted and dropped, and reports the
    bytes a test says are waiting for each connection."""

    emits: list[tuple[str, dict[str, Any], str, float]] = field(default_factory=list)
    disconnects: list[tuple[str, bool]] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)

    async def emit(self, event: str, data: dict[str, Any], sid: str) -> None:
        self.emits.append((event, data, sid, time.monotonic()))

    def pending(self, sid: str) -> int:
        return self.waiting.get(sid, 0)

    async def disconnect(self, sid: str, abort: bool = False) -> None:
        self.disconnects.append((sid, abort))

    def cursors(self, sid: str) -> list[int]:
        """The cursors of the stream events the connection got, in order."""
        return [
            data["cursor"] for event, data, to, _ in self.emits if to == sid and event != SYNCED
        ]


@dataclass
class Scene:
    db: Database
    hub: LiveHub
    pusher: RecordingPusher
    metrics: Metrics
    ann: UserRef
    bob: UserRef

    async def sends(self, count: int = 1) -> list[StreamItem]:
        """Commit `count` messages from ann to bob; bob's events of them, unpushed."""
        orders = [
            SendOrder(self.ann, self.bob, f"hello {i}", f"c-{time.monotonic_ns()}-{i}")
            for i in range(count)
        ]
        outcome = await self.db.write(apply_batch, orders, utc_now(), False, look_up=True)
        return [item for item in outcome.events if item.user_id == self.bob.id]

    async def connect_bob(self, sid: str = "bob-1") -> LiveConnection:
        """A connection of bob, attached at his current head and synced."""
        head = await self.db.read(stream_head, self.bob.id)
        conn = LiveConnection(
            sid, self.bob, token_id=1, seed=False, last_seq=head, replay_undelivered_to=0
        )
        self.hub.attach(conn, head)
        await until(lambda: conn.synced and conn.catching_up is None)
        return conn

    def counted(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(f"messenger_{name}_total")
        return value or 0.0


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


@pytest.fixture
async def scene(database: Database) -> AsyncIterator[Scene]:
    ann_id = await database.write(insert_user, "ann", "x", utc_now())
    bob_id = await database.write(insert_user, "bob", "x", utc_now())
    pusher, metrics = RecordingPusher(), Metrics()
    reader = StreamReader(database, Directory(database))
    hub = LiveHub(pusher, reader, metrics, connection_buffer=BUDGET)
    yield Scene(database, hub, pusher, metrics, UserRef(ann_id, "ann"), UserRef(bob_id, "bob"))
    await hub.close()


async def test_events_are_pushed_in_cursor_order(scene: Scene) -> None:
    """Events of several commits handed over out of order go out in cursor order, each
    as committed; only the user's own connections get them."""
    conn = await scene.connect_bob()
    assert conn.last_seq == 0
    first, second, third = (await scene.sends(2), await scene.sends(1), await scene.sends(2))
    await scene.hub.deliver(third + first + second[::-1])
    sid = conn.sid
    assert scene.pusher.cursors(sid) == [1, 2, 3, 4, 5]
    expected = [(item.event, item.data) for item in first + second + third]
    assert [(event, data) for event, data, to, _ in scene.pusher.emits if to == sid][1:] == expected
    assert {to for _, _, to, _ in scene.pusher.emits} == {sid}  # ann has no connection here
    await scene.hub.deliver(first)  # pushed already: not again
    assert scene.pusher.cursors(sid) == [1, 2, 3, 4, 5]
    assert conn.last_seq == 5 and conn.held == {}


async def test_an_event_behind_a_gap_waits_for_the_missing_one(scene: Scene) -> None:
    """An event after a gap is held, not pushed; the missing event arriving within
    GAP_WAIT releases both in order, and SQL is not read."""
    conn = await scene.connect_bob()
    first, second = await scene.sends(), await scene.sends()
    await scene.hub.deliver(second)
    assert scene.pusher.cursors(conn.sid) == []
    assert list(conn.held) == [2] and conn.gap_timer is not None
    await scene.hub.deliver(first)
    assert scene.pusher.cursors(conn.sid) == [1, 2]
    assert conn.held == {} and conn.gap_timer is None and conn.catching_up is None
    await asyncio.sleep(GAP_WAIT * 1.5)
    assert scene.counted("gap_repairs") == 0
    assert scene.counted("backlog_events") == 0
    assert scene.pusher.cursors(conn.sid) == [1, 2]


async def test_a_gap_nothing_fills_is_read_from_sql_after_gap_wait(scene: Scene) -> None:
    """When the missing event never comes, the held ones wait GAP_WAIT (not less),
    then the connection catches up from SQL: the lost event and the held one, in
    order, once each."""
    conn = await scene.connect_bob()
    await scene.sends()  # its push is lost
    second = await scene.sends()
    held_at = time.monotonic()
    await scene.hub.deliver(second)
    assert scene.pusher.cursors(conn.sid) == []
    assert list(conn.held) == [2] and conn.catching_up is None
    await until(lambda: scene.pusher.cursors(conn.sid) == [1, 2])
    first_push = next(at for event, _, _, at in scene.pusher.emits if event != SYNCED)
    # The timer may fire up to a clock tick early.
    assert first_push - held_at >= GAP_WAIT * 0.9
    assert scene.counted("gap_repairs") == 1
    assert scene.counted("backlog_events") == 2
    assert conn.held == {} and conn.gap_timer is None


async def test_more_than_held_max_events_fill_the_gap_at_once(scene: Scene) -> None:
    """HELD_MAX events behind a gap still wait; one more and the connection catches
    up from SQL at once, without waiting out GAP_WAIT."""
    conn = await scene.connect_bob()
    items = await scene.sends(HELD_MAX + 2)
    assert [item.seq for item in items] == list(range(1, HELD_MAX + 3))
    await scene.hub.deliver(items[2:])  # cursor 1 and 2 missing: HELD_MAX held
    assert len(conn.held) == HELD_MAX and conn.gap_timer is not None
    assert conn.catching_up is None
    await scene.hub.deliver(items[1:2])  # now HELD_MAX + 1 wait behind cursor 1
    assert conn.catching_up is not None, "the gap is filled now, not after GAP_WAIT"
    assert conn.held == {} and conn.gap_timer is None
    await until(lambda: conn.catching_up is None)
    assert scene.pusher.cursors(conn.sid) == list(range(1, HELD_MAX + 3))
    assert scene.counted("gap_repairs") == 0


async def test_resync_repairs_only_a_connection_behind_the_previous_ticks_head(
    scene: Scene,
) -> None:
    """A head read now may belong to a push still on its way, so a tick repairs only
    connections behind the head read one tick before: a lost push is repaired on the
    second tick, and a push that arrives between ticks is not doubled."""
    conn = await scene.connect_bob()
    await scene.sends()  # its push is lost
    await scene.hub.resync()
    assert conn.catching_up is None and scene.counted("resyncs") == 0
    assert scene.pusher.cursors(conn.sid) == []
    await scene.hub.resync()
    assert scene.counted("resyncs") == 1
    await until(lambda: scene.pusher.cursors(conn.sid) == [1] and conn.catching_up is None)

    late = await scene.sends()  # its push comes after the next tick reads the head
    await scene.hub.resync()
    assert conn.catching_up is None
    await scene.hub.deliver(late)
    await scene.hub.resync()
    assert conn.catching_up is None
    assert scene.counted("resyncs") == 1
    assert scene.pusher.cursors(conn.sid) == [1, 2]


async def test_a_connection_past_its_byte_budget_is_dropped(scene: Scene) -> None:
    """A live push cannot wait for a client that stopped reading: one that leaves more
    than the budget unread drops the connection at once (abort), a full budget not."""
    conn = await scene.connect_bob()
    scene.pusher.waiting[conn.sid] = BUDGET
    await scene.hub.deliver(await scene.sends())
    assert scene.pusher.disconnects == []
    scene.pusher.waiting[conn.sid] = BUDGET + 1
    await scene.hub.deliver(await scene.sends())
    assert scene.pusher.disconnects == [(conn.sid, True)]
    assert scene.pusher.cursors(conn.sid) == [1, 2]
