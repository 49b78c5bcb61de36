"""The HTTP API of PROTOCOL.md section 2: accounts, sessions, conversations, history,
health, metrics, the error body shape and the Origin rule (HTTP and Socket.IO)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import socketio

from messenger.config import Settings
from messenger.node import CLOSE_GRACE_SECONDS
from tests.support import (
    PASSWORD,
    Device,
    Http,
    RunningServer,
    accounts,
    start_server,
)

TIME_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FOREIGN = "http://evil.example"
ALLOWED = "http://allowed.example"
POLL = "/socket.io/?EIO=4&transport=polling"


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    """Every HTTP failure is exactly {"error": {"code", "message"}} with its status."""
    assert status == expected_status, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


async def raw(
    url: str, method: str, path: str, headers: dict[str, str] | None = None, data: Any = None
) -> tuple[int, dict[str, str], str]:
    """A request whose headers the caller wants to see (CORS)."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, headers=headers, data=data) as response:
            return response.status, dict(response.headers), await response.text()


@asynccontextmanager
async def own_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A server of the test's own, for tests whose clients could hold up the shared
    fixture's shutdown (see `stop_draining`)."""
    running = await start_server(settings)
    try:
        yield running
    finally:
        await stop_draining(running, patience=1)


async def stop_draining(running: RunningServer, patience: float = 3) -> bool:
    """Stops the server; returns whether it stopped within `patience` seconds.

    Node.stop() waits for every Engine.IO session's queue to flush, which an idle
    polling session never does; after `patience`, empty those queues from here so the
    stop finishes (test_stop_is_not_held_up_by_an_idle_polling_session checks this).
    """
    task = asyncio.ensure_future(running.stop())
    done, _ = await asyncio.wait({task}, timeout=patience)
    if not done:
        for socket in list(running.node.sio.eio.sockets.values()):
            while not socket.queue.empty():
                socket.queue.get_nowait()
                socket.queue.task_done()
    await asyncio.wait_for(task, 10)
    return bool(done)


async def polling_handshake(url: str, origin: str | None) -> tuple[int, dict[str, str], str]:
    """An Engine.IO polling handshake with that Origin; an opened session is closed
    again at once (a close packet), as a client that leaves does."""
    headers = {"Origin": origin} if origin is not None else {}
    status, response_headers, text = await raw(url, "GET", POLL, headers)
    if status == 200 and text.startswith("0{"):
        sid = json.loads(text[1:])["sid"]
        await raw(url, "POST", f"{POLL}&sid={sid}", headers, data="1")
    return status, response_headers, text


async def send_ok(device: Device, to: str, body: str, client_id: str) -> dict[str, Any]:
    answer = await device.send(to, body, client_id)
    assert answer["ok"], answer
    return dict(answer["message"])


async def wait_disconnected(device: Device, timeout: float = 5) -> None:
    """Resolves when the server closes the client's connection."""
    gone = asyncio.Event()
    device.sio.on("disconnect", lambda *args: gone.set())
    if not device.sio.connected:
        return
    await asyncio.wait_for(gone.wait(), timeout)


# -- registration -------------------------------------------------------------------


async def test_register_creates_a_lower_case_user(http: Http) -> None:
    """201 with the stored (lower-case) name; login then works in any case."""
    status, body = await http.register("Ann.Smith+x_1%@Example.COM")
    assert status == 201, body
    assert body == {"user": {"username": "ann.smith+x_1%@example.com"}}
    status, body = await http.login("ANN.SMITH+X_1%@EXAMPLE.COM")
    assert status == 201, body
    assert body["user"] == {"username": "ann.smith+x_1%@example.com"}


async def test_register_username_taken_is_case_insensitive(http: Http) -> None:
    """ "Ann@x.com" and "ann@x.com" are one name: the second registration is 409."""
    status, body = await http.register("Ann@x.com")
    assert status == 201, body
    status, body = await http.register("ann@x.com")
    assert_error(status, body, 409, "username_taken")
    status, body = await http.register("ANN@X.COM", "another password")
    assert_error(status, body, 409, "username_taken")
    # The first password still holds: the refused registration changed nothing.
    status, body = await http.login("ann@x.com", "another password")
    assert_error(status, body, 401, "bad_credentials")


