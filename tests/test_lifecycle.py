"""What happens after send (docs/protocol.md 3.6-3.8, G10-G12): edits, deletes for me
and for everyone, replies, reactions, typing and private read receipts, against a
real server on SQLite and PostgreSQL, with real Socket.IO clients."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from urllib.parse import quote

import pytest

from messenger.config import Settings
from messenger.delivery import typing as typing_module
from tests.support import (
    Account,
    Device,
    Http,
    Scene,
    connect_synced,
    database_files,
    sql,
    start_server,
    two_way_scene,
)


def updates(device: Device, change: str | None = None) -> list[dict[str, Any]]:
    return [u for u in device.of("message_updated") if change is None or u["change"] == change]


async def history(http: Http, reader: Account, peer: str) -> list[dict[str, Any]]:
    status, body = await http.request(
        "GET", f"/api/v1/conversations/{quote(peer)}/messages", token=reader.token
    )
    assert status == 200, body
    return list(body["messages"])


async def edit(device: Device, message_id: int, body: str, client_id: str) -> Any:
    return await device.call("edit", {"id": message_id, "body": body, "client_id": client_id})


# -- edit -------------------------------------------------------------------------------


async def test_edit_reaches_every_device_of_both_users(scene: Scene, http: Http) -> None:
    """An edit is answered after its commit and pushed as `message_updated` to both
    users' devices, the editing one included; history shows the new body."""
    a2, _ = await connect_synced(scene.server.url, scene.ann)
    answer = await edit(scene.a, scene.to_bob, "hello again, bob", "e-1")
    assert answer["ok"], answer
    edited = answer["message"]
    assert edited["body"] == "hello again, bob" and edited["edited_at"] is not None
    for device in (scene.a, a2, scene.b):
        await device.wait_for(lambda d=device: len(updates(d)) == 1)  # type: ignore[misc]
        update = updates(device)[0]
        assert update["change"] == "edited" and update["message"] == edited
    for reader, peer in ((scene.ann, scene.bob), (scene.bob, scene.ann)):
        shown = {m["id"]: m for m in await history(http, reader, peer.username)}
        assert shown[scene.to_bob]["body"] == "hello again, bob"
    await a2.disconnect()


async def test_edit_is_the_senders_alone_and_idempotent(scene: Scene) -> None:
    """The recipient gets `forbidden`; a repeat with the same client_id answers the
    message as it is now and pushes nothing, even after a later edit."""
    refused = await edit(scene.b, scene.to_bob, "not mine", "e-x")
    assert refused["error"]["code"] == "forbidden", refused
    first = await edit(scene.a, scene.to_bob, "one", "e-1")
    second = await edit(scene.a, scene.to_bob, "two", "e-2")
    assert first["ok"] and second["ok"], (first, second)
    await scene.b.wait_for(lambda: len(updates(scene.b)) == 2)
    repeat = await edit(scene.a, scene.to_bob, "one", "e-1")
    assert repeat["ok"] and repeat["message"]["body"] == "two", repeat
    same = await edit(scene.a, scene.to_bob, "two", "e-3")  # no change: no event
    assert same["ok"], same
    await scene.b.send(scene.ann.username, "marker", "m-1")
    await scene.a.wait_for(lambda: any(m["body"] == "marker" for m in scene.a.messages()))
    assert len(updates(scene.a)) == 2 and len(updates(scene.b)) == 2


async def test_edit_and_delete_windows(settings: Settings, http: Http) -> None:
    """Past MESSENGER_EDIT_WINDOW an edit is `forbidden`, past the delete window a
    delete for everyone; a delete for me stays allowed."""
    short = dataclasses.replace(settings, edit_window=0.5, delete_window=0.5)
    server = await start_server(short)
    try:
        scene = await two_way_scene(server, Http(server.url))
        await asyncio.sleep(0.7)
        late = await edit(scene.a, scene.to_bob, "too late", "e-1")
        assert late["error"]["code"] == "forbidden", late
        gone = await scene.a.call("delete", {"id": scene.to_bob, "for": "everyone"})
        assert gone["error"]["code"] == "forbidden", gone
        mine = await scene.a.call("delete", {"id": scene.to_bob, "for": "me"})
        assert mine == {"ok": True}
        await scene.close()
    finally:
        await server.stop()


