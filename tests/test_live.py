"""G3 live push and G5 receipts: every connected device of both parties sees each new
message and each status change at once, in cursor order, and statuses only move forward.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.support import (
    MESSAGE_KEYS,
    Account,
    Device,
    Http,
    RunningServer,
    assert_contiguous,
    connect_synced,
)

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RECEIPT_KEYS = {"cursor", "ids", "status", "by", "at"}


async def connect(server: RunningServer, account: Account) -> tuple[Device, int]:
    return await connect_synced(server.url, account)


def receipts(device: Device) -> list[dict[str, Any]]:
    return device.of("receipt")


async def disconnect_all(*devices: Device) -> None:
    for device in devices:
        await device.disconnect()


async def test_new_message_reaches_every_device_of_both_users(
    server: RunningServer, http: Http
) -> None:
    """G3: both recipient devices and the sender's other device get the same message
    without asking, and the sending device gets it too."""
    ann, bob = await http.account("ann"), await http.account("bob")
    (a1, s_a1), (a2, s_a2) = await connect(server, ann), await connect(server, ann)
    (b1, s_b1), (b2, s_b2) = await connect(server, bob), await connect(server, bob)
    answer = await a1.send(bob.username, "hello both", "live-1")
    assert answer["ok"], answer
    stored = answer["message"]
    for device in (a1, a2, b1, b2):
        await device.wait_for(lambda d=device: len(d.messages()) == 1)  # type: ignore[misc]
        assert device.messages() == [stored]
    for device, synced in ((a1, s_a1), (a2, s_a2), (b1, s_b1), (b2, s_b2)):
        assert_contiguous(device, synced)
    await disconnect_all(a1, a2, b1, b2)


async def test_cursors_stay_contiguous_over_many_events(server: RunningServer, http: Http) -> None:
    """G4: live events come in cursor order without holes on every device, messages of
    both directions and receipts interleaved."""
    ann, bob = await http.account("ann"), await http.account("bob")
    (a1, s_a1), (a2, s_a2) = await connect(server, ann), await connect(server, ann)
    (b1, s_b1), (b2, s_b2) = await connect(server, bob), await connect(server, bob)
    for i in range(10):
        to_bob = await a1.send(bob.username, f"a{i}", f"a-{i}")
        to_ann = await b2.send(ann.username, f"b{i}", f"b-{i}")
        assert to_bob["ok"] and to_ann["ok"]
        mark = "read" if i % 2 else "delivered"
        marked = await b1.call(mark, {"ids": [to_bob["message"]["id"]]})
        assert marked == {"ok": True, "updated": 1}
    # Each device: 20 messages; ann's 10 receipts, bob's only the 5 of `read`.
    expected = ((a1, s_a1, 30), (a2, s_a2, 30), (b1, s_b1, 25), (b2, s_b2, 25))
    for device, synced, events in expected:
        await device.wait_for(lambda d=device, n=events: len(d.cursors()) == n)  # type: ignore[misc]
        assert_contiguous(device, synced)
    await disconnect_all(a1, a2, b1, b2)


async def test_send_ack_carries_the_stored_message(server: RunningServer, http: Http) -> None:
    """3.2: the ack of `send` is the stored Message object, status sent, times in UTC
    with milliseconds."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect(server, ann)
    answer = await a.send(bob.username, "stored?", "ack-1")
    assert answer["ok"] is True, answer
    message = answer["message"]
    assert set(message) == MESSAGE_KEYS
    assert isinstance(message["id"], int) and not isinstance(message["id"], bool)
    assert message["id"] > 0
    assert message["from"] == ann.username
    assert message["to"] == bob.username
    assert message["body"] == "stored?"
    assert message["client_id"] == "ack-1"
    assert message["status"] == "sent"
    assert TIME.match(message["sent_at"]), message["sent_at"]
    assert message["delivered_at"] is None
    assert message["read_at"] is None
    history = await a.call("history", {"with": bob.username})
    assert history["ok"], history
    assert history["messages"] == [message]
    await a.disconnect()


