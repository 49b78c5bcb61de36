"""Several nodes (G3, G9): real `messenger serve` processes on loopback ports share one
PostgreSQL database and a Redis server; clients on different nodes see one another's
messages, receipts, presence and logouts, and nothing acknowledged is lost when a node
is killed or Redis goes away.

The module has one fresh PostgreSQL database. Tests that break nothing share a pair
of nodes whose resync is off, so only a push through Redis can reach the other node
in time: the SQL repair cannot stand in for a broken live push. Tests that kill a
node or Redis get nodes and a Redis server of their own (never the shared Redis on
6379), with the resync at 0.5 s. The PostgreSQL users are made in-process with a cheap
password hash (see `cluster_support.accounts`).

`test_presence_expires_after_kill_9_of_a_node` is marked `slow`: it waits out the
30 s presence TTL of messenger/cluster/presence.py.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import RedisError

from messenger.cluster.presence import TTL_SECONDS
from tests.cluster_support import (
    Nodes,
    RedisServer,
    Sender,
    accounts,
    body_of,
    close_all,
    connect,
    ids_of,
    stream,
    sync_all,
    wait_until,
)
from tests.conftest import PG_HOST_URL, _pg_admin_blocking, service_missing
from tests.processes import ServeProcess
from tests.support import Account, Device, Http, assert_contiguous, stored_conversation

# Long enough that only a push through Redis can arrive within a test's timeouts.
NO_RESYNC = 120.0
RESYNCS = "messenger_resyncs_total"
CHANNEL = "messenger"  # the nodes' pub/sub channel (messenger/cluster/bus.py)


@pytest.fixture(scope="module")
def cluster_db(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this module, dropped afterwards."""
    name = f"messenger_cluster_{uuid.uuid4().hex[:12]}"
    _pg_admin_blocking(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield f"{PG_HOST_URL}/{name}"
    _pg_admin_blocking(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def own_redis(log: Path) -> RedisServer:
    server = RedisServer(log)
    if server.available() is None:
        service_missing("Redis", "redis-server is not installed")
    try:
        server.start()
    except (OSError, RedisError) as exc:
        service_missing("Redis", exc)
    return server


@dataclass
class Pair:
    a: ServeProcess
    b: ServeProcess
    database_url: str
    nodes: Nodes


@pytest.fixture(scope="module")
def shared_pair(cluster_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two nodes and a Redis that stay healthy, shared by the tests that kill nothing.
    Their resync is off: whatever crosses between them crosses through Redis."""
    logs = tmp_path_factory.mktemp("pair")
    redis = own_redis(logs / "redis.log")
    started = Nodes(cluster_db, logs)
    try:
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda _: started.start_sync(redis.url, NO_RESYNC), range(2))
        yield Pair(a, b, cluster_db, started)
    finally:
        started.close()
        redis.kill()


@pytest.fixture
def pair(shared_pair: Pair) -> Iterator[Pair]:
    yield shared_pair
    print(shared_pair.nodes.report())  # pytest shows it when the test failed


@pytest.fixture
def nodes(cluster_db: str, tmp_path: Path) -> Iterator[Nodes]:
    """Nodes of one test, which it may kill; all killed at the end."""
    started = Nodes(cluster_db, tmp_path)
    yield started
    started.close()
    print(started.report())  # pytest shows it when the test failed


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, which it may kill and start again."""
    server = own_redis(tmp_path / "redis.log")
    yield server
    server.kill()


async def presence_of(device: Device, *names: str) -> dict[str, Any]:
    answer = await device.call("presence", {"users": list(names)})
    assert answer["ok"], answer
    return dict(answer["users"])


async def is_online(asker: Device, name: str) -> bool:
    return bool((await presence_of(asker, name))[name]["online"])


async def is_offline(asker: Device, name: str) -> bool:
    return not await is_online(asker, name)


def assert_one_row_per_client_id(stored: list[dict[str, Any]]) -> None:
    client_ids = [(m["from"], m["client_id"]) for m in stored]
    assert len(client_ids) == len(set(client_ids)), "a client_id was stored twice"
    assert len({m["id"] for m in stored}) == len(stored)


# -- 1. live push across nodes -----------------------------------------------------------


async def test_messages_and_receipts_cross_nodes_live(pair: Pair) -> None:
    """G3, G5 across nodes: every device of both users, on either node, gets each
    message and receipt live through Redis (no SQL repair: resync is off), and all
    devices of a user see the same stream with contiguous cursors."""
    a, b = pair.a, pair.b
    ann, bob = await accounts(pair.database_url, "ann", "bob")
    (a1, s_a1), (a2, s_a2) = await connect(a.url, ann), await connect(b.url, ann)
    (b1, s_b1), (b2, s_b2) = await connect(b.url, bob), await connect(a.url, bob)
    devices = ((a1, s_a1), (a2, s_a2), (b1, s_b1), (b2, s_b2))

    # Sent on A: bob's device on B, and ann's other device on B, get it.
    first = await a1.send(bob.username, "hello across", "x-1")
    assert first["ok"], first
    for device, _ in devices:
        await device.wait_for(lambda d=device: len(d.messages()) == 1)  # type: ignore[misc]
        assert device.messages() == [first["message"]]

    # Receipts: read on B reaches ann on A and B and bob's device on A.
    marked = await b1.call("read", {"ids": [first["message"]["id"]]})
    assert marked == {"ok": True, "updated": 1}
    for device in (a1, a2, b2):
        await device.wait_for(lambda d=device: len(d.of("receipt")) == 1)  # type: ignore[misc]
        receipt = device.of("receipt")[0]
        assert receipt["ids"] == [first["message"]["id"]]
        assert (receipt["status"], receipt["by"]) == ("read", bob.username)

    # Interleaved traffic both ways from both nodes, with reads on A.
    for i in range(10):
        to_bob = await (a1, a2)[i % 2].send(bob.username, f"to bob {i}", f"ab-{i}")
        to_ann = await (b1, b2)[i % 2].send(ann.username, f"to ann {i}", f"ba-{i}")
        assert to_bob["ok"] and to_ann["ok"], (to_bob, to_ann)
        read = await b2.call("read", {"ids": [to_bob["message"]["id"]]})
        assert read == {"ok": True, "updated": 1}
    total = 2 + 10 * 3  # first message, its receipt, then per round 2 messages + 1 receipt
    for device, synced in devices:
        await device.wait_for(lambda d=device: len(d.cursors()) >= total)  # type: ignore[misc]
        await asyncio.sleep(0)
        assert len(device.cursors()) == total
        assert_contiguous(device, synced)
    assert stream(a1) == stream(a2), "ann's devices on A and B saw different streams"
    assert stream(b1) == stream(b2), "bob's devices on B and A saw different streams"
    assert [m["body"] for m in a1.messages()][-2:] == ["to bob 9", "to ann 9"]
    await close_all(a1, a2, b1, b2)


async def test_changes_and_typing_cross_nodes_live(pair: Pair) -> None:
    """Edits, reactions and deletes made on one node reach both users' devices on the
    other through Redis, in cursor order with the messages (resync is off); typing
    crosses too, and is not in the stream."""
    ann, bob = await accounts(pair.database_url, "ann", "bob")
    (a1, s_a1), (a2, s_a2) = await connect(pair.a.url, ann), await connect(pair.b.url, ann)
    (b1, s_b1) = await connect(pair.b.url, bob)
    sent = await a1.send(bob.username, "first words", "lc-1")
    message_id = sent["message"]["id"]
    edited = await a1.call("edit", {"id": message_id, "body": "better words", "client_id": "e1"})
    reacted = await b1.call("react", {"id": message_id, "emoji": "🎉"})
    deleted = await a2.call("delete", {"id": message_id, "for": "everyone"})
    assert edited["ok"] and reacted["ok"] and deleted["ok"], (edited, reacted, deleted)
    for device, synced in ((a1, s_a1), (a2, s_a2), (b1, s_b1)):
        await device.wait_for(  # type: ignore[misc]
            lambda d=device: len(d.of("message_updated")) == 3
        )
        changes = [u["change"] for u in device.of("message_updated")]
        assert changes == ["edited", "reacted", "deleted"], changes
        assert device.of("message_updated")[-1]["message"] == deleted["message"]
        assert_contiguous(device, synced)
    await a1.call("typing", {"to": bob.username, "state": True})
    await b1.wait_for(lambda: len(b1.of("typing")) == 1)
    assert b1.of("typing") == [{"from": ann.username, "state": True}]
    await a1.disconnect()  # the typer's node ends it, and says so across
    await b1.wait_for(lambda: len(b1.of("typing")) == 2)
    assert b1.of("typing")[1]["state"] is False
    await close_all(a2, b1)


# -- 2. the acceptance flows across nodes --------------------------------------------


async def test_offline_flush_across_nodes(pair: Pair) -> None:
    """G4: sent on A while the recipient is offline; on connect to B the backlog comes,
    in order, then `synced` at the head; live events continue from there."""
    a, b = pair.a, pair.b
    ann, carl = await accounts(pair.database_url, "ann", "carl")
    sender, _ = await connect(a.url, ann)
    waiting = []
    for i in range(5):
        answer = await sender.send(carl.username, f"while away {i}", f"off-{i}")
        assert answer["ok"], answer
        waiting.append(answer["message"])

    device = await Device(b.url).connect(carl.token)
    synced = await device.wait_synced()
    assert device.messages() == waiting
    assert device.cursors() == [1, 2, 3, 4, 5]
    assert synced == 5
    assert [name for name, _ in device.events] == ["new_message"] * 5 + ["synced"]

    live = await sender.send(carl.username, "now live", "off-live")
    assert live["ok"], live
    await device.wait_for(lambda: len(device.messages()) == 6)
    assert device.messages()[-1] == live["message"]
    assert_contiguous(device, 0)
    await close_all(sender, device)


async def test_cursor_resume_across_nodes(pair: Pair) -> None:
    """G4: a device that leaves node A resumes on node B with its cursor: exactly the
    events after it (messages and receipts made on either node), contiguous, then
    `synced`."""
    a, b = pair.a, pair.b
    ann, bob = await accounts(pair.database_url, "ann", "bob")
    ann_a, _ = await connect(a.url, ann)
    ann_b, _ = await connect(b.url, ann)
    bob_a, _ = await connect(a.url, bob)
    early = [(await ann_b.send(bob.username, f"e{i}", f"early-{i}"))["message"] for i in range(3)]
    from_bob = (await bob_a.send(ann.username, "from bob", "bob-1"))["message"]
    await bob_a.wait_for(lambda: len(bob_a.messages()) == 4)
    marked = await bob_a.call("read", {"ids": ids_of(early)})
    assert marked == {"ok": True, "updated": 3}
    await bob_a.wait_for(lambda: len(bob_a.of("receipt")) == 1)
    cursor = bob_a.cursors()[-1]
    await bob_a.disconnect()

    # While bob is away: a message on B, ann reads bob's message on A, a message on A.
    later = [(await ann_b.send(bob.username, "later-1", "later-1"))["message"]]
    assert await ann_a.call("read", {"ids": [from_bob["id"]]}) == {"ok": True, "updated": 1}
    later.append((await ann_a.send(bob.username, "later-2", "later-2"))["message"])

    back, synced = await connect(b.url, bob, cursor=cursor)
    events = stream(back)
    assert [data["cursor"] for _, data in events] == [cursor + 1, cursor + 2, cursor + 3]
    assert [name for name, _ in events] == ["new_message", "receipt", "new_message"]
    assert events[0][1]["message"]["id"] == later[0]["id"]
    assert (events[1][1]["ids"], events[1][1]["status"]) == ([from_bob["id"]], "read")
    assert events[2][1]["message"]["id"] == later[1]["id"]
    assert synced == cursor + 3
    assert back.events[-1][0] == "synced"
    await close_all(ann_a, ann_b, back)


async def test_idempotency_across_nodes(pair: Pair) -> None:
    """G2: the same client_id sent at the same moment on A and on B (two devices of one
    sender) answers one message with one id, stores one row and pushes it once."""
    a, b = pair.a, pair.b
    ann, bob = await accounts(pair.database_url, "ann", "bob")
    on_a, _ = await connect(a.url, ann)
    on_b, _ = await connect(b.url, ann)
    bob_b, bob_synced = await connect(b.url, bob)
    rounds = 20
    for i in range(rounds):
        client_id = f"same-{i}"
        first, second = await asyncio.gather(
            on_a.send(bob.username, body_of(client_id), client_id),
            on_b.send(bob.username, body_of(client_id), client_id),
        )
        assert first["ok"] and second["ok"], (first, second)
        assert first["message"] == second["message"], (first, second)

    stored = await stored_conversation(a.url, bob, ann.username)
    assert [m["client_id"] for m in stored] == [f"same-{i}" for i in range(rounds)]
    assert_one_row_per_client_id(stored)
    # Pushed once: bob's device saw each message exactly once, and no more events.
    await bob_b.wait_for(lambda: len(bob_b.messages()) >= rounds)
    await asyncio.sleep(0.3)  # a second push, if there were one, would arrive by now
    assert ids_of(bob_b.messages()) == ids_of(stored)
    assert_contiguous(bob_b, bob_synced)
    events = await sync_all(bob_b)
    assert [e["data"]["cursor"] for e in events] == list(range(1, rounds + 1))
    await close_all(on_a, on_b, bob_b)


# -- 3. contiguous cursors under concurrency -----------------------------------------


async def test_one_recipient_hammered_from_two_nodes(pair: Pair) -> None:
    """Stream seqs stay contiguous when two nodes' writers commit to one user at once:
    4 senders x 100 messages, two senders per node, all in flight together. The stream
    read back through `sync` is exactly 1..400, and bob's live devices on both nodes
    saw every cursor once, in order; each sender's messages are stored in send order."""
    per_sender = 100
    a, b = pair.a, pair.b
    bob, *senders = await accounts(pair.database_url, "bob", "s0", "s1", "s2", "s3")
    bob_a, synced_a = await connect(a.url, bob)
    bob_b, synced_b = await connect(b.url, bob)
    assert synced_a == synced_b == 0
    loads = []
    for n, account in enumerate(senders):
        device = await Device((a, b)[n % 2].url).connect(account.token)
        client_ids = [f"h{n}-{i}" for i in range(per_sender)]
        loads.append(Sender(device, bob.username, client_ids, window=8))
    await asyncio.wait_for(asyncio.gather(*(load.run() for load in loads)), 60)
    for load in loads:
        assert not load.errors, load.errors[:3]
        assert len(load.acks) == per_sender
    total = per_sender * len(senders)
    acked = {m["id"] for load in loads for m in load.acks.values()}
    assert len(acked) == total

    for device in (bob_a, bob_b):
        await device.wait_for(lambda d=device: len(d.cursors()) >= total, timeout=20)
        assert device.cursors() == list(range(1, total + 1))
        assert set(ids_of(device.messages())) == acked

    events = await sync_all(bob_a)
    assert [e["data"]["cursor"] for e in events] == list(range(1, total + 1))
    assert all(e["event"] == "new_message" for e in events)
    assert {e["data"]["message"]["id"] for e in events} == acked
    # A sender's messages to one recipient keep their send order, in ids and cursors.
    for load in loads:
        ids = [load.acks[client_id]["id"] for client_id in load.client_ids]
        assert ids == sorted(ids)
        cursors = {e["data"]["message"]["id"]: e["data"]["cursor"] for e in events}
        assert [cursors[i] for i in ids] == sorted(cursors[i] for i in ids)
    await close_all(bob_a, bob_b, *(load.device for load in loads))


# -- 4. a node killed mid-traffic ----------------------------------------------------


async def test_kill_9_of_a_node_mid_traffic(nodes: Nodes, redis: RedisServer) -> None:
    """G1, G6 across nodes: node B is killed with sends in flight on it and on A.
    Its clients reconnect to A with their last cursors (and the sender retries what
    was not answered, with the same client ids): every acknowledged message reaches
    bob, nothing is stored twice, and duplicates come only as G6 allows (same id)."""
    a, b = await nodes.start_many(2, redis.url)
    ann, carl, bob = await accounts(nodes.database_url, "ann", "carl", "bob")
    bob_a, synced_a = await connect(a.url, bob)  # survives
    bob_b, synced_b = await connect(b.url, bob)  # loses its node
    ann_b, ann_synced = await connect(b.url, ann)
    carl_a, _ = await connect(a.url, carl)
    killed = asyncio.Event()
    carl_at_kill: list[int] = []
    ann_load = Sender(ann_b, bob.username, [f"k-ann-{i}" for i in range(300)], window=8)
    carl_load = Sender(carl_a, bob.username, [f"k-carl-{i}" for i in range(150)], window=4)

    def maybe_kill() -> None:
        if len(ann_load.acks) >= 100 and not killed.is_set():
            b.send_signal(signal.SIGKILL)
            carl_at_kill.append(len(carl_load.acks))
            killed.set()

    ann_load.on_ack = maybe_kill
    carl_task = asyncio.create_task(carl_load.run())
    ann_task = asyncio.create_task(ann_load.run())
    await asyncio.wait_for(killed.wait(), 30)
    assert await b.wait_exit(10) == -signal.SIGKILL
    ann_task.cancel()
    await asyncio.gather(ann_task, return_exceptions=True)
    acked_before_kill = dict(ann_load.acks)
    assert len(acked_before_kill) >= 100
    assert carl_at_kill[0] < 150, "A's traffic should still be running at the kill"
    assert not ann_load.errors, ann_load.errors[:3]

    # The killed node's clients come back on A with the last cursor they processed.
    bob_cursor, ann_cursor = bob_b.cursors()[-1], ann_b.cursors()[-1]
    bob_back, _ = await connect(a.url, bob, cursor=bob_cursor)
    ann_back, _ = await connect(a.url, ann, cursor=ann_cursor)
    retry = Sender(ann_back, bob.username, ann_load.unacked(), window=8)
    await asyncio.wait_for(retry.run(), 60)
    await asyncio.wait_for(carl_task, 60)
    assert not retry.errors and not carl_load.errors, (retry.errors[:3], carl_load.errors[:3])
    assert len(carl_load.acks) == 150

    # What ann was told before the kill still stands: retries of the same client id
    # answer the stored message, never a second one.
    ann_acks = {**retry.acks, **acked_before_kill}
    for client_id, message in retry.acks.items():
        assert client_id not in acked_before_kill
        assert message["client_id"] == client_id
    acked = {m["id"] for m in [*ann_acks.values(), *carl_load.acks.values()]}
    assert len(acked) == 450

    # Stored: exactly one row per client id, each with its acknowledged id and body.
    stored = await stored_conversation(a.url, bob, ann.username)
    assert_one_row_per_client_id(stored)
    assert {m["client_id"]: m["id"] for m in stored} == {
        cid: m["id"] for cid, m in ann_acks.items()
    }
    assert all(m["body"] == body_of(m["client_id"]) for m in stored)

    # bob's device on A never left: every message once, cursors contiguous.
    await bob_a.wait_for(lambda: len(bob_a.cursors()) >= 450, timeout=20)
    assert_contiguous(bob_a, synced_a)
    assert set(ids_of(bob_a.messages())) == acked
    assert len(bob_a.messages()) == 450

    # bob's device from B, before and after moving: nothing acknowledged is missing,
    # no cursor is skipped, and a repeated cursor is the same message (G6 duplicate).
    await bob_back.wait_for(lambda: bob_back.cursors()[-1:] == [450], timeout=20)
    assert_contiguous(bob_b, synced_b)
    seen: dict[int, int] = {}
    for _, data in stream(bob_b) + stream(bob_back):
        assert seen.setdefault(data["cursor"], data["message"]["id"]) == data["message"]["id"]
    assert sorted(seen) == list(range(1, 451))
    assert set(seen.values()) == acked
    after_cursor = [c for c in bob_back.cursors() if c > bob_cursor]
    assert after_cursor == list(range(bob_cursor + 1, 451))

    # ann's device came back with its cursor: its stream has no hole either.
    await ann_back.wait_for(lambda: max(ann_back.cursors(), default=0) >= 300, timeout=20)
    ann_seen = {c for c in ann_b.cursors() + ann_back.cursors()}
    assert ann_seen == set(range(ann_synced + 1, 301))
    await close_all(bob_a, bob_back, ann_back, carl_a)


# -- 5. Redis restarted or gone ------------------------------------------------------


async def test_redis_restart_mid_traffic_loses_nothing(nodes: Nodes, redis: RedisServer) -> None:
    """G9: Redis is killed and started again while A sends to bob, whose device is on
    B. The device keeps receiving every message without reconnecting (repaired from
    SQL within seconds), in cursor order; once Redis is back, live push resumes."""
    a, b = await nodes.start_many(2, redis.url)
    ann, bob = await accounts(nodes.database_url, "ann", "bob")
    sender, _ = await connect(a.url, ann)
    bob_b, synced = await connect(b.url, bob)
    sid = bob_b.sio.sid
    load = Sender(sender, bob.username, [f"r-{i}" for i in range(120)], window=2, pace=0.04)
    outage: dict[str, int] = {}

    async def restart_redis() -> None:
        await wait_until(lambda: len(load.acks) >= 30, 30)
        await asyncio.to_thread(redis.kill)
        outage["killed_at"] = len(load.acks)
        # While Redis is down, what A acknowledges still reaches B within seconds.
        await wait_until(lambda: len(load.acks) >= outage["killed_at"] + 10, 10)
        so_far = {message["id"] for message in load.acks.values()}
        await wait_until(lambda: so_far <= set(ids_of(bob_b.messages())), 5)
        outage["back_at"] = len(load.acks)
        await asyncio.to_thread(redis.start)

    await asyncio.wait_for(asyncio.gather(load.run(), restart_redis()), 60)
    # The traffic spanned the outage: sends before, during and after it.
    assert 30 <= outage["killed_at"] < outage["back_at"] < 110, outage
    assert not load.errors, load.errors[:3]
    assert len(load.acks) == 120
    acked = [load.acks[cid]["id"] for cid in load.client_ids]

    # Every acknowledged message reaches bob's device on B, which never reconnected.
    await bob_b.wait_for(lambda: len(bob_b.messages()) >= 120, timeout=10)
    assert bob_b.sio.connected and bob_b.sio.sid == sid
    assert ids_of(bob_b.messages()) == acked
    assert_contiguous(bob_b, synced)

    # Live push resumes: once both nodes have subscribed again, a burst crosses with
    # no SQL repair at all.
    await _wait_for_live_push(redis, 2)
    repairs = await b.metric(RESYNCS)
    burst = []
    for i in range(20):
        answer = await sender.send(bob.username, f"burst {i}", f"rb-{i}")
        assert answer["ok"], answer
        burst.append(answer["message"])
    await bob_b.wait_for(lambda: ids_of(bob_b.messages())[-20:] == ids_of(burst), timeout=5)
    await asyncio.sleep(1.2)  # two resync ticks: a repair would be counted by now
    assert await b.metric(RESYNCS) == repairs, "the burst needed SQL repair: no live push"
    assert_contiguous(bob_b, synced)
    assert bob_b.sio.sid == sid
    await close_all(sender, bob_b)


async def test_redis_down_sends_still_reach_other_nodes(nodes: Nodes, redis: RedisServer) -> None:
    """G9: with Redis gone for good, sends on A still succeed and reach bob's devices on
    B (connected before) and on C (a node started while Redis is down), through the
    SQL resync, in cursor order and without reconnecting."""
    a, b = await nodes.start_many(2, redis.url)
    ann, bob = await accounts(nodes.database_url, "ann", "bob")
    sender, _ = await connect(a.url, ann)
    bob_b, synced_b = await connect(b.url, bob)
    redis.kill()
    c = await nodes.start(redis.url)
    bob_c, synced_c = await connect(c.url, bob)

    sent = []
    for i in range(20):
        answer = await sender.send(bob.username, f"no redis {i}", f"nr-{i}")
        assert answer["ok"], answer
        sent.append(answer["message"])
    for device, synced in ((bob_b, synced_b), (bob_c, synced_c)):
        took = time.monotonic()
        await device.wait_for(lambda d=device: len(d.messages()) >= 20, timeout=5)
        assert ids_of(device.messages()) == ids_of(sent), time.monotonic() - took
        assert_contiguous(device, synced)
        assert device.sio.connected
    assert await b.metric(RESYNCS) >= 1  # the repair did it: nothing else could

    # And the other way: a reply from bob on B reaches ann on A.
    reply = await bob_b.send(ann.username, "got them", "nr-reply")
    assert reply["ok"], reply
    await sender.wait_for(lambda: reply["message"] in sender.messages(), timeout=5)
    await close_all(sender, bob_b, bob_c)


# -- 6. presence across nodes --------------------------------------------------------


async def test_presence_across_nodes(pair: Pair) -> None:
    """Presence: a user connected on B is online when asked on A and the other way
    round; one who leaves B goes offline on A within moments, with a `last_seen`."""
    a, b = pair.a, pair.b
    ann, bob, carl, dave = await accounts(pair.database_url, "ann", "bob", "carl", "dave")
    ann_a, _ = await connect(a.url, ann)
    bob_b, _ = await connect(b.url, bob)
    carl_b, _ = await connect(b.url, carl)

    await wait_until(lambda: is_online(ann_a, bob.username), 5)
    await wait_until(lambda: is_online(ann_a, carl.username), 5)
    await wait_until(lambda: is_online(bob_b, ann.username), 5)
    answer = await presence_of(ann_a, bob.username, carl.username, dave.username)
    assert answer[bob.username]["online"] is True
    assert answer[carl.username]["online"] is True
    assert answer[dave.username] == {"online": False, "last_seen": None}

    await carl_b.disconnect()
    await wait_until(lambda: is_offline(ann_a, carl.username), 5)
    assert (await presence_of(ann_a, carl.username))[carl.username]["last_seen"] is not None
    assert await is_online(ann_a, bob.username)
    await close_all(ann_a, bob_b)


@pytest.mark.slow  # waits out the presence TTL (30 s): see messenger/cluster/presence.py
async def test_presence_expires_after_kill_9_of_a_node(nodes: Nodes, redis: RedisServer) -> None:
    """After kill -9 of node B nobody tells Redis that B's users left: they go offline
    by themselves when B's heartbeat expires, within the presence TTL (30 s after B's
    last heartbeat); A's own users stay online."""
    a, b = await nodes.start_many(2, redis.url)
    ann, bob = await accounts(nodes.database_url, "ann", "bob")
    ann_a, _ = await connect(a.url, ann)
    await connect(b.url, bob)
    await wait_until(lambda: is_online(ann_a, bob.username), 5)

    await b.kill()
    killed = time.monotonic()
    await wait_until(lambda: is_offline(ann_a, bob.username), TTL_SECONDS + 5, interval=0.5)
    assert time.monotonic() - killed <= TTL_SECONDS + 5
    last_seen = (await presence_of(ann_a, bob.username))[bob.username]["last_seen"]
    assert last_seen is not None
    assert await is_online(ann_a, ann.username)
    await close_all(ann_a)


# -- 7. logout across nodes ----------------------------------------------------------


async def test_logout_on_one_node_disconnects_the_token_on_another(pair: Pair) -> None:
    """DELETE /sessions/current on A drops that token's sockets on B at once (through
    Redis: the periodic token check is off here), and only that token's."""
    a, b = pair.a, pair.b
    ann, bob = await accounts(pair.database_url, "ann", "bob")
    status, other = await Http(a.url).login(ann.username)
    assert status == 201, other
    ann_b, _ = await connect(b.url, ann)
    ann_a, _ = await connect(a.url, ann)
    other_b, _ = await connect(b.url, Account(ann.username, other["token"]))
    bob_b, _ = await connect(b.url, bob)

    status, body = await Http(a.url).request("DELETE", "/api/v1/sessions/current", token=ann.token)
    assert status == 204, body
    await wait_until(lambda: not ann_b.sio.connected and not ann_a.sio.connected, 3)
    assert other_b.sio.connected and bob_b.sio.connected

    # The token is dead on B too.
    refused = Device(b.url)
    with pytest.raises(Exception):  # noqa: B017 - python-socketio raises ConnectionError
        await refused.connect(ann.token)
    assert refused.connect_error["code"] == "unauthorized"
    # The other session still works across nodes.
    answer = await other_b.send(bob.username, "still here", "lo-1")
    assert answer["ok"], answer
    await close_all(other_b, bob_b)


# -- 8. one node without Redis -------------------------------------------------------


async def test_single_node_without_redis(nodes: Nodes) -> None:
    """One node, no Redis: live push, the offline backlog and presence work as before."""
    node = await nodes.start(None)
    ann, bob, carl = await accounts(nodes.database_url, "ann", "bob", "carl")
    sender, _ = await connect(node.url, ann)
    bob_device, synced = await connect(node.url, bob)
    live = await sender.send(bob.username, "live", "one-1")
    assert live["ok"], live
    await bob_device.wait_for(lambda: len(bob_device.messages()) == 1)
    assert bob_device.messages() == [live["message"]]
    assert_contiguous(bob_device, synced)

    waiting = (await sender.send(carl.username, "later", "one-2"))["message"]
    carl_device = await Device(node.url).connect(carl.token)
    assert await carl_device.wait_synced() == 1
    assert carl_device.messages() == [waiting]
    users = await presence_of(sender, bob.username, carl.username)
    assert users[bob.username]["online"] and users[carl.username]["online"]
    await close_all(sender, bob_device, carl_device)


# -- helpers -------------------------------------------------------------------------


async def _wait_for_live_push(redis: RedisServer, nodes: int) -> None:
    """Wait until every node has subscribed to the Redis channel again: python-socketio
    retries after 1, 2, 4 ... seconds."""
    await wait_until(lambda: redis.subscribers(CHANNEL) >= nodes, 20, interval=0.1)