# -- delete -----------------------------------------------------------------------------


async def test_delete_for_everyone_leaves_a_tombstone(scene: Scene, http: Http) -> None:
    """Both users see `deleted: true, body: null` live and in history; the recipient
    cannot; a repeat pushes nothing; edits and reactions after it are `not_found`."""
    refused = await scene.b.call("delete", {"id": scene.to_bob, "for": "everyone"})
    assert refused["error"]["code"] == "forbidden", refused
    await scene.b.call("react", {"id": scene.to_bob, "emoji": "👍"})
    answer = await scene.a.call("delete", {"id": scene.to_bob, "for": "everyone"})
    assert answer["ok"], answer
    tomb = answer["message"]
    assert tomb["deleted"] is True and tomb["body"] is None and tomb["reactions"] == {}
    for device in (scene.a, scene.b):
        await device.wait_for(lambda d=device: len(updates(d, "deleted")) == 1)  # type: ignore[misc]
        assert updates(device, "deleted")[0]["message"] == tomb
    again = await scene.a.call("delete", {"id": scene.to_bob, "for": "everyone"})
    assert again == answer
    for command, payload in (
        ("edit", {"id": scene.to_bob, "body": "x", "client_id": "e-9"}),
        ("react", {"id": scene.to_bob, "emoji": "👍"}),
        ("unreact", {"id": scene.to_bob, "emoji": "👍"}),
    ):
        for device in (scene.a, scene.b):
            failed = await device.call(command, payload)
            assert failed["error"]["code"] == "not_found", (command, failed)
    for reader, peer in ((scene.ann, scene.bob), (scene.bob, scene.ann)):
        shown = {m["id"]: m for m in await history(http, reader, peer.username)}
        assert shown[scene.to_bob]["deleted"] is True and shown[scene.to_bob]["body"] is None
    assert len(updates(scene.b, "deleted")) == 1


async def test_delete_for_me_hides_it_from_the_caller_only(scene: Scene, http: Http) -> None:
    """The caller's devices get `change: hidden`; the other party hears nothing and
    keeps the message; the caller's history and conversation list lose it."""
    answer = await scene.b.call("delete", {"id": scene.to_bob, "for": "me"})
    assert answer == {"ok": True}
    await scene.b.wait_for(lambda: len(updates(scene.b, "hidden")) == 1)
    hidden = updates(scene.b, "hidden")[0]["message"]
    assert hidden["hidden"] is True and hidden["body"] is None
    assert [m["id"] for m in await history(http, scene.bob, scene.ann.username)] == [scene.to_ann]
    kept = await history(http, scene.ann, scene.bob.username)
    assert [m["body"] for m in kept] == ["hello bob", "hello ann"]
    assert await scene.b.call("delete", {"id": scene.to_bob, "for": "me"}) == {"ok": True}
    reacted = await scene.b.call("react", {"id": scene.to_bob, "emoji": "👍"})
    assert reacted["error"]["code"] == "not_found", reacted
    # The other party's later edit is not pushed to who hid it.
    assert (await edit(scene.a, scene.to_bob, "edited", "e-1"))["ok"]
    await scene.a.wait_for(lambda: len(updates(scene.a, "edited")) == 1)
    await asyncio.sleep(0.2)
    assert updates(scene.b, "edited") == []
    assert updates(scene.a, "hidden") == []


