"""Lost acknowledgement: the `send` is committed but its answer never reaches the
client, because the link dies between the commit and the answer. The client cannot
tell this from a send that never arrived, so it retries with the same client_id; G2
makes that safe: one row, and the retry is answered with the original id."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import socketio

from tests.faults.tools import TcpProxy
from tests.support import Device, Http, RunningServer


async def test_retry_after_lost_ack_gets_the_original(server: RunningServer, http: Http) -> None:
    """The proxy swallows the frame with the send's `"ok":true` answer and cuts the link;
    the retry over a direct connection gets the same id, and one message is stored."""
    ann, bob = await http.account("ann"), await http.account("bob")
    port = urlsplit(server.url).port
    assert port is not None
    proxy = await TcpProxy(port, drop_reply=re.compile(rb'"ok":\s*true')).start()
    try:
        device = await Device(f"http://127.0.0.1:{proxy.port}").connect(ann.token)
        await device.wait_synced()
        proxy.armed = True
        payload = {"to": bob.username, "body": "did this arrive?", "client_id": "lost-ack-1"}
        with pytest.raises(socketio.exceptions.TimeoutError):
            await device.call("send", payload, timeout=3)
        assert proxy.dropped.is_set(), "the proxy never saw the answer"
        assert proxy.dropped_bytes is not None
        original = re.search(rb'"ok":\s*true,\s*"message":\s*\{"id":\s*(\d+)', proxy.dropped_bytes)
        assert original is not None, proxy.dropped_bytes[:300]
        await device.disconnect()
    finally:
        await proxy.close()

    direct = await Device(server.url).connect(ann.token)
    answer = await direct.call("send", payload)
    assert answer["ok"], answer
    assert answer["message"]["id"] == int(original.group(1))
    # A second retry still changes nothing.
    again = await direct.call("send", payload)
    assert again["message"]["id"] == answer["message"]["id"]
    await direct.disconnect()

    status, body = await http.request(
        "GET", f"/api/v1/conversations/{bob.username}/messages", token=ann.token
    )
    assert status == 200, body
    assert [(m["id"], m["client_id"]) for m in body["messages"]] == [
        (answer["message"]["id"], "lost-ack-1")
    ]
    receiver = await Device(server.url).connect(bob.token)
    await receiver.wait_synced()
    assert [m["id"] for m in receiver.messages()] == [answer["message"]["id"]]
    await receiver.disconnect()
