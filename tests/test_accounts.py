"""Account and session controls (docs/protocol.md 2, issue 26): changing the password,
listing and ending sessions, removing an account, the data export, and the operator's
`messenger user` commands. Real servers, real clients, on SQLite and PostgreSQL;
what must be gone is checked in SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from messenger import cli
from messenger.auth import Authenticated
from messenger.config import Settings
from messenger.token_use import TokenUse
from messenger.wire import UserRef
from tests.cluster_support import wait_until
from tests.support import (
    PASSWORD,
    Account,
    Device,
    Http,
    RunningServer,
    Servers,
    read_tables,
    sql,
    stored_conversation,
    unique_name,
)

NEW_PASSWORD = "a brand new secret"
PASSWORD_PATH = "/api/v1/users/me/password"
SESSIONS = "/api/v1/sessions"
ME = "/api/v1/users/me"
EXPORT = "/api/v1/users/me/export"
# Seconds a dropped socket may take to go (a generous bound).
WITHIN = 5.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Webhook subscriptions may name loopback (nothing is pushed within a test).
    return settings.replace(push_allow_http=("127.0.0.1",))


# -- helpers ---------------------------------------------------------------------------


async def login(http: Http, name: str, agent: str = "test-agent/1") -> str:
    status, body = await http.request(
        "POST",
        SESSIONS,
        {"username": name, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert status == 201, body
    return str(body["token"])


async def sessions_of(http: Http, token: str) -> list[dict[str, Any]]:
    status, body = await http.request("GET", SESSIONS, token=token)
    assert status == 200, body
    assert set(body) == {"sessions"}, body
    return list(body["sessions"])


async def works(http: Http, token: str) -> bool:
    status, _ = await http.request("GET", "/api/v1/users/me/settings", token=token)
    assert status in (200, 401), status
    return status == 200


async def subscribe_webhook(http: Http, token: str, path: str) -> int:
    body = {"kind": "webhook", "url": f"http://127.0.0.1:9/{path}"}
    status, made = await http.request("POST", "/api/v1/push/subscriptions", body, token=token)
    assert status == 201, made
    return int(made["id"])


async def connected(url: str, token: str) -> Device:
    device = await Device(url).connect(token)
    await device.wait_synced()
    return device


async def dropped(device: Device) -> None:
    await wait_until(lambda: not device.sio.connected, WITHIN)


async def upload(url: str, token: str, data: bytes, name: str = "notes.txt") -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/api/v1/attachments",
            params={"name": name},
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        ) as response:
            assert response.status == 201, await response.text()
            return dict(await response.json())


async def user_id(url: str, name: str) -> int:
    rows = await sql(url, f"SELECT id FROM users WHERE username = '{name}'")
    return int(rows[0][0])


async def count(url: str, query: str) -> int:
    return int((await sql(url, query))[0][0])


# -- changing the password ---------------------------------------------------------------


async def test_a_password_change_ends_every_other_session(
    server: RunningServer, http: Http
) -> None:
    ann = await http.account("ann")
    other = await login(http, ann.username, "phone/2")
    await subscribe_webhook(http, other, "phone")
    kept = await subscribe_webhook(http, ann.token, "laptop")
    calling, elsewhere = await connected(server.url, ann.token), await connected(server.url, other)

    # A wrong current password, or a bad new one, changes nothing.
    for body, status, code in (
        ({"current": "not my password", "new": NEW_PASSWORD}, 401, "bad_credentials"),
        ({"current": PASSWORD, "new": "short"}, 400, "invalid"),
        ({"current": PASSWORD, "new": "x\x00" * 8}, 400, "invalid"),
        ({"current": PASSWORD}, 400, "invalid"),
        ({"current": PASSWORD, "new": 12345678}, 400, "invalid"),
    ):
        answer = await http.request("PUT", PASSWORD_PATH, body, token=ann.token)
        assert answer[0] == status and answer[1]["error"]["code"] == code, (body, answer)
    assert await works(http, other) and elsewhere.sio.connected

    body = {"current": PASSWORD, "new": NEW_PASSWORD}
    status, _ = await http.request("PUT", PASSWORD_PATH, body, token=ann.token)
    assert status == 204
    await dropped(elsewhere)
    assert not await works(http, other)
    assert await works(http, ann.token) and calling.sio.connected
    assert [s["current"] for s in await sessions_of(http, ann.token)] == [True]
    # The other session's push subscription went with it; the caller's stayed.
    status, listed = await http.request("GET", "/api/v1/push/subscriptions", token=ann.token)
    assert [s["id"] for s in listed["subscriptions"]] == [kept], listed
    # The new password logs in, the old one no longer does.
    assert (await http.login(ann.username, PASSWORD))[0] == 401
    assert (await http.login(ann.username, NEW_PASSWORD))[0] == 201
    # The caller's socket still sends.
    bob = await http.account("bob")
    assert (await calling.send(bob.username, "still here", "c-1"))["ok"]
    await calling.disconnect()


async def test_wrong_current_passwords_are_rate_limited_per_user(http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    wrong = {"current": "not my password", "new": NEW_PASSWORD}
    statuses = [
        (await http.request("PUT", PASSWORD_PATH, wrong, token=ann.token))[0] for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    # Even the right password waits now; another user does not.
    right = {"current": PASSWORD, "new": NEW_PASSWORD}
    assert (await http.request("PUT", PASSWORD_PATH, right, token=ann.token))[0] == 429
    assert (await http.request("PUT", PASSWORD_PATH, right, token=bob.token))[0] == 204
    assert (await http.login(ann.username, PASSWORD))[0] == 201


# -- sessions ----------------------------------------------------------------------------


async def test_sessions_list_shows_each_login(server: RunningServer, http: Http) -> None:
    name = unique_name("ann")
    assert (await http.register(name))[0] == 201
    first = await login(http, name, "laptop/1")
    second = await login(http, name, "phone\t/2 " + "x" * 400)
    listed = await sessions_of(http, first)
    assert [s["current"] for s in listed] == [False, True]  # newest first
    assert [s["user_agent"] for s in listed] == ["phone/2 " + "x" * 248, "laptop/1"]
    assert {s["address"] for s in listed} == {"127.0.0.1"}
    assert set(listed[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "user_agent",
        "address",
        "current",
    }
    assert listed[0]["id"] > listed[1]["id"]
    # Set at login; written at most once a minute per token and node, so the
    # requests since have not moved it.
    assert all(s["last_used_at"] == s["created_at"] for s in listed), listed
    assert json.dumps(listed).find(second) == -1  # no token in the answer

    # With a shorter interval, a use moves it (a socket's connect included).
    server.node.accounts.token_use = TokenUse(server.node.db, every=0.2)
    await asyncio.sleep(0.3)
    device = await connected(server.url, second)

    async def moved() -> bool:
        now = {s["id"]: s for s in await sessions_of(http, first)}
        return all(s["last_used_at"] > s["created_at"] for s in now.values())

    await wait_until(moved, WITHIN)
    await device.disconnect()

    # A session without a User-Agent shows null.
    async with aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as bare:
        async with bare.post(
            server.url + SESSIONS, json={"username": name, "password": PASSWORD}
        ) as response:
            assert response.status == 201
    assert (await sessions_of(http, first))[0]["user_agent"] is None


async def test_ending_a_session_drops_its_sockets(server: RunningServer, http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    other = await login(http, ann.username, "phone/2")
    webhook = await subscribe_webhook(http, other, "phone")
    elsewhere = await connected(server.url, other)
    here = await connected(server.url, ann.token)
    other_id = (await sessions_of(http, other))[0]["id"]

    # Another user's session, and ids that name nothing, are 404 alike.
    ann_id = next(s["id"] for s in await sessions_of(http, ann.token) if s["current"])
    for path, token in (
        (f"{SESSIONS}/{ann_id}", bob.token),
        (f"{SESSIONS}/0", ann.token),
        (f"{SESSIONS}/abc", ann.token),
        (f"{SESSIONS}/{2**63}", ann.token),
        (f"{SESSIONS}/{10**30}", ann.token),
        (f"{SESSIONS}/-1", ann.token),
    ):
        status, body = await http.request("DELETE", path, token=token)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)
    assert await works(http, ann.token) and await works(http, other)
    assert (await http.request("DELETE", f"{SESSIONS}/{other_id}"))[0] == 401

    assert (await http.request("DELETE", f"{SESSIONS}/{other_id}", token=ann.token))[0] == 204
    await dropped(elsewhere)
    assert not await works(http, other)
    assert here.sio.connected and await works(http, ann.token)
    assert (await http.request("DELETE", f"{SESSIONS}/{other_id}", token=ann.token))[0] == 404
    assert await count(server.settings.database_url, "SELECT count(*) FROM push_subscriptions") == 0
    assert webhook  # it was made, and went with its session

    # The logout is still `current`.
    assert (await http.request("DELETE", f"{SESSIONS}/current", token=ann.token))[0] == 204
    await dropped(here)
    assert not await works(http, ann.token)


# -- removing an account -------------------------------------------------------------------


@pytest.fixture
async def removal(server: RunningServer, http: Http) -> AsyncIterator[dict[str, Any]]:
    """ann, about to leave: a conversation each way with bob (ann hid one of bob's
    messages), blocks both ways with carl and bob, a push subscription, a pending
    upload and a sent one."""
    ann, bob, carl = (
        await http.account("ann"),
        await http.account("bob"),
        await http.account("carl"),
    )
    a = await connected(server.url, ann.token)
    b = await connected(server.url, bob.token)
    sent = await upload(server.url, ann.token, b"a sent file")
    pending = await upload(server.url, ann.token, b"never sent")
    to_bob = await a.call(
        "send",
        {"to": bob.username, "body": "bye bob", "client_id": "a-1", "attachments": [sent["id"]]},
    )
    to_ann = await b.send(ann.username, "see you", "b-1")
    hidden = await b.send(ann.username, "hide me", "b-2")
    assert to_bob["ok"] and to_ann["ok"] and hidden["ok"], (to_bob, to_ann, hidden)
    assert (await a.call("delete", {"id": hidden["message"]["id"], "for": "me"}))["ok"]
    assert (await a.call("react", {"id": to_ann["message"]["id"], "emoji": "👍"}))["ok"]
    assert (await a.call("block", {"user": carl.username}))["ok"]
    assert (await b.call("block", {"user": ann.username}))["ok"]
    assert (await b.call("unblock", {"user": ann.username}))["ok"]
    c = await connected(server.url, carl.token)
    assert (await c.call("block", {"user": ann.username}))["ok"]
    assert (await b.send(carl.username, "hi carl", "b-3"))["ok"]
    await subscribe_webhook(http, ann.token, "ann")
    yield {
        "ann": ann,
        "bob": bob,
        "carl": carl,
        "a": a,
        "b": b,
        "to_bob": to_bob["message"],
        "to_ann": to_ann["message"],
        "pending": pending,
    }
    for device in (a, b, c):
        if device.sio.connected:
            await device.disconnect()


async def test_removing_an_account(
    server: RunningServer, http: Http, removal: dict[str, Any]
) -> None:
    url = server.settings.database_url
    ann: Account = removal["ann"]
    bob: Account = removal["bob"]
    uid = await user_id(url, ann.username)
    before = await stored_conversation(server.url, bob, ann.username)

    for body, status in (
        ({"password": "not my password"}, 401),
        ({"password": "short"}, 400),
        ({}, 400),
        ({"password": None}, 400),
    ):
        answer = await http.request("DELETE", ME, body, token=ann.token)
        assert answer[0] == status, (body, answer)
    assert await works(http, ann.token) and removal["a"].sio.connected

    assert (await http.request("DELETE", ME, {"password": PASSWORD}, token=ann.token))[0] == 204
    await dropped(removal["a"])
    assert not await works(http, ann.token)
    # As an unknown name: bad_credentials, never to be registered again.
    status, body = await http.login(ann.username)
    assert (status, body["error"]["code"]) == (401, "bad_credentials")
    status, body = await http.register(ann.username, "another password")
    assert (status, body["error"]["code"]) == (409, "username_taken")

    # What was ann's alone is gone.
    for table, where in (
        ("tokens", f"user_id = {uid}"),
        ("push_subscriptions", f"user_id = {uid}"),
        ("blocks", f"blocker_id = {uid} OR blocked_id = {uid}"),
        ("stream_events", f"user_id = {uid}"),
        ("hidden_messages", f"user_id = {uid}"),
        ("attachments", f"uploader_id = {uid} AND message_id IS NULL"),
    ):
        assert await count(url, f"SELECT count(*) FROM {table} WHERE {where}") == 0, table
    row = await sql(url, f"SELECT password_hash, deleted_at FROM users WHERE id = {uid}")
    assert row[0][0] == "" and row[0][1] is not None
    # The sent file stays with its message; the pending one is not served.
    assert await count(url, f"SELECT count(*) FROM attachments WHERE uploader_id = {uid}") == 1

    # bob keeps the conversation, reactions included, and sees ann removed.
    after = await stored_conversation(server.url, bob, ann.username)
    assert after == before and len(after) == 3
    assert after[1]["reactions"] == {"👍": [ann.username]}, after
    status, listed = await http.request("GET", "/api/v1/conversations", token=bob.token)
    removed = {c["with"]: c["removed"] for c in listed["conversations"]}
    assert removed == {ann.username: True, removal["carl"].username: False}, listed
    b: Device = removal["b"]
    seen = await b.call("presence", {"users": [ann.username]})
    assert seen["users"][ann.username] == {"online": False, "last_seen": None}, seen

    # A send to ann stores nothing; a retry of a stored one gets its message (G2).
    refused = await b.send(ann.username, "are you there?", "b-9")
    assert refused["error"]["code"] == "not_found", refused
    retried = await b.send(ann.username, "see you", "b-1")
    assert retried["ok"] and retried["message"] == removal["to_ann"] | {
        "reactions": {"👍": [ann.username]}
    }, retried
    assert await stored_conversation(server.url, bob, ann.username) == before
    # Removing again: the token is gone.
    assert (await http.request("DELETE", ME, {"password": PASSWORD}, token=ann.token))[0] == 401


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_removal_and_ended_sessions_drop_sockets_on_another_node(
    servers: Servers, http_settings: Settings
) -> None:
    """Through Redis: the other node's resync is off, so only the bus can drop them."""
    servers.settings = http_settings
    a, b = await servers.start(), await servers.start()
    http_a, http_b = Http(a.url), Http(b.url)
    ann = await http_a.account("ann")
    other = await login(http_a, ann.username)
    other_id = (await sessions_of(http_a, other))[0]["id"]
    elsewhere = await connected(b.url, other)
    on_b = await connected(b.url, ann.token)

    status, _ = await http_a.request("DELETE", f"{SESSIONS}/{other_id}", token=ann.token)
    assert status == 204
    await dropped(elsewhere)
    assert on_b.sio.connected
    status, _ = await http_a.request("DELETE", ME, {"password": PASSWORD}, token=ann.token)
    assert status == 204
    await dropped(on_b)
    assert not await works(http_b, ann.token)