async def test_changes_to_messages_of_others_are_not_found(scene: Scene, http: Http) -> None:
    """G7: a stranger cannot edit, delete, or react to a message, nor learn it exists."""
    carl = await http.account("carl")
    c, _ = await connect_synced(scene.server.url, carl)
    for command, payload in (
        ("edit", {"id": scene.to_bob, "body": "x", "client_id": "e-1"}),
        ("delete", {"id": scene.to_bob, "for": "me"}),
        ("delete", {"id": scene.to_bob, "for": "everyone"}),
        ("react", {"id": scene.to_bob, "emoji": "👍"}),
        ("edit", {"id": 10**12, "body": "x", "client_id": "e-2"}),
    ):
        failed = await c.call(command, payload)
        assert failed["error"]["code"] == "not_found", (command, failed)
    await c.disconnect()


# -- replies and reactions --------------------------------------------------------------


async def test_reply_shows_the_current_excerpt(scene: Scene, http: Http) -> None:
    """`reply_to` must be of the same conversation; the excerpt follows edits of the
    original, and a delete of it leaves `{id, deleted: true}`."""
    reply = await scene.b.call(
        "send",
        {"to": scene.ann.username, "body": "yes!", "client_id": "r-1", "reply_to": scene.to_bob},
    )
    assert reply["ok"], reply
    assert reply["message"]["reply_to"] == {
        "id": scene.to_bob,
        "from": scene.ann.username,
        "excerpt": "hello bob",
    }
    carl = await http.account("carl")
    c, _ = await connect_synced(scene.server.url, carl)
    foreign = await c.call(
        "send",
        {"to": scene.ann.username, "body": "x", "client_id": "r-2", "reply_to": scene.to_bob},
    )
    assert foreign["error"]["code"] == "invalid", foreign
    await c.disconnect()
    assert (await edit(scene.a, scene.to_bob, "hello bob, edited", "e-1"))["ok"]
    shown = {m["id"]: m for m in await history(http, scene.ann, scene.bob.username)}
    assert shown[reply["message"]["id"]]["reply_to"]["excerpt"] == "hello bob, edited"
    assert (await scene.a.call("delete", {"id": scene.to_bob, "for": "everyone"}))["ok"]
    shown = {m["id"]: m for m in await history(http, scene.bob, scene.ann.username)}
    assert shown[reply["message"]["id"]]["reply_to"] == {"id": scene.to_bob, "deleted": True}
    late = await scene.b.call(
        "send",
        {"to": scene.ann.username, "body": "x", "client_id": "r-3", "reply_to": scene.to_bob},
    )
    assert late["error"]["code"] == "invalid", late


async def test_reactions(scene: Scene) -> None:
    """Either party reacts; a repeat pushes nothing; at most five emojis per user;
    one emoji only; unreact removes."""
    first = await scene.b.call("react", {"id": scene.to_bob, "emoji": "👍🏽"})
    assert first["ok"] and first["message"]["reactions"] == {"👍🏽": [scene.bob.username]}
    both = await scene.a.call("react", {"id": scene.to_bob, "emoji": "👍🏽"})
    assert both["message"]["reactions"] == {"👍🏽": [scene.bob.username, scene.ann.username]}
    await scene.a.wait_for(lambda: len(updates(scene.a, "reacted")) == 2)
    again = await scene.a.call("react", {"id": scene.to_bob, "emoji": "👍🏽"})
    assert again == both
    for bad in ("👍👍", "a", "", "x" * 100, 5):
        refused = await scene.a.call("react", {"id": scene.to_bob, "emoji": bad})
        assert refused["error"]["code"] == "invalid", (bad, refused)
    for emoji in ("😀", "🎉", "❤️", "👨‍👩‍👧"):
        assert (await scene.b.call("react", {"id": scene.to_bob, "emoji": emoji}))["ok"]
    sixth = await scene.b.call("react", {"id": scene.to_bob, "emoji": "🇫🇷"})
    assert sixth["error"]["code"] == "too_large", sixth
    gone = await scene.b.call("unreact", {"id": scene.to_bob, "emoji": "👍🏽"})
    assert gone["message"]["reactions"]["👍🏽"] == [scene.ann.username]
    await scene.a.wait_for(lambda: len(updates(scene.a, "reacted")) == 7)
    assert (await scene.b.call("unreact", {"id": scene.to_bob, "emoji": "👍🏽"}))["ok"]
    await asyncio.sleep(0.2)
    assert len(updates(scene.a, "reacted")) == 7


