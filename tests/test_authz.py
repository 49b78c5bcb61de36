"""G7 identity: the sender is the authenticated user, nobody reads, marks or receives
another conversation, blocks hold, and the handshake refuses every bad token."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import socketio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from messenger.config import Settings
from tests.support import Account, Device, Http, RunningServer, accounts, start_server


async def connect_all(url: str, *people: Account) -> list[Device]:
    devices = [await Device(url).connect(person.token) for person in people]
    await asyncio.gather(*(device.wait_synced() for device in devices))
    return devices


async def stored_messages(database_url: str) -> list[tuple[str, str, str, str]]:
    """(sender, recipient, body, client_id) of every stored message, straight from SQL."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT s.username, r.username, m.body, m.client_id FROM messages m"
                    " JOIN users s ON s.id = m.sender_id"
                    " JOIN users r ON r.id = m.recipient_id ORDER BY m.id"
                )
            )
            return [(row[0], row[1], row[2], row[3]) for row in rows]
    finally:
        await engine.dispose()


def error_code(answer: Any) -> str | None:
    if isinstance(answer, dict) and answer.get("ok") is False:
        return str(answer["error"]["code"])
    return None


def names(device: Device) -> list[str]:
    """Event names a device received, `synced` left out."""
    return [name for name, _ in device.events if name != "synced"]


async def history(device: Device, peer: str) -> list[dict[str, Any]]:
    answer = await device.call("history", {"with": peer})
    assert answer["ok"], answer
    return list(answer["messages"])


async def test_send_ignores_a_from_field(server: RunningServer, http: Http) -> None:
    """A `send` naming another sender is stored and pushed as the caller's message."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)
    answer = await a.call(
        "send", {"to": bob.username, "from": carol.username, "body": "hi", "client_id": "f-1"}
    )
    assert answer["ok"], answer
    assert answer["message"]["from"] == ann.username
    await b.wait_for(lambda: len(b.messages()) == 1)
    assert b.messages()[0]["from"] == ann.username
    assert await stored_messages(server.settings.database_url) == [
        (ann.username, bob.username, "hi", "f-1")
    ]
    assert await history(b, carol.username) == []
    assert names(c) == []
    for device in (a, b, c):
        await device.disconnect()


async def test_private_message_from_someone_else_is_forbidden(
    server: RunningServer, http: Http
) -> None:
    """`privateMessage` whose `from` is not the caller fails `forbidden`, stores and
    pushes nothing; the caller's own name (any case) works."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)
    for claimed in (carol.username, bob.username, carol.username.upper()):
        answer = await a.call(
            "privateMessage",
            {"to": bob.username, "from": claimed, "message": "forged", "client_id": "pm-1"},
        )
        assert error_code(answer) == "forbidden", (claimed, answer)
    assert await stored_messages(server.settings.database_url) == []
    answer = await a.call(
        "privateMessage",
        {"to": bob.username, "from": ann.username.upper(), "message": "real", "client_id": "pm-1"},
    )
    assert answer["ok"], answer
    assert answer["message"]["from"] == ann.username
    await b.wait_for(lambda: len(b.messages()) >= 1)
    assert [m["body"] for m in b.messages()] == ["real"]
    assert await stored_messages(server.settings.database_url) == [
        (ann.username, bob.username, "real", "pm-1")
    ]
    assert names(c) == []
    for device in (a, b, c):
        await device.disconnect()