BAD_USERNAMES: list[Any] = [
    "ab",
    "a" * 65,
    "",
    "has space@x.com",
    "tab\tname",
    "slash/name",
    "quote'name",
    "émile@x.com",
    "semi;colon",
    "nul\x00name",
    123,
    None,
    True,
    ["ann@x.com"],
    {"name": "ann@x.com"},
]


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/sessions"])
async def test_bad_usernames_and_passwords_are_invalid(http: Http, path: str) -> None:
    """Usernames outside 3-64 of [a-z0-9._%+@-] and passwords outside 8-256 are 400."""
    cases: list[dict[str, Any]] = [
        {"username": name, "password": PASSWORD} for name in BAD_USERNAMES
    ]
    cases += [
        {"username": "ann@x.com", "password": password}
        for password in ["", "1234567", "x" * 257, 12345678, None, ["x" * 10], "x\x00" * 5]
    ]
    cases += [{"password": PASSWORD}, {"username": "ann@x.com"}, {}]
    failures = []
    for case in cases:
        status, body = await http.request("POST", path, case)
        try:
            assert_error(status, body, 400, "invalid")
        except AssertionError as exc:
            failures.append((case, exc))
    assert not failures, failures
    # Nothing was registered by any of them.
    status, body = await http.login("ann@x.com")
    assert_error(status, body, 401, "bad_credentials")


