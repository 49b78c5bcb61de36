"""/metrics says what an operator needs: traffic, batching, backlog, refusals."""

from __future__ import annotations

import re

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
