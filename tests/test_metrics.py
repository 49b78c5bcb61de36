"""/metrics says what an operator needs: traffic, batching, backlog, refusals."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import pytest
from sqlalchemy.engine import make_url

from tests.cluster_support import wait_until
from tests.support import Device, Http, RunningServer


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match is not None, f"{name} missing from /metrics"
    return float(match.group(1))


async def test_metrics_follow_traffic_and_backlog(server: RunningServer, http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    device = await Device(server.url).connect(ann.token)
    await device.wait_synced()
    for i in range(3):
        assert (await device.send(bob.username, f"m{i}", f"c-{i}"))["ok"]
    assert (await device.send(bob.username, "m0", "c-0"))["ok"]  # a repeat

    status, text = await http.request("GET", "/metrics")
    assert status == 200
    assert sample(text, "messenger_connections") == 1
    assert sample(text, "messenger_messages_stored_total") == 3
    assert sample(text, "messenger_duplicate_sends_total") == 1
    # Bob has not connected: all three wait, the oldest for a moment.
    assert sample(text, "messenger_backlog_messages") == 3
    assert 0 <= sample(text, "messenger_backlog_oldest_age_seconds") < 60
    assert sample(text, "messenger_write_batch_size_count") >= 2
    assert sample(text, "messenger_commit_seconds_count") >= 2

    bob_device = await Device(server.url).connect(bob.token)
    await bob_device.wait_synced()
    ids = [message["id"] for message in bob_device.messages()]
    assert (await bob_device.call("delivered", {"ids": ids}))["updated"] == 3
    assert (await bob_device.call("read", {"ids": ids[:1]}))["updated"] == 1
    status, text = await http.request("GET", "/metrics")
    assert sample(text, "messenger_connections") == 2
    assert sample(text, "messenger_redeliveries_total") == 3
    assert sample(text, "messenger_messages_delivered_total") == 3
    assert sample(text, "messenger_messages_read_total") == 1
    await device.disconnect()
    await bob_device.disconnect()


STALL = 0.5


async def _sample_now(http: Http, name: str) -> float:
    _, text = await http.request("GET", "/metrics")
    return sample(text, name)


@pytest.mark.parametrize("backend", ["sqlite"])  # a second connection takes SQLite's lock
async def test_a_send_queued_behind_a_stalled_batch_shows_its_wait(
    server: RunningServer, http: Http
) -> None:
    """messenger_write_wait_seconds is the writer's saturation signal: a send that
    queues while the batch before it cannot commit shows that wait."""
    ann, bob = await http.account("ann"), await http.account("bob")
    device = await Device(server.url).connect(ann.token)
    await device.wait_synced()
    started = await _sample_now(http, "messenger_write_wait_seconds_count")

    async def a_batch_started() -> bool:
        return await _sample_now(http, "messenger_write_wait_seconds_count") > started

    database = make_url(server.settings.database_url).database
    assert database is not None
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the writer's next BEGIN IMMEDIATE waits for this
    try:
        first = asyncio.create_task(device.send(bob.username, "one", "c-1"))
        # Once a batch has started, it is stuck on the lock; what comes next queues.
        await wait_until(a_batch_started, timeout=10, interval=0.01)
        second = asyncio.create_task(device.send(bob.username, "two", "c-2"))
        await asyncio.sleep(STALL)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert (await first)["ok"] and (await second)["ok"]

    _, text = await http.request("GET", "/metrics")
    assert sample(text, "messenger_write_wait_seconds_count") == sample(
        text, "messenger_write_batch_size_count"
    )
    # The second send waited for the stalled batch (the bound leaves room for the
    # moments its event took to arrive).
    assert sample(text, "messenger_write_wait_seconds_sum") >= STALL / 2
    await device.disconnect()