@pytest.fixture
def http_settings(settings: Settings) -> Settings:
    """Two nodes on the shared Redis under a prefix of their own, resync off."""
    return settings.replace(
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix=f"accounts-{uuid.uuid4().hex[:8]}",
        resync_interval=120.0,
    )


# -- the export ------------------------------------------------------------------------


async def fetch_export(url: str, token: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            url + EXPORT, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, dict(response.headers), await response.read()


async def test_the_export_holds_the_users_data_and_no_secret(
    server: RunningServer, http: Http, removal: dict[str, Any]
) -> None:
    ann: Account = removal["ann"]
    status, headers, raw = await fetch_export(server.url, ann.token)
    assert status == 200, raw
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    expected = f'attachment; filename="messenger-export-{ann.username}.json"'
    assert headers["Content-Disposition"] == expected
    document = json.loads(raw)
    assert list(document) == [
        "user",
        "sessions",
        "push_subscriptions",
        "blocks",
        "attachments",
        "messages",
    ]
    assert document["user"]["username"] == ann.username
    assert document["user"]["settings"] == {"read_receipts": True}
    assert [s["current"] for s in document["sessions"]] == [True]
    assert [s["kind"] for s in document["push_subscriptions"]] == ["webhook"]
    assert document["blocks"] == [removal["carl"].username]
    files = document["attachments"]
    assert [f["message_id"] for f in files] == [removal["to_bob"]["id"], None], files
    assert files[0]["sha256"] == hashlib.sha256(b"a sent file").hexdigest()
    messages = document["messages"]
    assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)
    assert [(m["from"], m.get("hidden", False)) for m in messages] == [
        (ann.username, False),
        (removal["bob"].username, False),
        (removal["bob"].username, True),
    ], messages
    assert messages[0]["attachments"] == removal["to_bob"]["attachments"] != []
    assert messages[1]["reactions"] == {"👍": [ann.username]}
    assert messages[2]["body"] is None
    # No token, token hash, password hash or webhook secret.
    url = server.settings.database_url
    secrets = [ann.token, hashlib.sha256(ann.token.encode()).hexdigest()]
    secrets += [row[0] for row in await sql(url, "SELECT token_hash FROM tokens")]
    secrets += [row[0] for row in await sql(url, "SELECT password_hash FROM users")]
    secrets += [row[0] for row in await sql(url, "SELECT secret FROM push_subscriptions")]
    for secret in secrets:
        assert secret.encode() not in raw, secret
    assert b"argon2" not in raw and b"token" not in raw

    # One export at a time per user: a second waits (the first held here).
    uid = await user_id(url, ann.username)
    who = Authenticated(0, UserRef(uid, ann.username))
    async with server.node.account_service.export(who):
        status, headers, raw = await fetch_export(server.url, ann.token)
        assert status == 429 and json.loads(raw)["error"]["code"] == "rate_limited"
        assert int(headers["Retry-After"]) >= 1
        assert (await fetch_export(server.url, removal["bob"].token))[0] == 200
    assert (await fetch_export(server.url, ann.token))[0] == 200
    assert (await http.request("GET", EXPORT))[0] == 401