async def test_boundary_lengths_are_accepted(http: Http) -> None:
    """3 and 64 character usernames, 8 and 256 character passwords are valid."""
    for username, password in [("abc", "x" * 8), ("a" * 64, "y" * 256)]:
        status, body = await http.register(username, password)
        assert status == 201, body
        status, body = await http.login(username, password)
        assert status == 201, body


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/sessions"])
async def test_body_must_be_a_json_object(http: Http, path: str) -> None:
    """Non-JSON and non-object JSON bodies are 400 invalid, never a 500."""
    bodies = [
        "not json",
        "{",
        "",
        '["ann@x.com", "password1"]',
        '"ann@x.com"',
        "null",
        "42",
        '{"username": "ann@x.com", "password": NaN}',
        b"\xff\xfe\x00garbage",
    ]
    failures = []
    for data in bodies:
        status, body = await http.request(
            "POST", path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            assert_error(status, body, 400, "invalid")
        except AssertionError as exc:
            failures.append((data, exc))
    assert not failures, failures


async def test_oversized_request_body_is_too_large(http: Http) -> None:
    """A body over the request limit is refused with the error shape (413 too_large)."""
    data = '{"username": "ann@x.com", "password": "' + "x" * 100_000 + '"}'
    status, body = await http.request(
        "POST", "/api/v1/users", data=data, headers={"Content-Type": "application/json"}
    )
    assert_error(status, body, 413, "too_large")


# -- sessions -----------------------------------------------------------------------


async def test_login_returns_token_expiry_and_user(http: Http) -> None:
    """201 {"token", "expires_at" (about 30 days ahead, ms + Z), "user"}; tokens differ."""
    status, body = await http.register("ann@x.com")
    assert status == 201, body
    before = datetime.now(UTC)
    status, first = await http.login("ann@x.com")
    assert status == 201, first
    assert set(first) == {"token", "expires_at", "user"}, first
    assert first["user"] == {"username": "ann@x.com"}
    assert isinstance(first["token"], str) and len(first["token"]) >= 16
    assert TIME_FORMAT.fullmatch(first["expires_at"]), first["expires_at"]
    expires = datetime.strptime(first["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(expires - (before + timedelta(days=30))) < timedelta(minutes=1)
    status, second = await http.login("ann@x.com")
    assert status == 201, second
    assert second["token"] != first["token"]
    # The token works.
    status, body = await http.request("GET", "/api/v1/conversations", token=first["token"])
    assert status == 200, body


async def test_login_bad_credentials(http: Http) -> None:
    """Wrong password and unknown user get the same 401 bad_credentials."""
    status, body = await http.register("ann@x.com")
    assert status == 201, body
    status, wrong = await http.login("ann@x.com", "wrong password")
    assert_error(status, wrong, 401, "bad_credentials")
    status, unknown = await http.login("nobody@x.com")
    assert_error(status, unknown, 401, "bad_credentials")
    assert wrong == unknown  # no hint whether the user exists


async def test_logout_revokes_the_token_and_drops_its_sockets(
    server: RunningServer, http: Http
) -> None:
    """204; the token then fails on HTTP and at the handshake, and its open socket is
    disconnected; another token of the same user keeps working."""
    (ann,) = await accounts(http, "ann")
    status, body = await http.login(ann.username)
    assert status == 201, body
    other_token = body["token"]
    doomed = await Device(server.url).connect(ann.token)
    survivor = await Device(server.url).connect(other_token)
    await doomed.wait_synced()
    await survivor.wait_synced()

    status, body = await http.request("DELETE", "/api/v1/sessions/current", token=ann.token)
    assert status == 204, body
    assert body == ""
    await wait_disconnected(doomed)

    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    assert_error(status, body, 401, "unauthorized")
    status, body = await http.request("DELETE", "/api/v1/sessions/current", token=ann.token)
    assert_error(status, body, 401, "unauthorized")
    refused = Device(server.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(ann.token)
    assert refused.connect_error["code"] == "unauthorized", refused.connect_error

    assert survivor.sio.connected
    answer = await survivor.call("presence", {"users": [ann.username]})
    assert answer["ok"] and answer["users"][ann.username]["online"] is True, answer
    status, body = await http.request("GET", "/api/v1/conversations", token=other_token)
    assert status == 200, body
    await survivor.disconnect()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/conversations"),
        ("GET", "/api/v1/conversations/someone@x.com/messages"),
        ("DELETE", "/api/v1/sessions/current"),
    ],
)
async def test_unauthorized_without_or_with_bad_bearer(http: Http, method: str, path: str) -> None:
    """Missing header, other schemes, empty and unknown tokens are all 401 unauthorized."""
    headers_list: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YW5uOnBhc3N3b3Jk"},
        {"Authorization": "Bearer not-a-real-token-but-long-enough"},
        {"Authorization": "Bearer " + "x" * 1000},
        {"Authorization": "Token abcdefghijklmnopqrstuvwxyz"},
    ]
    failures = []
    for headers in headers_list:
        status, body = await http.request(method, path, headers=headers)
        try:
            assert_error(status, body, 401, "unauthorized")
        except AssertionError as exc:
            failures.append((headers, exc))
    assert not failures, failures


# -- conversations and history ------------------------------------------------------


async def test_conversations_newest_first_with_unread(server: RunningServer, http: Http) -> None:
    """Each peer once, newest conversation first, its last message, and the count of
    incoming messages not yet read, which drops after `read`."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a = await Device(server.url).connect(ann.token)
    b = await Device(server.url).connect(bob.token)
    c = await Device(server.url).connect(carol.token)
    await asyncio.gather(a.wait_synced(), b.wait_synced(), c.wait_synced())

    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    assert (status, body) == (200, {"conversations": []})

    await send_ok(a, bob.username, "a1", "a1")
    b1 = await send_ok(b, ann.username, "b1", "b1")
    b2 = await send_ok(b, ann.username, "b2", "b2")
    c1 = await send_ok(c, ann.username, "c1", "c1")

    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    assert status == 200, body
    assert body == {
        "conversations": [
            {"with": carol.username, "last_message": c1, "unread": 1, "removed": False},
            {"with": bob.username, "last_message": b2, "unread": 2, "removed": False},
        ]
    }

    # A newer message moves bob's conversation to the top.
    a2 = await send_ok(a, bob.username, "a2", "a2")
    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    assert [item["with"] for item in body["conversations"]] == [bob.username, carol.username]
    assert body["conversations"][0]["last_message"] == a2
    assert body["conversations"][0]["unread"] == 2  # ann's own messages do not count

    answer = await a.call("read", {"ids": [b1["id"]]})
    assert answer == {"ok": True, "updated": 1}, answer
    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    unread = {item["with"]: item["unread"] for item in body["conversations"]}
    assert unread == {bob.username: 1, carol.username: 1}
    answer = await a.call("read", {"ids": [b2["id"], c1["id"]]})
    assert answer == {"ok": True, "updated": 2}, answer
    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    unread = {item["with"]: item["unread"] for item in body["conversations"]}
    assert unread == {bob.username: 0, carol.username: 0}

    # Bob sees only his conversation with ann, with ann's two messages unread.
    status, body = await http.request("GET", "/api/v1/conversations", token=bob.token)
    assert status == 200, body
    assert [(i["with"], i["unread"]) for i in body["conversations"]] == [(ann.username, 2)]
    for device in (a, b, c):
        await device.disconnect()


async def test_history_paging(server: RunningServer, http: Http) -> None:
    """before/after/limit page through one conversation in ascending id order, with
    has_more; both sides see the same messages; other conversations stay out."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a = await Device(server.url).connect(ann.token)
    b = await Device(server.url).connect(bob.token)
    c = await Device(server.url).connect(carol.token)
    sent = []
    for i in range(5):
        device, to = (a, bob.username) if i % 2 == 0 else (b, ann.username)
        sent.append(await send_ok(device, to, f"m{i}", f"m{i}"))
        await send_ok(c, ann.username, f"noise{i}", f"noise{i}")
    ids = [m["id"] for m in sent]
    base = f"/api/v1/conversations/{quote(bob.username, safe='')}/messages"

    async def page(query: str, token: str = ann.token, path: str = base) -> tuple[list[int], bool]:
        status, body = await http.request("GET", path + query, token=token)
        assert status == 200, (query, body)
        assert set(body) == {"messages", "has_more"}, body
        return [m["id"] for m in body["messages"]], body["has_more"]

    status, body = await http.request("GET", base, token=ann.token)
    assert status == 200, body
    assert body == {"messages": sent, "has_more": False}
    assert await page("?limit=2") == (ids[3:5], True)
    assert await page(f"?before={ids[3]}&limit=2") == (ids[1:3], True)
    assert await page(f"?before={ids[1]}&limit=2") == (ids[0:1], False)
    assert await page(f"?before={ids[0]}") == ([], False)
    assert await page(f"?after={ids[0]}&limit=2") == (ids[1:3], True)
    assert await page(f"?after={ids[2]}&limit=2") == (ids[3:5], False)
    assert await page(f"?after={ids[4]}") == ([], False)
    assert await page("?limit=5") == (ids, False)
    assert await page("?limit=100") == (ids, False)
    # Bob's view of the same conversation.
    bob_path = f"/api/v1/conversations/{quote(ann.username, safe='')}/messages"
    assert await page("", token=bob.token, path=bob_path) == (ids, False)
    for device in (a, b, c):
        await device.disconnect()


async def test_history_url_encoded_username(server: RunningServer, http: Http) -> None:
    """A username with @ and + works percent-encoded in the path (and in any case)."""
    name = "x+tag@example.com"
    status, body = await http.register(name)
    assert status == 201, body
    (ann,) = await accounts(http, "ann")
    a = await Device(server.url).connect(ann.token)
    message = await send_ok(a, name, "to plus", "p1")
    for segment in [quote(name, safe=""), "x%2Btag%40example.com", "X%2BTAG%40EXAMPLE.COM"]:
        status, body = await http.request(
            "GET", f"/api/v1/conversations/{segment}/messages", token=ann.token
        )
        assert status == 200, (segment, body)
        assert body == {"messages": [message], "has_more": False}, segment
    await a.disconnect()


async def test_history_errors(http: Http) -> None:
    """Unknown user 404 not_found; bad usernames, self, bad or combined cursors, limits
    out of 1-100 are 400 invalid."""
    ann, bob = await accounts(http, "ann", "bob")
    base = f"/api/v1/conversations/{quote(bob.username, safe='')}/messages"
    status, body = await http.request(
        "GET", "/api/v1/conversations/nobody%40example.com/messages", token=ann.token
    )
    assert_error(status, body, 404, "not_found")
    bad = [
        "/api/v1/conversations/ab/messages",
        "/api/v1/conversations/has%20space/messages",
        f"/api/v1/conversations/{quote(ann.username, safe='')}/messages",
        base + "?limit=0",
        base + "?limit=101",
        base + "?limit=-1",
        base + "?limit=abc",
        base + "?limit=1.5",
        base + "?limit=",
        base + "?before=0",
        base + "?before=-5",
        base + "?before=x",
        base + "?before=99999999999999999999999",
        base + "?after=0",
        base + "?after=%EF%BC%91",  # a full-width digit one
        base + "?before=5&after=1",
    ]
    failures = []
    for path in bad:
        status, body = await http.request("GET", path, token=ann.token)
        try:
            assert_error(status, body, 400, "invalid")
        except AssertionError as exc:
            failures.append((path, exc))
    assert not failures, failures


# -- health, metrics, unknown routes --------------------------------------------------


async def test_healthz(http: Http) -> None:
    """200 {"status": "ok"} while the database answers."""
    assert await http.request("GET", "/healthz") == (200, {"status": "ok"})


async def test_metrics_count_stored_messages(server: RunningServer, http: Http) -> None:
    """Prometheus text with messenger_messages_stored_total counting committed sends."""
    ann, bob = await accounts(http, "ann", "bob")
    a = await Device(server.url).connect(ann.token)
    await send_ok(a, bob.username, "one", "c1")
    await send_ok(a, bob.username, "two", "c2")
    await send_ok(a, bob.username, "one again", "c1")  # a repeat stores nothing
    status, headers, text = await raw(server.url, "GET", "/metrics")
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain"), headers
    assert "# TYPE messenger_messages_stored_total counter" in text
    match = re.search(r"^messenger_messages_stored_total (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    assert float(match.group(1)) == 2.0
    await a.disconnect()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/api/v1/nope", 404, "not_found"),
        ("POST", "/api/v2/users", 404, "not_found"),
        ("GET", "/api/v1/users", 405, None),
        ("PUT", "/api/v1/sessions/current", 405, None),
    ],
)
async def test_unknown_routes_have_the_error_shape(
    http: Http, method: str, path: str, status: int, code: str | None
) -> None:
    """Routing failures are JSON error bodies too, not aiohttp's text pages (the code of
    a wrong method is not fixed by the contract, only the shape)."""
    got_status, body = await http.request(method, path)
    if code is None:
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
        code = body["error"].get("code")
    assert_error(got_status, body, status, str(code))