async def test_marking_others_messages_changes_nothing(server: RunningServer, http: Http) -> None:
    """`delivered`/`read` of ids addressed to someone else count 0, change no status
    and emit no receipt; unknown ids look the same (nothing is revealed)."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)
    to_bob = (await a.send(bob.username, "for bob", "m-1"))["message"]["id"]
    to_carol = (await b.send(carol.username, "for carol", "m-2"))["message"]["id"]
    await c.wait_for(lambda: len(c.messages()) == 1)

    for device, ids in [
        (c, [to_bob]),  # a stranger to the conversation
        (a, [to_bob]),  # its own sender
        (b, [to_carol]),  # the sender again, other conversation
        (a, [to_bob, to_carol, 10**12]),
    ]:
        for event in ("delivered", "read"):
            answer = await device.call(event, {"ids": ids})
            assert answer == {"ok": True, "updated": 0}, (event, ids, answer)
    assert [m["status"] for m in await history(a, bob.username)] == ["sent"]
    assert [m["status"] for m in await history(b, carol.username)] == ["sent"]

    # Carol's read of both ids changes only her own message; bob hears of that one.
    answer = await c.call("read", {"ids": [to_bob, to_carol]})
    assert answer == {"ok": True, "updated": 1}, answer
    await b.wait_for(lambda: len(b.of("receipt")) == 1)
    receipt = b.of("receipt")[0]
    assert (receipt["ids"], receipt["status"], receipt["by"]) == (
        [to_carol],
        "read",
        carol.username,
    )
    # Bob's own read then gives ann her first and only receipt.
    answer = await b.call("read", {"ids": [to_bob]})
    assert answer == {"ok": True, "updated": 1}, answer
    await a.wait_for(lambda: len(a.of("receipt")) >= 1)
    assert [(r["ids"], r["by"]) for r in a.of("receipt")] == [([to_bob], bob.username)]
    # Carol heard only of her own read, never of ann's message.
    assert all(r["ids"] == [to_carol] for r in c.of("receipt")), c.of("receipt")
    for device in (a, b, c):
        await device.disconnect()


async def test_history_only_of_own_conversations(server: RunningServer, http: Http) -> None:
    """A third user's history, conversation list and sync never show a conversation
    she is not in."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)
    for i in range(3):
        assert (await a.send(bob.username, f"a{i}", f"a{i}"))["ok"]
        assert (await b.send(ann.username, f"b{i}", f"b{i}"))["ok"]
    assert await history(c, ann.username) == []
    assert await history(c, bob.username) == []
    own = await c.send(ann.username, "carol here", "c-1")
    assert [m["body"] for m in await history(c, ann.username)] == ["carol here"]
    assert len(await history(a, bob.username)) == 6

    status, body = await http.request(
        "GET", f"/api/v1/conversations/{ann.username}/messages", token=carol.token
    )
    assert status == 200, body
    assert [m["id"] for m in body["messages"]] == [own["message"]["id"]]
    status, body = await http.request("GET", "/api/v1/conversations", token=carol.token)
    assert [item["with"] for item in body["conversations"]] == [ann.username]

    answer = await c.call("sync", {"after": 0})
    assert answer["ok"], answer
    bodies = [e["data"]["message"]["body"] for e in answer["events"]]
    assert bodies == ["carol here"], answer
    for device in (a, b, c):
        await device.disconnect()


async def test_third_user_receives_no_events(server: RunningServer, http: Http) -> None:
    """Live pushes, receipts and the connect backlog of a conversation reach only its
    two users."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)
    sent = [(await a.send(bob.username, f"m{i}", f"m{i}"))["message"]["id"] for i in range(3)]
    await b.wait_for(lambda: len(b.messages()) == 3)
    assert (await b.call("read", {"ids": sent}))["ok"]
    await a.wait_for(lambda: len(a.of("receipt")) == 1)
    # Carol's own message is pushed to her after everything above: by then any leak
    # would have arrived too.
    assert (await c.send(ann.username, "mine", "c-1"))["ok"]
    await c.wait_for(lambda: len(c.messages()) == 1)
    assert names(c) == ["new_message"], c.events
    assert [m["body"] for m in c.messages()] == ["mine"]
    # A fresh device of carol, from the start of her stream, gets only her event.
    c2 = await Device(server.url).connect(carol.token, cursor=0)
    await c2.wait_synced()
    assert [m["body"] for m in c2.messages()] == ["mine"]
    assert names(c2) == ["new_message"], c2.events
    for device in (a, b, c, c2):
        await device.disconnect()


async def test_block_then_unblock(server: RunningServer, http: Http) -> None:
    """While bob blocks ann her `send` and `privateMessage` to him fail `forbidden` and
    store nothing; others still reach him; after `unblock` she can send again."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)
    assert await b.call("block", {"user": ann.username}) == {"ok": True}
    assert await b.call("block", {"user": ann.username.upper()}) == {"ok": True}  # idempotent
    answer = await a.send(bob.username, "blocked?", "x-1")
    assert error_code(answer) == "forbidden", answer
    answer = await a.call(
        "privateMessage",
        {"to": bob.username, "from": ann.username, "message": "blocked?", "client_id": "x-2"},
    )
    assert error_code(answer) == "forbidden", answer
    assert (await c.send(bob.username, "from carol", "c-1"))["ok"]
    await b.wait_for(lambda: len(b.messages()) == 1)
    assert await stored_messages(server.settings.database_url) == [
        (carol.username, bob.username, "from carol", "c-1")
    ]

    assert await b.call("unblock", {"user": ann.username}) == {"ok": True}
    # The refused send consumed nothing: the same client_id now stores a new message.
    answer = await a.send(bob.username, "hello again", "x-1")
    assert answer["ok"], answer
    assert answer["message"]["body"] == "hello again"
    await b.wait_for(lambda: len(b.messages()) == 2)
    assert [m["body"] for m in b.messages()] == ["from carol", "hello again"]
    assert await b.call("unblock", {"user": ann.username}) == {"ok": True}  # idempotent
    for device in (a, b, c):
        await device.disconnect()


