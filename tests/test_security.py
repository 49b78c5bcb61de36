"""Security defences, each against a real server and real clients: cross-site
WebSocket hijacking, forged/stolen/revoked/expired tokens, login brute force and
timing, conversation isolation, secrets kept out of logs, and the per-user caps.
docs/security.md maps each threat to the test here that covers it."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import socketio

from messenger.config import Settings
from tests.processes import ServeGroup
from tests.support import (
    PASSWORD,
    Device,
    Http,
    RunningServer,
    accounts,
    poison_messages,
    sql,
    start_server,
    websocket_url,
)

FOREIGN = "http://evil.example"
ALLOWED = "https://chat.example"


async def refused(url: str, auth: Any, **kwargs: Any) -> Any:
    """Connects with this auth, which must fail; returns the connect_error data."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5, **kwargs)
    return errors[0] if errors else None


# -- cross-site WebSocket hijacking ---------------------------------------------------


async def ws_handshake(url: str, origin: str | None) -> int:
    """The HTTP status of a raw websocket upgrade with this Origin (101 = accepted)."""
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(websocket_url(url), headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        opened = await ws.receive(timeout=5)
        await ws.close()
        assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{"), opened
        return 101


async def test_websocket_handshake_refuses_foreign_origins(settings: Settings) -> None:
    """A page on another site cannot open a websocket riding the user's session: any
    Origin that is not this server's own or listed is refused at the upgrade, lookalikes
    included; the own origin, a listed one and no Origin (native clients) pass."""
    running = await start_server(settings.replace(cors_origins=(ALLOWED,)))
    try:
        url = running.url
        host = url.removeprefix("http://")
        port = int(host.rsplit(":", 1)[1])
        for origin in [
            FOREIGN,
            "null",
            f"{url}.evil.example",
            f"http://evil.example/{host}",
            f"https://{host}",  # other scheme
            f"http://127.0.0.1:{port + 1}",  # other port
            f"http://localhost:{port}",  # other host name
            ALLOWED + ".evil.example",
            ALLOWED.replace("https", "http"),
            ALLOWED.upper(),
        ]:
            assert await ws_handshake(url, origin) != 101, origin
        for origin in [url, url + "/", ALLOWED, None]:
            assert await ws_handshake(url, origin) == 101, origin
        # With a real token, a foreign page still gets no connection.
        ann = await Http(url).account("ann")
        await refused(url, {"token": ann.token}, headers={"Origin": FOREIGN})
        listed = socketio.AsyncClient(reconnection=False)
        await listed.connect(
            url, auth={"token": ann.token}, headers={"Origin": ALLOWED}, transports=["websocket"]
        )
        await listed.disconnect()
    finally:
        await running.stop()


# -- tokens ---------------------------------------------------------------------------


async def assert_token_refused(server: RunningServer, http: Http, token: str) -> None:
    """Refused on HTTP (401 unauthorized) and at the handshake (unauthorized)."""
    status, body = await http.request("GET", "/api/v1/conversations", token=token)
    assert status == 401 and body["error"]["code"] == "unauthorized", (token, status, body)
    error = await refused(server.url, {"token": token})
    assert isinstance(error, dict) and error.get("code") == "unauthorized", (token, error)


async def test_forged_and_stolen_hash_tokens_are_refused(server: RunningServer, http: Http) -> None:
    """Tokens are random and stored only as SHA-256: a token with one character
    changed, truncated or extended, and the stored hash itself (what a database thief
    holds) are all refused on HTTP and Socket.IO."""
    (ann,) = await accounts(http, "ann")
    (stored,) = await sql(server.settings.database_url, "SELECT token_hash FROM tokens")
    flipped = ann.token[:-1] + ("A" if ann.token[-1] != "A" else "B")
    for forged in [flipped, ann.token[:-1], ann.token + "A", ann.token.swapcase(), stored[0]]:
        await assert_token_refused(server, http, forged)
    assert stored[0] != ann.token and len(stored[0]) == 64
    status, body = await http.request("GET", "/api/v1/conversations", token=ann.token)
    assert status == 200, body


async def test_token_with_lone_surrogates_is_refused_as_unauthorized(server: RunningServer) -> None:
    """A handshake token that is not valid Unicode text is a bad token like any other:
    connect_error {"code": "unauthorized"}, not a handshake left unanswered."""
    for token in ["\ud800" * 20, "a" * 30 + "\udcff"]:
        error = await refused(server.url, {"token": token})
        assert isinstance(error, dict) and error.get("code") == "unauthorized", (token, error)


async def test_revoked_token_is_refused_everywhere_and_only_that_one(
    server: RunningServer, http: Http
) -> None:
    """After ann logs out, her token fails on HTTP and Socket.IO; bob's token and
    ann's other session are untouched (revocation is per token)."""
    ann, bob = await accounts(http, "ann", "bob")
    status, body = await http.login(ann.username)
    assert status == 201, body
    ann_other = body["token"]
    status, _ = await http.request("DELETE", "/api/v1/sessions/current", token=ann.token)
    assert status == 204
    await assert_token_refused(server, http, ann.token)
    for token in (bob.token, ann_other):
        status, body = await http.request("GET", "/api/v1/conversations", token=token)
        assert status == 200, body
        device = await Device(server.url).connect(token)
        await device.wait_synced()
        await device.disconnect()


async def test_expired_token_is_refused_and_its_open_socket_dropped(settings: Settings) -> None:
    """A token past its lifetime fails on HTTP and at the handshake, and a socket opened
    while it was fresh is disconnected by the node's periodic check."""
    running = await start_server(settings.replace(token_ttl=timedelta(seconds=2)))
    try:
        http = Http(running.url)
        (ann,) = await accounts(http, "ann")
        device = await Device(running.url).connect(ann.token)
        await device.wait_synced()
        gone = asyncio.Event()
        device.sio.on("disconnect", lambda *args: gone.set())
        await asyncio.wait_for(gone.wait(), 6)
        assert not device.sio.connected
        await assert_token_refused(running, http, ann.token)
    finally:
        await running.stop()


# -- login brute force and timing -----------------------------------------------------


async def burst_then_right(
    http: Http, wrong: list[tuple[str, str]], right: tuple[str, str]
) -> tuple[list[tuple[int, str]], tuple[int, Any]]:
    """Fires the wrong logins together; as soon as one is refused rate_limited (the
    bucket is empty at that moment) tries the right credentials. Refusals come back
    at once, accepted tries only after argon2, so the right try is not late."""
    tasks = [asyncio.ensure_future(http.login(name, password)) for name, password in wrong]
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if any(task.result()[0] == 429 for task in done):
            break
    answer = await http.login(*right)
    await asyncio.gather(*tasks)
    return [(task.result()[0], task.result()[1]["error"]["code"]) for task in tasks], answer


async def test_login_rate_limited_per_username(server: RunningServer, http: Http) -> None:
    """A burst of wrong passwords for one name is cut off with 429 rate_limited, and
    then even the right password is refused, in any case of the name; other names
    still log in; after the bucket refills the right password works again."""
    ann, bob = await accounts(http, "ann", "bob")
    wrong = [
        (ann.username.upper() if i % 2 else ann.username, f"wrong password {i}") for i in range(14)
    ]
    codes, (status, body) = await burst_then_right(http, wrong, (ann.username, PASSWORD))
    # Ten tries a burst; account() above spent one of them on ann's own login.
    assert codes.count((401, "bad_credentials")) in (9, 10), codes
    assert codes.count((429, "rate_limited")) >= 4, codes
    assert status == 429 and body["error"]["code"] == "rate_limited", body
    status, body = await http.login(bob.username)
    assert status == 201, body
    await asyncio.sleep(5.5)  # one try back at 0.2 per second
    status, body = await http.login(ann.username)
    assert status == 201, body


async def test_login_rate_limited_per_address(settings: Settings) -> None:
    """Spreading guesses over many usernames from one address is cut off too: after the
    address burst, even a fresh name with the right password is refused."""
    # Room in the hashing pool's queue for the whole burst at once: every try the
    # address limit lets through reaches argon2 (instead of 503 `unavailable`).
    running = await start_server(settings.replace(hash_queue=64))
    try:
        http = Http(running.url)
        (victim,) = await accounts(http, "victim")
        wrong = [(f"guess{i}@example.com", "wrong password") for i in range(60)]
        codes, (status, body) = await burst_then_right(http, wrong, (victim.username, PASSWORD))
        # Fifty tries a burst per address; account() above spent one.
        assert 49 <= codes.count((401, "bad_credentials")) <= 51, codes
        assert codes.count((429, "rate_limited")) >= 9, codes
        assert status == 429 and body["error"]["code"] == "rate_limited", body
    finally:
        await running.stop()


async def test_login_time_does_not_reveal_whether_a_user_exists(
    server: RunningServer, http: Http
) -> None:
    """An unknown name is verified against a decoy hash: the median login time with a
    wrong password is about the same for an existing and a nonexistent user
    (interleaved, within one run; argon2 dominates both)."""
    real = await accounts(http, "t1", "t2")
    existing: list[float] = []
    missing: list[float] = []
    for i in range(12):
        for names, times in (
            (real[i % 2].username, existing),
            (f"ghost{i}@example.com", missing),
        ):
            started = time.perf_counter()
            status, body = await http.login(names, "wrong password")
            times.append(time.perf_counter() - started)
            assert status == 401 and body["error"]["code"] == "bad_credentials", body
    ratio = statistics.median(missing) / statistics.median(existing)
    assert 0.5 <= ratio <= 2.0, (ratio, existing, missing)


# -- conversation isolation -----------------------------------------------------------


async def test_outsider_learns_nothing_of_a_conversation(server: RunningServer, http: Http) -> None:
    """Carol, outside ann<->bob, tries every event with their message ids, cursors
    from their streams and fields naming them: no answer carries their bodies, nothing
    changes, and errors look the same as for ids that do not exist."""
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    a = await Device(server.url).connect(ann.token)
    b = await Device(server.url).connect(bob.token)
    c = await Device(server.url).connect(carol.token)
    await asyncio.gather(a.wait_synced(), b.wait_synced(), c.wait_synced())
    secrets = [f"secret-{i}-between-ann-and-bob" for i in range(5)]
    ids = [
        (await a.send(bob.username, body, f"s{i}"))["message"]["id"]
        for i, body in enumerate(secrets)
    ]
    await b.wait_for(lambda: len(b.messages()) == 5)
    head = await c.wait_synced()
    before = await sql(server.settings.database_url, "SELECT id, status FROM messages ORDER BY id")
    answers: list[Any] = []
    for event, payload in [
        ("history", {"with": ann.username, "before": ids[-1] + 1}),
        ("history", {"with": ann.username, "after": ids[0] - 1 or 1}),
        ("history", {"with": bob.username, "user": ann.username}),
        ("sync", {"after": 0, "user": bob.username, "user_id": 1, "with": bob.username}),
        ("sync", {"after": head, "limit": 500}),
        ("delivered", {"ids": ids}),
        ("read", {"ids": ids}),
        ("read", {"ids": [10**9]}),
        ("presence", {"users": [ann.username, bob.username]}),
    ]:
        answers.append(await c.call(event, payload))
    # A cursor from ann's or bob's stream is not a cursor of carol's.
    answers.append(await c.call("sync", {"after": head + 5}))
    dump = json.dumps(answers)
    assert not any(secret in dump for secret in secrets), dump
    assert answers[5] == answers[6] == answers[7] == {"ok": True, "updated": 0}, answers
    assert answers[-1]["error"]["code"] == "invalid", answers
    status, body = await http.request(
        "GET",
        f"/api/v1/conversations/{ann.username}/messages?before={ids[-1] + 1}",
        token=carol.token,
    )
    assert status == 200 and body["messages"] == [], body
    status, body = await http.request("GET", "/api/v1/conversations", token=carol.token)
    assert body == {"conversations": []}, body
    assert (
        await sql(server.settings.database_url, "SELECT id, status FROM messages ORDER BY id")
        == before
    )
    assert [name for name, _ in c.events if name != "synced"] == []
    for device in (a, b, c):
        await device.disconnect()


# -- secrets in logs ------------------------------------------------------------------


async def test_no_bodies_tokens_or_passwords_in_logs(
    database_url: str, processes: ServeGroup
) -> None:
    """A `messenger serve` process at INFO, through a whole flow: register, wrong and
    right logins, sends, a send the database refuses, bad and revoked tokens at the
    handshake, logout. Its log holds none of the bodies, tokens or passwords (and
    does hold the failures, so the log was really written)."""
    await poison_messages(database_url, "NEW.body LIKE '%POISON%'")
    server = await processes(database_url, migrate=False).start()
    url = server.url
    secrets: list[str] = []
    try:
        http = Http(url)
        password = "Pa55word-LOGSECRET-1"
        wrong_password = "Wrong-LOGSECRET-2"
        secrets += [password, wrong_password]
        for name in ("ann@example.com", "bob@example.com"):
            status, body = await http.register(name, password)
            assert status == 201, body
        status, body = await http.login("ann@example.com", wrong_password)
        assert status == 401, body
        status, body = await http.login("nobody@example.com", wrong_password)
        assert status == 401, body
        status, body = await http.login("ann@example.com", password)
        ann_token = body["token"]
        status, body = await http.login("bob@example.com", password)
        bob_token = body["token"]
        secrets += [ann_token, bob_token]
        a = await Device(url).connect(ann_token)
        b = await Device(url).connect(bob_token)
        await asyncio.gather(a.wait_synced(), b.wait_synced())
        bodies = [f"BODYSECRET-{i}-ü😀" for i in range(3)]
        secrets += bodies
        for i, body_text in enumerate(bodies):
            assert (await a.send("bob@example.com", body_text, f"c{i}"))["ok"]
        poison = "POISON-BODYSECRET-rejected"
        secrets.append(poison)
        answer = await a.send("bob@example.com", poison, "c-poison")
        assert answer["ok"] is False, answer
        answer = await a.send("bob@example.com", "TOOLONG-BODYSECRET" + "x" * 5000, "c-long")
        assert answer["error"]["code"] == "too_large", answer
        secrets.append("TOOLONG-BODYSECRET")
        bad_token = "BADTOKEN-LOGSECRET-abcdefghijklmnop"
        secrets.append(bad_token)
        await refused(url, {"token": bad_token})
        status, _ = await http.request("GET", "/api/v1/conversations", token=bad_token)
        assert status == 401
        status, _ = await http.request("DELETE", "/api/v1/sessions/current", token=bob_token)
        assert status == 204
        await refused(url, {"token": bob_token})
        await a.disconnect()
        if b.sio.connected:
            await b.disconnect()
    finally:
        await server.terminate(15)
    log = server.all_output()
    assert "login refused" in log and "failed" in log, log  # the log was really written
    leaked = [s for s in secrets if s in log or s.encode("unicode_escape").decode() in log]
    assert not leaked, f"{leaked} in the log:\n{log}"


# -- caps -----------------------------------------------------------------------------


async def test_connections_per_user_are_capped(settings: Settings) -> None:
    """With max_connections_per_user=3 the 4th socket of a user is refused with
    connect_error rate_limited; other users are unaffected; a closed one frees a slot."""
    running = await start_server(settings.replace(max_connections_per_user=3))
    try:
        http = Http(running.url)
        ann, bob = await accounts(http, "ann", "bob")
        devices = [await Device(running.url).connect(ann.token) for _ in range(3)]
        error = await refused(running.url, {"token": ann.token})
        assert isinstance(error, dict) and error.get("code") == "rate_limited", error
        other = await Device(running.url).connect(bob.token)
        await other.wait_synced()
        await devices.pop().disconnect()
        await asyncio.sleep(0.3)
        devices.append(await Device(running.url).connect(ann.token))
        await devices[-1].wait_synced()
        for device in [*devices, other]:
            await device.disconnect()
    finally:
        await running.stop()


async def test_body_limit_is_configurable_and_counted_in_characters(settings: Settings) -> None:
    """max_body counts characters, not bytes: at max_body=10 ten emoji pass, eleven
    ASCII characters are too_large, on send and privateMessage alike."""
    running = await start_server(settings.replace(max_body=10))
    try:
        http = Http(running.url)
        ann, bob = await accounts(http, "ann", "bob")
        a = await Device(running.url).connect(ann.token)
        await a.wait_synced()
        for i, body in enumerate(["x" * 10, "é" * 10, "😀" * 10]):
            answer = await a.send(bob.username, body, f"ok-{i}")
            assert answer["ok"] and answer["message"]["body"] == body, answer
        answer = await a.send(bob.username, "x" * 11, "big")
        assert answer["error"]["code"] == "too_large", answer
        answer = await a.call(
            "privateMessage",
            {"to": bob.username, "from": ann.username, "message": "😀" * 11, "client_id": "pm"},
        )
        assert answer["error"]["code"] == "too_large", answer
        await a.disconnect()
    finally:
        await running.stop()


@pytest.mark.parametrize("char", ["x", "é", "\u20ac", "\u0007", "😀"])
async def test_longest_body_is_accepted_whatever_its_characters(
    server: RunningServer, http: Http, char: str
) -> None:
    """A body of exactly max_body characters is valid, whichever characters: the
    packet limit must leave room for it as any client encodes it (python-socketio
    writes JSON ASCII-escaped: 6 bytes per BMP character, 12 per astral one)."""
    ann, bob = await accounts(http, "ann", "bob")
    a = await Device(server.url).connect(ann.token)
    await a.wait_synced()
    body = char * server.settings.max_body
    try:
        answer = await a.call("send", {"to": bob.username, "body": body, "client_id": "max"}, 5)
    except socketio.exceptions.TimeoutError:
        pytest.fail(f"no answer; the server closed the connection: {not a.sio.connected}")
    assert answer["ok"] and answer["message"]["body"] == body, answer
    await a.disconnect()


async def test_list_limits(server: RunningServer, http: Http) -> None:
    """ids and users lists are capped (500, 100) even when every entry is a duplicate
    or unknown, so one event cannot make the server do unbounded work."""
    ann, bob = await accounts(http, "ann", "bob")
    a = await Device(server.url).connect(ann.token)
    await a.wait_synced()
    answer = await a.call("read", {"ids": list(range(1, 501))})
    assert answer == {"ok": True, "updated": 0}, answer
    answer = await a.call("read", {"ids": list(range(1, 502))})
    assert answer["error"]["code"] == "too_large", answer
    answer = await a.call("presence", {"users": [bob.username] * 100})
    assert answer["ok"] and list(answer["users"]) == [bob.username], answer
    answer = await a.call("presence", {"users": [bob.username] * 101})
    assert answer["error"]["code"] == "too_large", answer
    await a.disconnect()