async def test_delivered_sends_receipt_to_the_sender_devices_only(
    server: RunningServer, http: Http
) -> None:
    """G5: `delivered` updates once and both sender devices get a `receipt` with ids,
    status, by, at and cursor; the reader's devices get none (only `read` is theirs
    to learn, PROTOCOL.md 3.3), and their streams stay whole."""
    ann, bob = await http.account("ann"), await http.account("bob")
    (a1, s_a1), (a2, s_a2) = await connect(server, ann), await connect(server, ann)
    (b1, s_b1), (b2, s_b2) = await connect(server, bob), await connect(server, bob)
    first = (await a1.send(bob.username, "one", "d-1"))["message"]
    second = (await a1.send(bob.username, "two", "d-2"))["message"]
    await b1.wait_for(lambda: len(b1.messages()) == 2)
    marked = await b1.call("delivered", {"ids": [first["id"], second["id"]]})
    assert marked == {"ok": True, "updated": 2}
    for device in (a1, a2):
        await device.wait_for(lambda d=device: len(receipts(d)) == 1)  # type: ignore[misc]
        (receipt,) = receipts(device)
        assert set(receipt) == RECEIPT_KEYS, receipt
        assert sorted(receipt["ids"]) == [first["id"], second["id"]]
        assert receipt["status"] == "delivered"
        assert receipt["by"] == bob.username
        assert TIME.match(receipt["at"]), receipt["at"]
    # A later message is a barrier: any receipt to bob would have come before it.
    third = (await a1.send(bob.username, "three", "d-3"))["message"]
    for device in (b1, b2):
        await device.wait_for(
            lambda d=device: third["id"] in {m["id"] for m in d.messages()}  # type: ignore[misc]
        )
        assert receipts(device) == []
    for device, synced in ((a1, s_a1), (a2, s_a2), (b1, s_b1), (b2, s_b2)):
        assert_contiguous(device, synced)
    history = await a2.call("history", {"with": bob.username})
    statuses = {m["id"]: (m["status"], m["delivered_at"]) for m in history["messages"]}
    assert statuses[first["id"]][0] == "delivered"
    assert statuses[first["id"]][1] is not None
    await disconnect_all(a1, a2, b1, b2)


async def test_read_implies_delivered_and_never_goes_backwards(
    server: RunningServer, http: Http
) -> None:
    """G5: `read` raises the status to read (delivered_at set too); repeating it, or
    `delivered` afterwards, changes nothing and emits nothing."""
    ann, bob = await http.account("ann"), await http.account("bob")
    (a1, s_a1), (a2, s_a2) = await connect(server, ann), await connect(server, ann)
    (b1, s_b1), (b2, s_b2) = await connect(server, bob), await connect(server, bob)
    message = (await a1.send(bob.username, "read me", "r-1"))["message"]
    await b1.wait_for(lambda: len(b1.messages()) == 1)

    assert await b1.call("read", {"ids": [message["id"]]}) == {"ok": True, "updated": 1}
    for device in (a1, a2, b1, b2):
        await device.wait_for(lambda d=device: len(receipts(d)) == 1)  # type: ignore[misc]
        (receipt,) = receipts(device)
        assert receipt["ids"] == [message["id"]]
        assert receipt["status"] == "read"
        assert receipt["by"] == bob.username

    history = await a1.call("history", {"with": bob.username})
    (stored,) = history["messages"]
    assert stored["status"] == "read"
    assert stored["read_at"] is not None and TIME.match(stored["read_at"])
    assert stored["delivered_at"] is not None and TIME.match(stored["delivered_at"])
    # The page's times come formatted by the database: the same text the send's
    # answer and the receipt gave, formatted in Python.
    assert stored["sent_at"] == message["sent_at"]
    assert stored["read_at"] == stored["delivered_at"] == receipts(a1)[0]["at"]

    # Again, and backwards: nothing changes.
    assert await b2.call("read", {"ids": [message["id"]]}) == {"ok": True, "updated": 0}
    assert await b2.call("delivered", {"ids": [message["id"]]}) == {"ok": True, "updated": 0}
    # A later message is a barrier: once every device has it, any receipt the no-op
    # marks emitted would have arrived before it.
    barrier = (await a2.send(bob.username, "barrier", "r-2"))["message"]
    for device in (a1, a2, b1, b2):
        await device.wait_for(lambda d=device: len(d.messages()) == 2)  # type: ignore[misc]
        assert len(receipts(device)) == 1, receipts(device)
        assert device.messages()[-1]["id"] == barrier["id"]
    for device, synced in ((a1, s_a1), (a2, s_a2), (b1, s_b1), (b2, s_b2)):
        assert_contiguous(device, synced)
    history = await a1.call("history", {"with": bob.username})
    assert history["messages"][0] == stored
    await disconnect_all(a1, a2, b1, b2)


