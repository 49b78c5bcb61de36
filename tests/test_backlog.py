"""G4 store and forward, G6 at-least-once: what a device gets when it connects (with and
without `auth.cursor`), the `sync` event, and a message racing a connect.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import Device, Http, RunningServer, connect_synced

# Sends in flight at once: within the settings fixture's `max_pending_requests`.
WINDOW = 500


async def send_many(sender: Device, to: str, bodies: list[str], prefix: str) -> list[int]:
    """Pipelined sends (acks not awaited one by one, WINDOW at a time); returns the
    ids in send order."""
    acks: dict[int, dict[str, Any]] = {}
    done = asyncio.Event()
    window = asyncio.Semaphore(WINDOW)

    def on_ack(index: int) -> Any:
        def record(answer: dict[str, Any]) -> None:
            acks[index] = answer
            window.release()
            if len(acks) == len(bodies):
                done.set()

        return record

    for i, body in enumerate(bodies):
        payload = {"to": to, "body": body, "client_id": f"{prefix}-{i}"}
        await window.acquire()
        await sender.sio.emit("send", payload, callback=on_ack(i))
    await asyncio.wait_for(done.wait(), 30)
    assert all(acks[i]["ok"] for i in range(len(bodies))), acks
    return [acks[i]["message"]["id"] for i in range(len(bodies))]


def stream_events(device: Device) -> list[tuple[str, Any]]:
    return [(name, data) for name, data in device.events if name in ("new_message", "receipt")]


def assert_synced_last(device: Device) -> None:
    """`synced` comes once, after every backlog event."""
    names = [name for name, _ in device.events if name in ("new_message", "receipt", "synced")]
    assert names.count("synced") == 1
    assert names[-1] == "synced", names


def without_status(data: dict[str, Any]) -> dict[str, Any]:
    if "message" not in data:
        return data
    message = {
        k: v for k, v in data["message"].items() if k not in ("status", "delivered_at", "read_at")
    }
    return {**data, "message": message}


async def head_of(device: Device) -> int:
    """The user's stream head, read through `sync` from 0."""
    cursor, has_more = 0, True
    while has_more:
        answer = await device.call("sync", {"after": cursor, "limit": 500})
        assert answer["ok"], answer
        cursor, has_more = answer["cursor"], answer["has_more"]
    return int(cursor)


async def test_offline_backlog_arrives_in_order_then_synced(
    server: RunningServer, http: Http
) -> None:
    """G4: 30 messages sent while the recipient was away come on connect, in send
    order, then `synced` with the head cursor."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    ids = []
    for i in range(30):
        answer = await a.send(bob.username, f"m{i}", f"off-{i}")
        assert answer["ok"], answer
        ids.append(answer["message"]["id"])

    b = await Device(server.url).connect(bob.token)
    synced = await b.wait_synced()
    assert [m["id"] for m in b.messages()] == ids
    assert [m["body"] for m in b.messages()] == [f"m{i}" for i in range(30)]
    assert all(m["status"] == "sent" for m in b.messages())
    assert_synced_last(b)
    assert b.cursors() == list(range(1, 31))
    assert synced == 30 == await head_of(b)
    await a.disconnect()
    await b.disconnect()


async def test_backlog_larger_than_a_page_is_complete(server: RunningServer, http: Http) -> None:
    """G4: a backlog of several pages (500 each) arrives whole and in order, both the
    undelivered backlog (no cursor) and the stream replay (cursor 0)."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    bodies = [f"big{i}" for i in range(1200)]
    ids = await send_many(a, bob.username, bodies, "big")
    assert ids == sorted(ids)

    fresh = await Device(server.url).connect(bob.token)
    synced = await fresh.wait_synced(timeout=30)
    assert [m["id"] for m in fresh.messages()] == ids
    assert [m["body"] for m in fresh.messages()] == bodies
    assert fresh.cursors() == list(range(1, 1201))
    assert synced == 1200
    assert_synced_last(fresh)

    resumed = await Device(server.url).connect(bob.token, cursor=0)
    synced = await resumed.wait_synced(timeout=30)
    assert [m["id"] for m in resumed.messages()] == ids
    assert resumed.cursors() == list(range(1, 1201))
    assert synced == 1200
    assert_synced_last(resumed)
    for device in (a, fresh, resumed):
        await device.disconnect()