async def test_presence_hidden_by_block(server: RunningServer, http: Http) -> None:
    """Someone who blocks the caller always looks offline to the caller, only to her."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a, b, c = await connect_all(server.url, ann, bob, carol)

    async def bob_seen_by(device: Device) -> dict[str, Any]:
        answer = await device.call("presence", {"users": [bob.username]})
        assert answer["ok"], answer
        return dict(answer["users"][bob.username])

    assert (await bob_seen_by(a))["online"] is True
    assert (await b.call("block", {"user": ann.username}))["ok"]
    assert await bob_seen_by(a) == {"online": False, "last_seen": None}
    assert (await bob_seen_by(c))["online"] is True
    assert (await b.call("unblock", {"user": ann.username}))["ok"]
    assert (await bob_seen_by(a))["online"] is True
    for device in (a, b, c):
        await device.disconnect()


def assert_refused(device: Device) -> None:
    """The handshake was refused with connect_error {"code": "unauthorized", ...}."""
    assert not device.sio.connected
    data = device.connect_error
    assert isinstance(data, dict), data
    assert data.get("code") == "unauthorized", data
    assert isinstance(data.get("message"), str) and data["message"], data
    assert device.of("synced") == []


async def refuse(url: str, auth: dict[str, Any]) -> Device:
    """A device whose handshake with exactly this auth object must fail."""
    device = Device(url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await device.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
    return device


async def test_handshake_refuses_missing_and_garbage_tokens(server: RunningServer) -> None:
    """No token, a wrong type, an empty, short, huge or unknown token: refused."""
    cases: list[dict[str, Any]] = [
        {},
        {"token": None},
        {"token": ""},
        {"token": 12345},
        {"token": True},
        {"token": ["a" * 43]},
        {"token": {"token": "a" * 43}},
        {"token": "short"},
        {"token": "a" * 43},
        {"token": "x" * 5000},
        {"token": "a" * 43, "compat": "seed"},
        {"cursor": 0},
    ]
    for auth in cases:
        device = await refuse(server.url, auth)
        assert_refused(device)
    # And a client that sends no auth object at all.
    bare = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    bare.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await bare.connect(server.url, transports=["websocket"], wait_timeout=5)
    assert errors and errors[0].get("code") == "unauthorized", errors


async def test_handshake_refuses_revoked_token(server: RunningServer, http: Http) -> None:
    """After logout the token is refused at the handshake, and its user stays offline."""
    ann, bob = await accounts(http, "ann", "bob")
    status, _ = await http.request("DELETE", "/api/v1/sessions/current", token=ann.token)
    assert status == 204
    assert_refused(await refuse(server.url, {"token": ann.token}))
    (b,) = await connect_all(server.url, bob)
    answer = await b.call("presence", {"users": [ann.username]})
    assert answer["ok"] and answer["users"][ann.username]["online"] is False, answer
    await b.disconnect()


async def test_handshake_refuses_expired_token(settings: Settings) -> None:
    """A token past its lifetime is refused at the handshake and on HTTP."""
    running = await start_server(settings.replace(token_ttl=timedelta(seconds=1)))
    try:
        http = Http(running.url)
        (ann,) = await accounts(http, "ann")
        fresh = await Device(running.url).connect(ann.token)  # valid while fresh
        await fresh.wait_synced()
        await fresh.disconnect()
        await asyncio.sleep(1.5)
        assert_refused(await refuse(running.url, {"token": ann.token}))
        status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
        assert status == 401 and body["error"]["code"] == "unauthorized", body
    finally:
        await running.stop()
