"""Slow consumer: a client completes the Socket.IO handshake and then never reads its
socket again, while thousands of messages are sent to it. Its events can only pile up
in the server, so the server must bound them: `connection_buffer` bytes, then the
connection is dropped. Meanwhile other clients keep working, and the serve process's
memory stays bounded.

"Dropped" is checked at both levels: the server forgets the connection (it logs the
user's `disconnect`), and the TCP connection is closed, which is what releases the
packets queued for it."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from messenger.config import Settings
from tests.faults.tools import SOAK, RawSocket, rss_kb, seed_accounts
from tests.processes import ServeGroup
from tests.support import Device

BODY = "x" * 200
FLOOD_SENDERS = 4
WINDOW = 128
# The connection's byte budget (the serve process runs with the default).
BUDGET = Settings().connection_buffer
# About four times the budget in packets of this size: well past it, and past what the
# kernel buffers too.
FLOOD_MAX = 40_000
FLOOD_SECONDS = 90.0
# After the drop, how long the server may keep the dead connection's socket. Soak mode
# waits past Engine.IO's own ping timeout (25 s + 20 s) too.
CLOSE_BOUND = 75.0 if SOAK else 10.0
# Memory: at most BUDGET bytes of packets in the connection's queue, plus as many
# already handed to Engine.IO's writer task, each costing its JSON text and the Python
# objects around it (~600 B on top); plus the working set of the flood itself.
PACKET_OVERHEAD = 600
SLACK_KB = 48 * 1024


def packet_bytes(to: str, sender: str) -> int:
    """The size of one queued `new_message` packet for the slow client."""
    message = {
        "id": 10**6, "from": sender, "to": to, "body": BODY, "client_id": "flood-0-00000",
        "sent_at": "2026-01-01T00:00:00.000Z", "status": "sent",
        "delivered_at": None, "read_at": None,
    }  # fmt: skip
    return len("42" + json.dumps(["new_message", {"cursor": 10**6, "message": message}]))


@pytest.mark.timeout(300 if SOAK else 150)
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_slow_consumer_is_bounded_and_dropped(
    processes: ServeGroup, database_url: str
) -> None:
    """The flood goes on until the server drops the client that reads nothing; RSS stays
    under the bound that the byte budget implies, others' round trips stay short, and the
    dropped client's TCP connection is closed."""
    slow, ann, bob, *flooders = await seed_accounts(database_url, "slow", 3 + FLOOD_SENDERS)
    server = processes(database_url)
    await server.start()
    victim = RawSocket(int(server.url.rsplit(":", 1)[1]))
    synced = await victim.connect(slow.token)
    assert synced["cursor"] == 0
    # From here on the victim reads nothing, but it answers Engine.IO's pings blindly,
    # so the ping timeout (45 s) cannot stand in for the backlog bound under test.
    pongs = asyncio.create_task(victim.keep_alive())

    sender = await Device(server.url).connect(ann.token)
    receiver = await Device(server.url).connect(bob.token)
    devices = [await Device(server.url).connect(f.token) for f in flooders]
    await asyncio.sleep(0.5)
    baseline = rss_kb(server.pid)
    peak = baseline
    sent = 0
    dropped_at: float | None = None
    started = time.monotonic()
    done = asyncio.Event()

    def dropped() -> bool:
        # The user's `disconnect`: whichever layer noticed first (the socket past its
        # budget, or the live side after a push) dropped the connection.
        return f"disconnect user={slow.username}" in server.all_output()

    async def flood(index: int, device: Device) -> None:
        nonlocal sent
        window = asyncio.Semaphore(WINDOW)
        n = 0
        while not done.is_set() and sent < FLOOD_MAX:
            await window.acquire()
            client_id = f"flood-{index}-{n:05d}"
            n += 1
            payload = {"to": slow.username, "body": BODY, "client_id": client_id}

            def answered(answer: dict[str, object]) -> None:
                nonlocal sent
                window.release()
                if answer.get("ok"):
                    sent += 1

            await device.sio.emit("send", payload, callback=answered)

    latencies: list[float] = []

    async def others() -> None:
        """A normal conversation alongside: each send answered and pushed promptly."""
        n = 0
        while not done.is_set():
            t0 = time.monotonic()
            answer = await sender.call(
                "send", {"to": bob.username, "body": f"still {n}", "client_id": f"normal-{n}"}
            )
            assert answer["ok"], answer
            await receiver.wait_for(
                lambda n=n: f"normal-{n}" in [m["client_id"] for m in receiver.messages()]
            )
            latencies.append(time.monotonic() - t0)
            n += 1
            await asyncio.sleep(0.2)

    async def watch() -> None:
        nonlocal peak, dropped_at
        while time.monotonic() - started < FLOOD_SECONDS:
            peak = max(peak, rss_kb(server.pid))
            if dropped_at is None and dropped():
                dropped_at = time.monotonic() - started
            if dropped_at is not None and time.monotonic() - started > dropped_at + 3:
                break
            if sent >= FLOOD_MAX:
                break
            await asyncio.sleep(0.1)
        done.set()

    tasks = [asyncio.create_task(flood(i, d)) for i, d in enumerate(devices)]
    tasks.append(asyncio.create_task(others()))
    await watch()
    await asyncio.gather(*tasks)

    # Is the TCP connection of the dropped client closed by the server?
    closed_after: float | None = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < CLOSE_BOUND:
        if victim.closed_by_peer():
            closed_after = time.monotonic() - t0
            break
        await asyncio.sleep(0.2)
    final = rss_kb(server.pid)
    per_packet = packet_bytes(slow.username, flooders[0].username)
    queued = BUDGET // per_packet  # packets within the budget
    bound_kb = (2 * queued * (per_packet + PACKET_OVERHEAD)) // 1024 + SLACK_KB
    print(
        f"\n[slow consumer] sent {sent} messages to a client that reads nothing, in "
        f"{time.monotonic() - started:.0f}s; dropped by the server after "
        f"{dropped_at if dropped_at is None else round(dropped_at, 1)} s; "
        f"serve RSS baseline {baseline / 1024:.0f} MiB, "
        f"peak {peak / 1024:.0f} MiB (+{(peak - baseline) / 1024:.0f} MiB, bound "
        f"+{bound_kb / 1024:.0f} MiB), {final / 1024:.0f} MiB {CLOSE_BOUND:.0f}s after the "
        f"flood; packet {per_packet} B; TCP closed by the server after "
        f"{closed_after if closed_after is None else round(closed_after, 1)} s; others' "
        f"round trips max {max(latencies):.2f}s over {len(latencies)}"
    )
    pongs.cancel()
    log = server.all_output()
    for device in [sender, receiver, *devices]:
        await device.disconnect()
    victim.close()
    assert dropped_at is not None, f"never dropped after {sent} messages"
    assert re.search(rf"disconnect user={re.escape(slow.username)}", log)
    assert peak - baseline < bound_kb
    assert latencies and max(latencies) < 5.0, latencies
    assert closed_after is not None, (
        f"the server dropped the slow connection but kept its TCP socket open for "
        f"{CLOSE_BOUND:.0f}s, with the packets queued for it"
    )
