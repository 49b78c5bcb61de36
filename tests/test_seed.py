"""The seed protocol: connections with auth.compat = "seed" speak the design this
project grew from (`privateMessage` in, `receivedMessage` and `error` out), and share
everything else with normal connections."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import MESSAGE_KEYS, Account, Device, Http, RunningServer, accounts

SEED_KEYS = {"id", "from", "to", "message", "sent_at"}
TIME_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def seed(url: str, person: Account, **auth: Any) -> Device:
    device = await Device(url).connect(person.token, compat="seed", **auth)
    await device.wait_synced()
    return device


async def normal(url: str, person: Account) -> Device:
    device = await Device(url).connect(person.token)
    await device.wait_synced()
    return device


async def message_count(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT COUNT(*) FROM messages"))).scalar_one())
    finally:
        await engine.dispose()


def private(to: str, sender: str, message: str, client_id: str | None = None) -> dict[str, Any]:
    payload = {"to": to, "from": sender, "message": message}
    if client_id is not None:
        payload["client_id"] = client_id
    return payload


async def test_private_message_is_answered_with_a_message(
    server: RunningServer, http: Http
) -> None:
    """`privateMessage` {"to", "from", "message"} answers {"ok": true, "message"} with
    a full Message whose body is the seed `message` and a server-chosen client_id."""
    ann, bob = await accounts(http, "ann", "bob")
    a = await seed(server.url, ann)
    answer = await a.call("privateMessage", private(bob.username, ann.username, "hi bob"))
    assert answer["ok"] is True and set(answer) == {"ok", "message"}, answer
    message = answer["message"]
    assert set(message) == MESSAGE_KEYS, message
    assert (message["from"], message["to"], message["body"]) == (
        ann.username,
        bob.username,
        "hi bob",
    )
    assert message["status"] == "sent"
    assert isinstance(message["client_id"], str) and 1 <= len(message["client_id"]) <= 64
    assert TIME_FORMAT.fullmatch(message["sent_at"]), message
    assert a.of("error") == []
    await a.disconnect()


async def test_seed_connections_get_received_message(server: RunningServer, http: Http) -> None:
    """A seed connection gets `receivedMessage` {"id","from","to","message","sent_at"}
    instead of `new_message`; a normal connection of the same user gets `new_message`;
    the sender's seed connection gets its own message the same way."""
    ann, bob = await accounts(http, "ann", "bob")
    a_seed = await seed(server.url, ann)
    b_seed = await seed(server.url, bob)
    b_new = await normal(server.url, bob)
    answer = await a_seed.call("privateMessage", private(bob.username, ann.username, "one"))
    assert answer["ok"], answer
    message = answer["message"]
    expected = {
        "id": message["id"],
        "from": ann.username,
        "to": bob.username,
        "message": "one",
        "sent_at": message["sent_at"],
    }
    await b_seed.wait_for(lambda: bool(b_seed.of("receivedMessage")))
    await b_new.wait_for(lambda: bool(b_new.messages()))
    await a_seed.wait_for(lambda: bool(a_seed.of("receivedMessage")))
    assert b_seed.of("receivedMessage") == [expected]
    assert set(b_seed.of("receivedMessage")[0]) == SEED_KEYS
    assert a_seed.of("receivedMessage") == [expected]
    assert b_new.messages() == [message]
    assert b_new.of("receivedMessage") == []
    # A `send` from a normal connection reaches seed connections the same way.
    answer = await b_new.send(ann.username, "two", "b-2")
    assert answer["ok"], answer
    await a_seed.wait_for(lambda: len(a_seed.of("receivedMessage")) == 2)
    assert a_seed.of("receivedMessage")[1]["message"] == "two"
    assert a_seed.of("new_message") == [] and b_seed.of("new_message") == []
    for device in (a_seed, b_seed, b_new):
        await device.disconnect()


async def test_seed_backlog_receipts_and_synced(server: RunningServer, http: Http) -> None:
    """The backlog on connect arrives as `receivedMessage` then `synced`; receipts reach
    a seed connection as `receipt`."""
    ann, bob = await accounts(http, "ann", "bob")
    a_seed = await seed(server.url, ann)
    ids = []
    for body in ("first", "second"):
        answer = await a_seed.call("privateMessage", private(bob.username, ann.username, body))
        assert answer["ok"], answer
        ids.append(answer["message"]["id"])
    b_seed = await seed(server.url, bob)  # was offline: the two wait in the backlog
    names = [name for name, _ in b_seed.events]
    assert names == ["receivedMessage", "receivedMessage", "synced"], b_seed.events
    assert [m["id"] for m in b_seed.of("receivedMessage")] == ids
    assert [m["message"] for m in b_seed.of("receivedMessage")] == ["first", "second"]

    answer = await b_seed.call("delivered", {"ids": ids})
    assert answer == {"ok": True, "updated": 2}, answer
    await a_seed.wait_for(lambda: bool(a_seed.of("receipt")))
    receipt = a_seed.of("receipt")[0]
    assert (receipt["ids"], receipt["status"], receipt["by"]) == (ids, "delivered", bob.username)
    assert isinstance(receipt["cursor"], int)
    for device in (a_seed, b_seed):
        await device.disconnect()