# -- convergence (G11) --------------------------------------------------------------------


async def test_a_device_offline_during_changes_converges(scene: Scene, http: Http) -> None:
    """G11: a device that was away during an edit, a reaction and a delete, resuming
    from its cursor or from none, ends with every message as it is now; the deleted
    one never shows its body."""
    synced = await scene.b.wait_synced()
    cursor = max(scene.b.cursors() or [synced])
    await scene.b.disconnect()
    secret = await scene.a.send(scene.bob.username, "never seen by bob", "a-2")
    assert (await edit(scene.a, scene.to_bob, "hello bob (edited)", "e-1"))["ok"]
    assert (await scene.a.call("react", {"id": scene.to_bob, "emoji": "🎉"}))["ok"]
    gone = await scene.a.call("delete", {"id": secret["message"]["id"], "for": "everyone"})
    assert gone["ok"], gone
    for auth in ({"cursor": cursor}, {"cursor": 0}, {}):
        device, head = await connect_synced(scene.server.url, scene.bob, **auth)
        state: dict[int, dict[str, Any]] = {}
        for name, data in device.events:
            if name in ("new_message", "message_updated"):
                state[data["message"]["id"]] = data["message"]
                assert data["message"]["body"] != "never seen by bob", (auth, data)
        assert state[secret["message"]["id"]]["deleted"] is True, auth
        if scene.to_bob in state:
            assert state[scene.to_bob]["body"] == "hello bob (edited)", auth
            assert state[scene.to_bob]["reactions"] == {"🎉": [scene.ann.username]}
        assert head >= max(device.cursors(), default=0)
        await device.disconnect()
    answer = await scene.a.call("sync", {"after": 0})
    for entry in answer["events"]:
        message = entry["data"].get("message")
        if message is not None and message["id"] == secret["message"]["id"]:
            assert message["body"] is None and message["deleted"] is True


# -- gone means gone (G10) ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_deleted_and_edited_text_leaves_the_files(
    scene: Scene, database_url: str, http: Http
) -> None:
    """G10: after a delete for everyone, and after an edit, the old text is not in
    the database file nor its WAL once the next maintenance tick has run; the reply
    excerpt of it is gone too."""
    deleted = "zq-deleted-text-81734"
    edited = "zq-edited-away-52119"
    doomed = await scene.a.send(scene.bob.username, deleted * 40, "g-1")  # overflow pages too
    changed = await scene.a.send(scene.bob.username, edited, "g-2")
    reply = await scene.b.call(
        "send",
        {
            "to": scene.ann.username,
            "body": "quoting",
            "client_id": "g-3",
            "reply_to": doomed["message"]["id"],
        },
    )
    assert reply["ok"], reply
    # Make sure both texts reached the files first.
    await scene.server.node.db.erase_freed_text()
    assert any(deleted.encode() in p.read_bytes() for p in database_files(database_url))
    assert (await scene.a.call("delete", {"id": doomed["message"]["id"], "for": "everyone"}))["ok"]
    assert (await edit(scene.a, changed["message"]["id"], "new text", "e-1"))["ok"]

    async def gone() -> bool:
        blobs = [p.read_bytes() for p in database_files(database_url)]
        return not any(deleted.encode() in b or edited.encode() in b for b in blobs)

    for _ in range(100):
        if await gone():
            break
        await asyncio.sleep(0.1)
    assert await gone(), "deleted or edited text is still in the database files"
    shown = {m["id"]: m for m in await history(http, scene.bob, scene.ann.username)}
    assert shown[reply["message"]["id"]]["reply_to"] == {
        "id": doomed["message"]["id"],
        "deleted": True,
    }
    rows = await sql(database_url, "SELECT count(*) FROM stream_events WHERE payload LIKE '%zq-%'")
    assert rows == [(0,)]


