"""A recipient that marks only some of its backlog delivered and then drops off the
network: what it did not mark must come again on its next connection (G6), what it
marked must not (G4 without a cursor: only undelivered messages), and the sender learns
of exactly the marked ones (G5)."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.faults.tools import TcpProxy
from tests.support import Device, Http, RunningServer

N = 12
MARKED = [1, 4, 5, 9]  # positions in the backlog: not a prefix


async def test_acks_k_of_n_then_drops(server: RunningServer, http: Http) -> None:
    """N messages wait offline; the recipient marks k delivered, its link is cut
    (no goodbye); reconnecting without a cursor brings exactly the other N-k, and the
    sender's receipts cover exactly the k."""
    ann, bob = await http.account("ann"), await http.account("bob")
    sender = await Device(server.url).connect(ann.token)
    await sender.wait_synced()
    ids = []
    for i in range(N):
        answer = await sender.send(bob.username, f"backlog {i}", f"k-of-n-{i}")
        assert answer["ok"], answer
        ids.append(answer["message"]["id"])
    # Its own pushes may trail the answers: wait for all N before taking the cursor.
    await sender.wait_for(lambda: len(sender.messages()) == N)
    sender_cursor = max(sender.cursors())

    port = urlsplit(server.url).port
    assert port is not None
    proxy = await TcpProxy(port).start()
    try:
        first = await Device(f"http://127.0.0.1:{proxy.port}").connect(bob.token)
        await first.wait_synced()
        assert [m["id"] for m in first.messages()] == ids
        marked = [ids[i] for i in MARKED]
        answer = await first.call("delivered", {"ids": marked})
        assert answer == {"ok": True, "updated": len(marked)}
        await proxy.cut()  # the recipient vanishes: RST, no Socket.IO disconnect
    finally:
        await proxy.close()

    second = await Device(server.url).connect(bob.token)
    await second.wait_synced()
    again = [m["id"] for m in second.messages()]
    assert again == [i for i in ids if i not in marked]
    assert all(m["status"] == "sent" for m in second.messages())
    await second.disconnect()

    def receipted(device: Device) -> list[int]:
        return sorted(
            i for r in device.of("receipt") if r["status"] == "delivered" for i in r["ids"]
        )

    # Live, to the sender's connected device...
    await sender.wait_for(lambda: len(receipted(sender)) >= len(marked))
    assert receipted(sender) == sorted(marked)
    assert all(r["by"] == bob.username for r in sender.of("receipt"))
    await sender.disconnect()
    # ...and stored in its stream for a device that comes back with its cursor.
    later = await Device(server.url).connect(ann.token, cursor=sender_cursor)
    await later.wait_synced()
    assert receipted(later) == sorted(marked)
    assert later.messages() == []
    await later.disconnect()