async def test_a_large_export_is_streamed(server: RunningServer, http: Http) -> None:
    """Thousands of messages: written in pieces (chunked, no length known up front),
    read in pages, every message once, ascending."""
    ann, bob = await http.account("ann"), await http.account("bob")
    a = await connected(server.url, ann.token)
    b = await connected(server.url, bob.token)
    total = 3000
    for start in range(0, total, 250):
        sends = [
            (a if n % 2 else b).send(
                bob.username if n % 2 else ann.username, f"message {n}", f"c-{n}"
            )
            for n in range(start, start + 250)
        ]
        answers = await asyncio.gather(*sends)
        assert all(answer["ok"] for answer in answers)
    await a.disconnect()
    await b.disconnect()
    async with aiohttp.ClientSession() as session:
        async with session.get(
            server.url + EXPORT, headers={"Authorization": f"Bearer {ann.token}"}
        ) as response:
            assert response.status == 200
            assert response.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in response.headers
            pieces = [chunk async for chunk in response.content.iter_any()]
    document = json.loads(b"".join(pieces))
    ids = [m["id"] for m in document["messages"]]
    assert len(ids) == total and ids == sorted(set(ids))
    assert {m["body"] for m in document["messages"]} == {f"message {n}" for n in range(total)}


# -- the operator's commands ---------------------------------------------------------------