# -- Origin rule --------------------------------------------------------------------


async def test_cors_same_origin_only_by_default(server: RunningServer, http: Http) -> None:
    """A foreign Origin is 403 forbidden and changes nothing; the server's own origin
    and requests without Origin pass."""
    status, headers, text = await raw(server.url, "GET", "/healthz", {"Origin": FOREIGN})
    assert status == 403, text
    assert "Access-Control-Allow-Origin" not in headers
    status, body = await http.request(
        "POST",
        "/api/v1/users",
        {"username": "ann@x.com", "password": PASSWORD},
        headers={"Origin": FOREIGN},
    )
    assert_error(status, body, 403, "forbidden")
    status, body = await http.register("ann@x.com")  # the refused request stored nothing
    assert status == 201, body

    status, headers, text = await raw(server.url, "GET", "/healthz", {"Origin": server.url})
    assert status == 200, text
    assert headers.get("Access-Control-Allow-Origin") == server.url
    status, body = await http.request(
        "POST",
        "/api/v1/sessions",
        {"username": "ann@x.com", "password": PASSWORD},
        headers={"Origin": server.url},
    )
    assert status == 201, body
    status, headers, text = await raw(server.url, "GET", "/healthz")
    assert status == 200, text


async def test_cors_listed_origin_is_allowed(settings: Settings) -> None:
    """With cors_origins set, that origin passes (with Access-Control-Allow-Origin and a
    preflight answer); others are still refused, at HTTP and at the Socket.IO handshake."""
    async with own_server(settings.replace(cors_origins=(ALLOWED,))) as running:
        status, headers, text = await raw(running.url, "GET", "/healthz", {"Origin": ALLOWED})
        assert status == 200, text
        assert headers.get("Access-Control-Allow-Origin") == ALLOWED
        status, headers, _ = await raw(
            running.url,
            "OPTIONS",
            "/api/v1/sessions",
            {
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert status in (200, 204), headers
        assert headers.get("Access-Control-Allow-Origin") == ALLOWED
        assert "POST" in headers.get("Access-Control-Allow-Methods", "")
        status, headers, text = await raw(running.url, "GET", "/healthz", {"Origin": FOREIGN})
        assert status == 403, text
        assert "Access-Control-Allow-Origin" not in headers
        status, headers, text = await raw(running.url, "GET", "/healthz", {"Origin": running.url})
        assert status == 200, text
        status, headers, text = await polling_handshake(running.url, ALLOWED)
        assert status == 200, text
        assert headers.get("Access-Control-Allow-Origin") == ALLOWED
        status, _, text = await polling_handshake(running.url, FOREIGN)
        assert status != 200, text
        assert '"sid"' not in text


async def test_socketio_handshake_checks_origin(settings: Settings) -> None:
    """Engine.IO's handshake refuses a foreign Origin (polling and websocket) and takes
    the server's own origin."""
    async with own_server(settings) as running:
        status, _, text = await polling_handshake(running.url, FOREIGN)
        assert status != 200, text
        assert '"sid"' not in text
        status, _, text = await polling_handshake(running.url, running.url)
        assert status == 200, text
        assert '"sid"' in text

        ann = await Http(running.url).account("ann")
        foreign = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await foreign.connect(
                running.url,
                auth={"token": ann.token},
                headers={"Origin": FOREIGN},
                transports=["websocket"],
                wait_timeout=5,
            )
        assert not foreign.connected
        own = socketio.AsyncClient(reconnection=False)
        await own.connect(
            running.url,
            auth={"token": ann.token},
            headers={"Origin": running.url},
            transports=["websocket"],
            wait_timeout=5,
        )
        assert own.connected
        await own.disconnect()


async def test_socketio_handshake_without_origin(settings: Settings) -> None:
    """Native clients send no Origin: the polling handshake must answer 200 with a
    session, not fail (only browsers send Origin, and it is checked when sent)."""
    async with own_server(settings) as running:
        status, _, text = await polling_handshake(running.url, None)
        assert status == 200, text
        assert '"sid"' in text


async def test_polling_client_connects(settings: Settings) -> None:
    """Any Socket.IO client, websocket or polling: a Python client on the polling
    transport (which sends no Origin) connects, gets `synced`, and sends."""
    async with own_server(settings) as running:
        http = Http(running.url)
        ann, bob = await accounts(http, "ann", "bob")
        a = Device(running.url, transports=["polling"])
        try:
            await a.connect(ann.token)
            await a.wait_synced(timeout=5)
            answer = await a.send(bob.username, "over polling", "p-1")
            assert answer["ok"], answer
        finally:
            if a.sio.connected:
                await a.disconnect()
            elif a.sio.eio.http is not None:  # a failed connect leaves its session open
                await a.sio.eio.http.close()


async def test_stop_is_not_held_up_by_an_idle_polling_session(settings: Settings) -> None:
    """A polling client that went away between polls must not keep the server from
    stopping (Node.stop waits for every Engine.IO session to flush)."""
    running = await start_server(settings)
    status, _, text = await raw(running.url, "GET", POLL, {"Origin": running.url})
    assert status == 200, text  # a session that is never polled again
    patience = CLOSE_GRACE_SECONDS + 3
    stopped = await stop_draining(running, patience=patience)
    assert stopped, f"Node.stop() was still waiting after {patience} s for a session nobody polls"