async def test_delivered_after_delivered_changes_nothing(server: RunningServer, http: Http) -> None:
    """G5: a status is raised once; a second `delivered` answers 0 and sends no receipt."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect(server, ann)
    b, _ = await connect(server, bob)
    message = (await a.send(bob.username, "x", "dd-1"))["message"]
    assert await b.call("delivered", {"ids": [message["id"]]}) == {"ok": True, "updated": 1}
    assert await b.call("delivered", {"ids": [message["id"]]}) == {"ok": True, "updated": 0}
    await a.send(bob.username, "barrier", "dd-2")
    await a.wait_for(lambda: len(a.messages()) == 2)
    await a.wait_for(lambda: len(receipts(a)) >= 1)
    assert len(receipts(a)) == 1, receipts(a)
    await disconnect_all(a, b)


async def test_ids_grow_with_send_order(server: RunningServer, http: Http) -> None:
    """3.1: ids are unique and grow with send order, across senders too."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect(server, ann)
    b, _ = await connect(server, bob)
    ids = []
    for i in range(6):
        sender, to = (a, bob) if i % 2 == 0 else (b, ann)
        answer = await sender.send(to.username, f"m{i}", f"grow-{i}")
        assert answer["ok"], answer
        ids.append(answer["message"]["id"])
    assert ids == sorted(set(ids)), ids
    await disconnect_all(a, b)


async def test_quick_sends_arrive_in_send_order(server: RunningServer, http: Http) -> None:
    """G4: 50 sends fired without waiting for acks reach the recipient in send order,
    and their ids grow in that order."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect(server, ann)
    b, s_b = await connect(server, bob)
    acks: dict[int, dict[str, Any]] = {}
    all_acked = asyncio.Event()

    def on_ack(index: int) -> Any:
        def record(answer: dict[str, Any]) -> None:
            acks[index] = answer
            if len(acks) == 50:
                all_acked.set()

        return record

    for i in range(50):
        payload = {"to": bob.username, "body": f"q{i}", "client_id": f"q-{i}"}
        await a.sio.emit("send", payload, callback=on_ack(i))
    await asyncio.wait_for(all_acked.wait(), 15)
    assert all(acks[i]["ok"] for i in range(50)), acks
    ids = [acks[i]["message"]["id"] for i in range(50)]
    assert ids == sorted(ids), ids

    await b.wait_for(lambda: len(b.messages()) == 50)
    assert [m["body"] for m in b.messages()] == [f"q{i}" for i in range(50)]
    assert [m["id"] for m in b.messages()] == ids
    assert_contiguous(b, s_b)
    await disconnect_all(a, b)


async def test_concurrent_calls_arrive_in_creation_order(server: RunningServer, http: Http) -> None:
    """G4: sends started together with asyncio.gather reach the recipient in the order
    they were created (the order the socket carried them)."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a, _ = await connect(server, ann)
    b, _ = await connect(server, bob)
    answers = await asyncio.gather(*(a.send(bob.username, f"g{i}", f"g-{i}") for i in range(50)))
    assert all(answer["ok"] for answer in answers)
    ids = [answer["message"]["id"] for answer in answers]
    assert ids == sorted(ids), ids
    await b.wait_for(lambda: len(b.messages()) == 50)
    assert [m["body"] for m in b.messages()] == [f"g{i}" for i in range(50)]
    await disconnect_all(a, b)


async def test_a_send_that_looks_its_recipient_up_keeps_its_place(
    server: RunningServer, http: Http
) -> None:
    """G4: a send whose recipient the server must first look up (its first message to
    carl) waits for the database, and the sends fired right after it, to a recipient
    already known, are still stored after it, in the order the socket carried them."""
    ann, bob, carl = [await http.account(name) for name in ("ann", "bob", "carl")]
    a, _ = await connect(server, ann)
    assert (await a.send(bob.username, "hello", "known-0"))["ok"]  # bob is known now
    order = [carl.username] + [bob.username] * 5
    answers = await asyncio.gather(
        *(a.send(to, f"o{i}", f"order-{i}") for i, to in enumerate(order))
    )
    assert all(answer["ok"] for answer in answers), answers
    ids = [answer["message"]["id"] for answer in answers]
    assert ids == sorted(ids), ids
    await disconnect_all(a)
