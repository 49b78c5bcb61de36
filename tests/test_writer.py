"""The group-commit writer's failure paths, with faults injected into the real database:
a batch that fails answers each of its items, one bad item fails only itself, and
nothing of a failed item is half-written."""

from __future__ import annotations

import asyncio

from tests.support import Device, Http, RunningServer, poison_messages, sql


async def test_a_poisoned_send_fails_alone_and_leaves_nothing_behind(
    server: RunningServer, http: Http
) -> None:
    url = server.settings.database_url
    await poison_messages(url, "NEW.body = 'poison'")
    ann, bob = await http.account("ann"), await http.account("bob")
    device = await Device(server.url).connect(ann.token)
    await device.wait_synced()

    # Fired together so that they share write batches with the poisoned one.
    bodies = [f"fine {i}" for i in range(10)]
    bodies.insert(5, "poison")
    answers = await asyncio.gather(
        *(device.send(bob.username, body, f"c-{i}") for i, body in enumerate(bodies))
    )

    failed = [a for a in answers if not a["ok"]]
    assert [a["error"]["code"] for a in failed] == ["internal"], answers
    stored = sorted(a["message"]["body"] for a in answers if a["ok"])
    assert stored == sorted(b for b in bodies if b != "poison")
    # The failed send took no stream position: both streams stay contiguous.
    rows = await sql(
        url,
        "SELECT username, stream_seq FROM users ORDER BY id",
        "SELECT count(*) FROM stream_events",
        "SELECT count(*) FROM messages",
    )
    assert rows[:2] == [(ann.username, 10), (bob.username, 10)]
    assert rows[2:] == [(20,), (10,)]
    await device.disconnect()


async def test_a_failing_batch_is_answered_and_the_writer_recovers(
    server: RunningServer, http: Http
) -> None:
    """While a table the writer needs is gone, sends are refused, neither hanging nor
    acknowledged; once it is back the same send (same client_id) is stored."""
    ann, bob = await http.account("ann"), await http.account("bob")
    device = await Device(server.url).connect(ann.token)
    await device.wait_synced()
    first = await device.send(bob.username, "before", "c-1")
    assert first["ok"], first
    await sql(server.settings.database_url, "ALTER TABLE stream_events RENAME TO se_away")
    try:
        answer = await device.send(bob.username, "during", "c-2")
        assert answer["ok"] is False
        assert answer["error"]["code"] in ("internal", "unavailable"), answer
    finally:
        await sql(server.settings.database_url, "ALTER TABLE se_away RENAME TO stream_events")
    again = await device.send(bob.username, "during", "c-2")
    assert again["ok"], again
    assert again["message"]["id"] > first["message"]["id"]
    await device.disconnect()