async def test_resume_with_cursor_gets_exactly_the_events_after_it(
    server: RunningServer, http: Http
) -> None:
    """G4: with `auth.cursor`, every stream event after it (messages both ways and
    receipts), in cursor order and contiguous, then `synced`; nothing before it."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    b, _ = await connect_synced(server.url, bob)
    early = [(await a.send(bob.username, f"e{i}", f"early-{i}"))["message"] for i in range(3)]
    from_bob = (await b.send(ann.username, "from bob", "bob-1"))["message"]
    await b.wait_for(lambda: len(b.messages()) == 4)
    assert await b.call("read", {"ids": [m["id"] for m in early]}) == {"ok": True, "updated": 3}
    await b.wait_for(lambda: len(b.of("receipt")) == 1)
    cursor = b.cursors()[-1]
    await b.disconnect()

    # While bob is away: a message to him, ann reads his message, another message.
    later = [(await a.send(bob.username, "later-1", "later-1"))["message"]]
    assert await a.call("read", {"ids": [from_bob["id"]]}) == {"ok": True, "updated": 1}
    later.append((await a.send(bob.username, "later-2", "later-2"))["message"])

    back, synced = await connect_synced(server.url, bob, cursor=cursor)
    events = stream_events(back)
    assert [data["cursor"] for _, data in events] == list(range(cursor + 1, cursor + 4))
    assert [name for name, _ in events] == ["new_message", "receipt", "new_message"]
    assert events[0][1]["message"]["id"] == later[0]["id"]
    assert events[1][1]["ids"] == [from_bob["id"]]
    assert events[1][1]["status"] == "read"
    assert events[1][1]["by"] == ann.username
    assert events[2][1]["message"]["id"] == later[1]["id"]
    assert synced == cursor + 3 == await head_of(back)
    assert_synced_last(back)
    await a.disconnect()
    await back.disconnect()


async def test_receipts_wait_for_an_offline_sender(server: RunningServer, http: Http) -> None:
    """G5: receipts made while the sender is away reach it on resume with its cursor."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    message = (await a.send(bob.username, "are you there", "rc-1"))["message"]
    await a.wait_for(lambda: len(a.messages()) == 1)
    cursor = a.cursors()[-1]
    await a.disconnect()

    b, _ = await connect_synced(server.url, bob)
    assert await b.call("delivered", {"ids": [message["id"]]}) == {"ok": True, "updated": 1}
    assert await b.call("read", {"ids": [message["id"]]}) == {"ok": True, "updated": 1}

    back, synced = await connect_synced(server.url, ann, cursor=cursor)
    events = stream_events(back)
    assert [name for name, _ in events] == ["receipt", "receipt"]
    assert [data["status"] for _, data in events] == ["delivered", "read"]
    assert all(data["ids"] == [message["id"]] for _, data in events)
    assert all(data["by"] == bob.username for _, data in events)
    assert [data["cursor"] for _, data in events] == [cursor + 1, cursor + 2]
    assert synced == cursor + 2
    assert_synced_last(back)
    await b.disconnect()
    await back.disconnect()