# -- typing -----------------------------------------------------------------------------


@pytest.fixture
def short_typing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(typing_module, "TYPING_TTL", 0.5)


async def test_typing_is_ephemeral(scene: Scene, http: Http, short_typing: None) -> None:
    """`typing` reaches the other user's devices, not the stream; it ends on `false`,
    on a send, on the typer's disconnect and by expiry; a block drops it."""
    head = max(scene.b.cursors())
    a, b = scene.a, scene.b
    assert await a.call("typing", {"to": scene.bob.username, "state": True}) == {"ok": True}
    await b.wait_for(lambda: len(b.of("typing")) == 1)
    assert b.of("typing")[0] == {"from": scene.ann.username, "state": True}
    await a.call("typing", {"to": scene.bob.username, "state": False})
    await b.wait_for(lambda: len(b.of("typing")) == 2)
    assert b.of("typing")[1]["state"] is False
    # Expiry.
    await a.call("typing", {"to": scene.bob.username, "state": True})
    await b.wait_for(lambda: len(b.of("typing")) == 4, timeout=5)
    assert [t["state"] for t in b.of("typing")[2:]] == [True, False]
    # A send ends it.
    await a.call("typing", {"to": scene.bob.username, "state": True})
    await a.send(scene.bob.username, "done typing", "t-1")
    await b.wait_for(lambda: len(b.of("typing")) == 6)
    assert b.of("typing")[5]["state"] is False
    # A disconnect ends it.
    a2, _ = await connect_synced(scene.server.url, scene.ann)
    await a2.call("typing", {"to": scene.bob.username, "state": True})
    await b.wait_for(lambda: len(b.of("typing")) == 7)
    await a2.disconnect()
    await b.wait_for(lambda: len(b.of("typing")) == 8)
    assert b.of("typing")[7]["state"] is False
    # Nothing of it is in the stream.
    assert max(b.cursors()) == head + 1  # only the message
    # Blocked: dropped, and the typer is told nothing.
    assert (await b.call("block", {"user": scene.ann.username}))["ok"]
    assert await a.call("typing", {"to": scene.bob.username, "state": True}) == {"ok": True}
    await asyncio.sleep(0.3)
    assert len(b.of("typing")) == 8
    bad = await a.call("typing", {"to": scene.bob.username, "state": "yes"})
    assert bad["error"]["code"] == "invalid"


# -- private read receipts (G12) ----------------------------------------------------------


async def test_private_reads_tell_the_sender_delivered_only(scene: Scene, http: Http) -> None:
    """G12: with read receipts off, the reader's devices learn `read`, the sender at
    most `delivered`, in receipts and history alike; turning them on again reveals
    nothing read meanwhile."""
    status, body = await http.request(
        "PUT", "/api/v1/users/me/settings", {"read_receipts": False}, token=scene.bob.token
    )
    assert (status, body) == (200, {"read_receipts": False})
    status, body = await http.request("GET", "/api/v1/users/me/settings", token=scene.bob.token)
    assert (status, body) == (200, {"read_receipts": False})
    b2, _ = await connect_synced(scene.server.url, scene.bob)
    marked = await scene.b.call("read", {"ids": [scene.to_bob]})
    assert marked == {"ok": True, "updated": 1}
    await scene.a.wait_for(lambda: len(scene.a.of("receipt")) == 1)
    await b2.wait_for(lambda: len(b2.of("receipt")) == 1)
    assert scene.a.of("receipt")[0]["status"] == "delivered"
    assert b2.of("receipt")[0]["status"] == "read"
    status, _ = await http.request(
        "PUT", "/api/v1/users/me/settings", {"read_receipts": True}, token=scene.bob.token
    )
    assert status == 200
    seen_by_ann = {m["id"]: m for m in await history(http, scene.ann, scene.bob.username)}
    assert seen_by_ann[scene.to_bob]["status"] == "delivered"
    assert seen_by_ann[scene.to_bob]["read_at"] is None
    seen_by_bob = {m["id"]: m for m in await history(http, scene.bob, scene.ann.username)}
    assert seen_by_bob[scene.to_bob]["status"] == "read"
    replay = await scene.a.call("sync", {"after": 0})
    assert all(e["data"].get("status") != "read" for e in replay["events"])
    for bad in ({}, {"read_receipts": "no"}, {"read_receipts": True, "theme": "dark"}, []):
        status, body = await http.request(
            "PUT", "/api/v1/users/me/settings", bad, token=scene.bob.token
        )
        assert (status, body["error"]["code"]) == (400, "invalid"), bad
    await b2.disconnect()