async def run_cli(*args: str) -> int:
    """`messenger user ...` as the operator runs it (in a thread: it runs its own loop),
    leaving the process's logging as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return await asyncio.to_thread(cli.main, ["user", *args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_disable_and_enable(
    server: RunningServer, http: Http, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.settings.database_url
    ann = await http.account("ann")
    device = await connected(server.url, ann.token)
    assert await run_cli("disable", ann.username, "--database-url", url) == 0
    assert f"disabled {ann.username}; 1 sessions ended" in capsys.readouterr().out
    # No node was told: the maintenance tick drops the socket (resync 0.5 s here).
    await dropped(device)
    assert not await works(http, ann.token)
    status, body = await http.login(ann.username)
    assert (status, body["error"]["code"]) == (403, "forbidden"), body
    status, body = await http.login(ann.username, "a wrong password")
    assert (status, body["error"]["code"]) == (401, "bad_credentials"), body
    assert await run_cli("enable", ann.username, "--database-url", url) == 0
    assert (await http.login(ann.username))[0] == 201
    assert await run_cli("disable", "nobody@example.com", "--database-url", url) == 1
    assert "no user" in capsys.readouterr().err


async def test_reset_password(
    server: RunningServer,
    http: Http,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = server.settings.database_url
    ann = await http.account("ann")
    monkeypatch.setattr(sys, "stdin", io.StringIO(NEW_PASSWORD + "\n"))
    assert (
        await run_cli("reset-password", ann.username, "--password-stdin", "--database-url", url)
        == 0
    )
    assert not await works(http, ann.token)
    assert (await http.login(ann.username, PASSWORD))[0] == 401
    assert (await http.login(ann.username, NEW_PASSWORD))[0] == 201
    capsys.readouterr()
    # Without --password-stdin, one is made and printed.
    assert await run_cli("reset-password", ann.username, "--database-url", url) == 0
    printed = capsys.readouterr().out
    made = printed.rsplit("new password: ", 1)[1].strip()
    assert len(made) >= 20
    assert (await http.login(ann.username, NEW_PASSWORD))[0] == 401
    assert (await http.login(ann.username, made))[0] == 201
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert (
        await run_cli("reset-password", ann.username, "--password-stdin", "--database-url", url)
        == 1
    )
    assert (await http.login(ann.username, made))[0] == 201


async def test_delete_and_list(
    server: RunningServer, http: Http, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.settings.database_url
    ann, bob, carl = (
        await http.account("ann"),
        await http.account("bob"),
        await http.account("carl"),
    )
    await login(http, bob.username)
    device = await connected(server.url, ann.token)
    assert (await device.send(bob.username, "before I go", "a-1"))["ok"]
    assert await run_cli("disable", carl.username, "--database-url", url) == 0

    # Not without --yes.
    assert await run_cli("delete", ann.username, "--database-url", url) == 1
    assert "--yes" in capsys.readouterr().err
    assert await works(http, ann.token)
    assert await run_cli("delete", ann.username, "--yes", "--database-url", url) == 0
    assert f"removed {ann.username}; 1 sessions ended" in capsys.readouterr().out
    await dropped(device)
    assert (await http.login(ann.username))[0] == 401
    assert (await http.register(ann.username))[0] == 409
    assert len(await stored_conversation(server.url, bob, ann.username)) == 1
    assert await run_cli("delete", ann.username, "--yes", "--database-url", url) == 1

    assert await run_cli("list", "--database-url", url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "name\tcreated\tstate\tsessions"
    table = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert [table[n.username][2:] for n in (ann, bob, carl)] == [
        ["removed", "0"],
        ["active", "2"],
        ["disabled", "0"],
    ], lines
    assert table[bob.username][1].endswith("Z")


async def test_history_route_still_names_a_removed_user(http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    assert (await http.request("DELETE", ME, {"password": PASSWORD}, token=ann.token))[0] == 204
    path = f"/api/v1/conversations/{quote(ann.username)}/messages"
    status, body = await http.request("GET", path, token=bob.token)
    assert (status, body) == (200, {"messages": [], "has_more": False})


# -- bad input -----------------------------------------------------------------------------

# What a refused request must leave as it was (last_used_at moves with any request).
ACCOUNT_STATE = {
    "users": "SELECT id, username, password_hash, disabled_at, deleted_at FROM users ORDER BY id",
    "tokens": "SELECT id, user_id, revoked_at FROM tokens ORDER BY id",
    "push_subscriptions": "SELECT id, token_id FROM push_subscriptions ORDER BY id",
    "stream_events": "SELECT user_id, seq FROM stream_events ORDER BY user_id, seq",
}
RAW_BODIES = [
    b"",
    b"not json",
    b"[1]",
    b'"text"',
    b"null",
    b'{"password": NaN, "current": NaN}',
    b"\xff\xfe{}",
    b"[" * 60_000,
]


def bad_bodies(fields: list[str]) -> list[dict[str, Any]]:
    """JSON objects that are not a valid request for `fields` (each a password)."""
    good = dict.fromkeys(fields, PASSWORD)
    bodies: list[dict[str, Any]] = [{}]
    for field in fields:
        for value in (None, 5, True, ["a long password"], {"p": PASSWORD}, "short", "x" * 257):
            bodies.append({**good, field: value})
        bodies.append({**good, field: "\x00" * 8})
        bodies.append({**good, field: "\ud800" * 8})
        bodies.append({key: value for key, value in good.items() if key != field})
    return bodies


async def test_bad_bodies_change_nothing(server: RunningServer, http: Http) -> None:
    url = server.settings.database_url
    ann = await http.account("ann")
    other = await login(http, ann.username)
    await subscribe_webhook(http, other, "other")
    before = await read_tables(url, ACCOUNT_STATE)
    for method, path, fields in (
        ("PUT", PASSWORD_PATH, ["current", "new"]),
        ("DELETE", ME, ["password"]),
    ):
        for raw in RAW_BODIES:
            status, body = await http.request(method, path, token=ann.token, data=raw)
            assert (status, body["error"]["code"]) == (400, "invalid"), (path, raw[:20], body)
        for bad in bad_bodies(fields):
            status, body = await http.request(method, path, bad, token=ann.token)
            assert (status, body["error"]["code"]) == (400, "invalid"), (path, bad, body)
        too_large = b" " * (64 * 1024 + 1)
        status, body = await http.request(method, path, token=ann.token, data=too_large)
        assert (status, body["error"]["code"]) == (413, "too_large"), body
    assert await read_tables(url, ACCOUNT_STATE) == before
    assert await works(http, other) and await works(http, ann.token)