async def test_undelivered_message_comes_on_every_connect_until_delivered(
    server: RunningServer, http: Http
) -> None:
    """G6: until a device marks it delivered, a message is in the backlog of every new
    connection, with or without a cursor (even a cursor past it); then never again."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    message = (await a.send(bob.username, "keep me", "g6-1"))["message"]

    cursor = None
    for auth in ({}, {}, {"cursor": 0}, "synced"):
        kwargs = {"cursor": cursor} if auth == "synced" else auth
        device, synced = await connect_synced(server.url, bob, **kwargs)  # type: ignore[arg-type]
        assert [m["id"] for m in device.messages()] == [message["id"]], (auth, device.events)
        cursor = synced
        await device.disconnect()

    # Another device marks it delivered: no new connection gets it again.
    marker, _ = await connect_synced(server.url, bob)
    assert await marker.call("delivered", {"ids": [message["id"]]}) == {"ok": True, "updated": 1}
    await marker.disconnect()
    for kwargs in ({}, {"cursor": cursor}):
        device, _ = await connect_synced(server.url, bob, **kwargs)  # type: ignore[arg-type]
        assert device.messages() == [], (kwargs, device.events)
        await device.disconnect()
    await a.disconnect()


async def test_bad_connect_cursor_counts_as_absent(server: RunningServer, http: Http) -> None:
    """3.3: a connect cursor from the future or of the wrong type is ignored: the
    backlog is the undelivered messages only, and `synced` carries the real head."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    first = (await a.send(bob.username, "first", "bc-1"))["message"]
    marker, _ = await connect_synced(server.url, bob)
    assert await marker.call("read", {"ids": [first["id"]]}) == {"ok": True, "updated": 1}
    await marker.disconnect()
    waiting = [(await a.send(bob.username, f"w{i}", f"bc-w{i}"))["message"] for i in range(2)]
    head = 4  # new_message, receipt (of `read`), new_message, new_message

    for bad in (head + 100, 2**70, -1, "1", 1.5, True, [1], {"n": 1}):
        device, synced = await connect_synced(server.url, bob, cursor=bad)
        assert [name for name, _ in stream_events(device)] == ["new_message"] * 2, (bad, device)
        assert [m["id"] for m in device.messages()] == [m["id"] for m in waiting], bad
        assert device.cursors() == [3, 4], bad
        assert synced == head, bad
        await device.disconnect()
    await a.disconnect()


async def test_sync_pages_through_the_stream(server: RunningServer, http: Http) -> None:
    """`sync` returns the events after a cursor, `limit` at a time with has_more, the
    same events the device got live; a future or malformed cursor is `invalid`."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    b, _ = await connect_synced(server.url, bob)
    for i in range(4):
        message = (await a.send(bob.username, f"s{i}", f"sync-{i}"))["message"]
        await b.send(ann.username, f"r{i}", f"sync-r{i}")
        await b.call("read", {"ids": [message["id"]]})
    await b.wait_for(lambda: len(b.cursors()) == 12)
    live = stream_events(b)

    got: list[dict[str, Any]] = []
    after, pages = 0, 0
    while True:
        answer = await b.call("sync", {"after": after, "limit": 5})
        assert answer["ok"], answer
        pages += 1
        got.extend(answer["events"])
        assert answer["cursor"] == answer["events"][-1]["data"]["cursor"]
        after = answer["cursor"]
        if not answer["has_more"]:
            break
        assert len(answer["events"]) == 5
    assert pages == 3
    # A replayed message may carry its current status; everything else is the live event.
    assert [(e["event"], without_status(e["data"])) for e in got] == [
        (name, without_status(data)) for name, data in live
    ]
    assert after == 12

    middle = await b.call("sync", {"after": 7, "limit": 2})
    assert [e["data"]["cursor"] for e in middle["events"]] == [8, 9]
    assert middle["cursor"] == 9 and middle["has_more"] is True

    at_head = await b.call("sync", {"after": 12})
    assert at_head == {"ok": True, "events": [], "cursor": 12, "has_more": False}
    for bad in (13, 10**6, -1, "3", 2.5, None, True):
        answer = await b.call("sync", {"after": bad})
        assert answer["ok"] is False and answer["error"]["code"] == "invalid", (bad, answer)
    await a.disconnect()
    await b.disconnect()


async def test_message_racing_a_connect_is_not_lost(server: RunningServer, http: Http) -> None:
    """G4/G6: messages committed while the recipient's socket is connecting reach it,
    in the backlog or live (perhaps twice: deduplicated by id), with no cursor hole."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect_synced(server.url, ann)
    sent: list[int] = []
    for round_ in range(8):
        device = Device(server.url)

        async def burst(round_: int = round_) -> list[int]:
            ids = []
            for i in range(4):
                answer = await a.send(bob.username, f"race{round_}-{i}", f"race-{round_}-{i}")
                assert answer["ok"], answer
                ids.append(answer["message"]["id"])
            return ids

        _, ids = await asyncio.gather(device.connect(bob.token), burst())
        sent.extend(ids)
        await device.wait_synced()
        await device.wait_for(lambda d=device: set(sent) <= {m["id"] for m in d.messages()})
        received = [m["id"] for m in device.messages()]
        unique = list(dict.fromkeys(received))
        assert unique == sorted(unique), received
        await device.disconnect()
    await a.disconnect()