async def test_seed_failures_are_also_error_events(server: RunningServer, http: Http) -> None:
    """On a seed connection each failure is acknowledged and emitted as `error`
    {"code", "message"}; normal connections get the acknowledgement only."""
    ann, bob = await accounts(http, "ann", "bob")
    a_seed = await seed(server.url, ann)
    failures: list[tuple[str, Any, str]] = [
        ("privateMessage", private(bob.username, bob.username, "forged"), "forbidden"),
        ("privateMessage", private("nobody@example.com", ann.username, "hi"), "not_found"),
        ("privateMessage", {"to": bob.username}, "invalid"),
        ("send", {"to": bob.username, "body": "", "client_id": "e-1"}, "invalid"),
        ("send", {"to": bob.username, "body": "x" * 5000, "client_id": "e-2"}, "too_large"),
        ("history", {"with": "nobody@example.com"}, "not_found"),
        ("no_such_event", {}, "invalid"),
    ]
    for count, (event, payload, code) in enumerate(failures, start=1):
        answer = await a_seed.call(event, payload)
        assert answer["ok"] is False and answer["error"]["code"] == code, (event, answer)
        await a_seed.wait_for(lambda n=count: len(a_seed.of("error")) >= n, timeout=5)
        error = a_seed.of("error")[-1]
        assert set(error) == {"code", "message"}, error
        assert error == answer["error"], (event, error, answer)
    # Successes emit no error.
    answer = await a_seed.call("privateMessage", private(bob.username, ann.username, "fine"))
    assert answer["ok"], answer
    assert len(a_seed.of("error")) == len(failures)

    a_new = await normal(server.url, ann)
    for event, payload, code in failures:
        answer = await a_new.call(event, payload)
        assert answer["ok"] is False and answer["error"]["code"] == code, (event, answer)
    # A round trip after the failures: any `error` event would have come before it.
    assert (await a_new.call("presence", {"users": [bob.username]}))["ok"]
    assert a_new.of("error") == []
    assert len(a_seed.of("error")) == len(failures)  # other devices are not told either
    for device in (a_seed, a_new):
        await device.disconnect()


async def test_private_message_idempotent_only_with_client_id(
    server: RunningServer, http: Http
) -> None:
    """With a client_id a repeated `privateMessage` returns the first message and
    stores and pushes nothing; without one, each is a new message."""
    ann, bob = await accounts(http, "ann", "bob")
    a_seed = await seed(server.url, ann)
    b_seed = await seed(server.url, bob)
    url = server.settings.database_url

    payload = private(bob.username, ann.username, "once", client_id="seed-1")
    first = await a_seed.call("privateMessage", payload)
    again = await a_seed.call("privateMessage", payload)
    assert first["ok"] and again["ok"], (first, again)
    assert again["message"] == first["message"]
    assert first["message"]["client_id"] == "seed-1"
    assert await message_count(url) == 1

    payload = private(bob.username, ann.username, "twice")
    one = await a_seed.call("privateMessage", payload)
    two = await a_seed.call("privateMessage", payload)
    assert one["ok"] and two["ok"], (one, two)
    assert one["message"]["id"] != two["message"]["id"]
    assert one["message"]["client_id"] != two["message"]["client_id"]
    assert await message_count(url) == 3

    await b_seed.wait_for(lambda: len(b_seed.of("receivedMessage")) >= 3)
    assert [m["message"] for m in b_seed.of("receivedMessage")] == ["once", "twice", "twice"]
    # The repeat with a client_id after everything else still pushes nothing new.
    repeat = private(bob.username, ann.username, "once", client_id="seed-1")
    assert (await a_seed.call("privateMessage", repeat))["ok"]
    assert (await a_seed.call("privateMessage", private(bob.username, ann.username, "last")))["ok"]
    await b_seed.wait_for(lambda: len(b_seed.of("receivedMessage")) >= 4)
    assert [m["message"] for m in b_seed.of("receivedMessage")][3:] == ["last"]
    for device in (a_seed, b_seed):
        await device.disconnect()