# -- the seed protocol ------------------------------------------------------------------


async def test_seed_connections_get_none_of_the_new_events(scene: Scene, http: Http) -> None:
    """A `compat: seed` connection is not told of changes or typing, and a message
    deleted before it is pushed is not shown to it at all."""
    seed = await Device(scene.server.url).connect(scene.bob.token, compat="seed")
    await seed.wait_synced()
    await scene.a.call("typing", {"to": scene.bob.username, "state": True})
    assert (await edit(scene.a, scene.to_bob, "edited", "e-1"))["ok"]
    await scene.b.wait_for(lambda: len(updates(scene.b)) == 1)
    await seed.disconnect()
    doomed = await scene.a.send(scene.bob.username, "soon gone", "s-1")
    await scene.a.call("delete", {"id": doomed["message"]["id"], "for": "everyone"})
    later = await Device(scene.server.url).connect(scene.bob.token, compat="seed")
    await later.wait_synced()
    for device in (seed, later):
        names = {name for name, _ in device.events}
        assert not names & {"message_updated", "typing", "new_message"}, names
    assert all(m["message"] != "soon gone" for m in later.of("receivedMessage"))
    await later.disconnect()


# -- bad input (G8) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        ("edit", {"id": "1", "body": "x", "client_id": "c"}),
        ("edit", {"id": 1, "body": "", "client_id": "c"}),
        ("edit", {"id": 1, "body": "x"}),
        ("delete", {"id": 1}),
        ("delete", {"id": 1, "for": "them"}),
        ("delete", {"id": -1, "for": "me"}),
        ("react", {"id": 1}),
        ("unreact", {"id": 1, "emoji": ["👍"]}),
        ("typing", {"to": "x", "state": True}),
        ("typing", {"state": True}),
        ("send", {"to": "someone@example.com", "body": "x", "client_id": "c", "reply_to": 0}),
    ],
)
async def test_malformed_changes_are_invalid(
    scene: Scene, command: str, payload: dict[str, Any]
) -> None:
    answer = await scene.a.call(command, payload)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer


async def test_changes_are_counted_in_metrics(scene: Scene, http: Http) -> None:
    """`messenger_message_changes_total` counts each committed change once, by kind;
    repeats that change nothing are not counted."""
    assert (await edit(scene.a, scene.to_bob, "v2", "e-1"))["ok"]
    assert (await edit(scene.a, scene.to_bob, "v2", "e-1"))["ok"]  # a repeat
    assert (await scene.b.call("react", {"id": scene.to_bob, "emoji": "👍"}))["ok"]
    assert (await scene.b.call("delete", {"id": scene.to_ann, "for": "me"}))["ok"]
    status, text = await http.request("GET", "/metrics")
    assert status == 200
    for change, count in (("edited", 1), ("reacted", 1), ("hidden", 1)):
        line = f'messenger_message_changes_total{{change="{change}"}} {count}.0'
        assert line in text, (line, [x for x in text.splitlines() if "changes" in x])
    assert 'messenger_message_changes_total{change="deleted"}' not in text
