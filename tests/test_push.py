"""Push to offline devices (docs/protocol.md 3.9), against a real server on SQLite and
PostgreSQL and real fakes of the outside services on loopback: a Web Push service that
decrypts each RFC 8291 payload and verifies its RFC 8292 VAPID signature, and a webhook
receiver that verifies the HMAC signature (tests/push_support.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from messenger.config import Settings
from messenger.push.keys import b64url_decode
from messenger.push.subscriptions import load_vapid_keys
from messenger.store.db import open_database
from tests.cluster_support import RedisServer
from tests.processes import ServeGroup, free_port
from tests.push_support import (
    PUSH_DELAY,
    FakePushService,
    WebhookReceiver,
    push_settings,
    subscribe_webpush,
    webpush_request,
)
from tests.support import Account, Device, Http, RunningServer, connect_synced, start_server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return push_settings(settings)


async def send_some(http: Http, sender: Account, to: str, bodies: list[str]) -> Device:
    device, _ = await connect_synced(http.url, sender)
    for i, body in enumerate(bodies):
        answer = await device.send(to, body, f"p-{body[:20]}-{i}")
        assert answer["ok"], answer
    return device


async def test_vapid_key_is_a_p256_point_kept_across_restarts(
    settings: Settings, http: Http, server: RunningServer
) -> None:
    status, body = await http.request("GET", "/api/v1/push/vapid")
    assert status == 200
    raw = b64url_decode(body["public_key"])
    assert len(raw) == 65 and raw[0] == 4
    second = await start_server(settings)
    try:
        _, again = await Http(second.url).request("GET", "/api/v1/push/vapid")
        assert again == body, "another node (or a restart) signs with another key"
    finally:
        await second.stop()


async def test_an_offline_user_gets_one_push_per_burst(
    http: Http, push_service: FakePushService
) -> None:
    """Three messages within the delay make one push, encrypted for the device and
    signed with the server's key, carrying no content: the stream head and the
    unread count."""
    ann, bob = await http.account("ann"), await http.account("bob")
    await subscribe_webpush(http, bob, push_service, "bob")
    device = await send_some(http, ann, bob.username, ["one", "two", "three"])
    await push_service.wait_for(lambda: push_service.received("bob"), timeout=10)
    await asyncio.sleep(PUSH_DELAY + 1.5)
    pushes = push_service.received("bob")
    assert len(pushes) == 1, pushes
    assert pushes[0].json == {"cursor": 3, "unread": 3}
    _, vapid = await http.request("GET", "/api/v1/push/vapid")
    assert pushes[0].vapid_key == vapid["public_key"]
    # A later message is a new burst: one more push.
    await device.send(bob.username, "four", "p-four")
    await push_service.wait_for(lambda: len(push_service.received("bob")) == 2, timeout=10)
    assert push_service.received("bob")[1].json == {"cursor": 4, "unread": 4}
    await device.disconnect()


async def test_an_online_user_gets_none(http: Http, push_service: FakePushService) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    await subscribe_webpush(http, bob, push_service, "bob")
    online, _ = await connect_synced(http.url, bob)
    device = await send_some(http, ann, bob.username, ["while you are here"])
    await asyncio.sleep(PUSH_DELAY + 2.0)
    assert push_service.received("bob") == []
    await online.disconnect()
    # Gone, with the message still undelivered: the push comes after the delay.
    await push_service.wait_for(lambda: push_service.received("bob"), timeout=10)
    assert push_service.received("bob")[0].json["unread"] == 1
    await device.disconnect()


async def test_preview_and_read_elsewhere(http: Http, push_service: FakePushService) -> None:
    """With `preview`, the push names the sender and the start of the newest message;
    once everything is read on another device, a push says `unread: 0`."""
    ann, bob = await http.account("ann"), await http.account("bob")
    await subscribe_webpush(http, bob, push_service, "bob", preview=True, label="phone")
    device = await send_some(http, ann, bob.username, ["first", "x" * 150])
    await push_service.wait_for(lambda: push_service.received("bob"), timeout=10)
    push = push_service.received("bob")[0].json
    assert push == {"cursor": 2, "unread": 2, "from": ann.username, "excerpt": "x" * 100}
    reader, _ = await connect_synced(http.url, bob)
    ids = [m["id"] for m in reader.messages()]
    assert (await reader.call("read", {"ids": ids}))["updated"] == 2
    await push_service.wait_for(lambda: len(push_service.received("bob")) == 2, timeout=10)
    assert push_service.received("bob")[1].json["unread"] == 0
    await asyncio.gather(reader.disconnect(), device.disconnect())


async def test_gone_subscriptions_are_pruned_and_429_is_retried(
    http: Http, push_service: FakePushService
) -> None:
    ann, bob, carl = (
        await http.account("ann"),
        await http.account("bob"),
        await http.account("carl"),
    )
    await subscribe_webpush(http, bob, push_service, "bob")
    await subscribe_webpush(http, carl, push_service, "carl")
    push_service.fail_next("bob", 410)
    push_service.fail_next("carl", 429, retry_after=1)
    device = await send_some(http, ann, bob.username, ["to bob"])
    await device.send(carl.username, "to carl", "p-carl")
    await push_service.wait_for(lambda: push_service.received("carl"), timeout=15)
    assert len(push_service.received("carl")) == 1
    status, listed = await http.request("GET", "/api/v1/push/subscriptions", token=bob.token)
    assert (status, listed) == (200, {"subscriptions": []})
    assert push_service.received("bob") == []
    status, metrics = await http.request("GET", "/metrics")
    assert 'messenger_pushes_failed_total{kind="webpush",reason="gone"} 1.0' in metrics
    assert 'messenger_pushes_failed_total{kind="webpush",reason="rate_limited"} 1.0' in metrics
    assert 'messenger_pushes_sent_total{kind="webpush"} 1.0' in metrics
    await device.disconnect()


async def test_webhooks_are_signed(http: Http, webhook_receiver: WebhookReceiver) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    url = webhook_receiver.url_for("/hook")
    status, made = await http.request(
        "POST", "/api/v1/push/subscriptions", {"kind": "webhook", "url": url}, token=bob.token
    )
    assert status == 201 and made["kind"] == "webhook" and made["secret"], made
    webhook_receiver.expect("/hook", made["secret"])
    status, listed = await http.request("GET", "/api/v1/push/subscriptions", token=bob.token)
    assert "secret" not in listed["subscriptions"][0]  # shown once only
    assert listed["subscriptions"][0]["current"] is True
    device = await send_some(http, ann, bob.username, ["hello"])
    await webhook_receiver.wait_for(lambda: webhook_receiver.received("/hook"), timeout=10)
    body = webhook_receiver.received("/hook")[0].json
    assert body == {"cursor": 1, "unread": 1, "user": bob.username, "subscription": made["id"]}
    assert webhook_receiver.rejections == []
    await device.disconnect()


async def test_logout_ends_the_sessions_subscriptions(
    http: Http, push_service: FakePushService
) -> None:
    bob = await http.account("bob")
    made, _ = await subscribe_webpush(http, bob, push_service, "bob")
    status, _ = await http.request("DELETE", "/api/v1/sessions/current", token=bob.token)
    assert status == 204
    status, login = await http.login(bob.username)
    status, listed = await http.request("GET", "/api/v1/push/subscriptions", token=login["token"])
    assert listed == {"subscriptions": []}, made


def off_the_curve(p256dh: str) -> str:
    """The key with one character of its x coordinate changed: not a P-256 point."""
    changed = "A" if p256dh[10] != "A" else "B"
    return p256dh[:10] + changed + p256dh[11:]


async def test_subscriptions_are_checked_and_bounded(
    settings: Settings, http: Http, push_service: FakePushService
) -> None:
    bob, carl = await http.account("bob"), await http.account("carl")
    endpoint, keys = push_service.subscribe("bob")
    good = webpush_request(endpoint, keys)
    for bad in (
        {**good, "kind": "email"},
        {**good, "endpoint": "ftp://example.com/x"},
        {**good, "endpoint": "http://example.com/x"},  # http only for listed hosts
        {**good, "endpoint": "https://user:pw@example.com/x"},
        {**good, "keys": {"p256dh": keys.p256dh, "auth": "short"}},
        {**good, "keys": {"p256dh": "AAAA", "auth": keys.auth}},
        {**good, "keys": {"p256dh": off_the_curve(keys.p256dh), "auth": keys.auth}},
        {**good, "label": "x" * 65},
        {**good, "preview": "yes"},
        {"kind": "webhook", "url": "https://10.0.0.1/hook"},
        {"kind": "webhook", "url": "https://localhost/hook"},
        {"kind": "webhook", "url": "https://[::1]/hook"},
    ):
        status, body = await http.request(
            "POST", "/api/v1/push/subscriptions", bad, token=bob.token
        )
        assert status == 400 and body["error"]["code"] == "invalid", (bad, status, body)
    status, first = await http.request("POST", "/api/v1/push/subscriptions", good, token=bob.token)
    assert status == 201
    status, again = await http.request("POST", "/api/v1/push/subscriptions", good, token=bob.token)
    assert status == 200 and again["id"] == first["id"]
    for i in range(19):
        more = webpush_request(*push_service.subscribe(f"bob-{i}"))
        status, _ = await http.request("POST", "/api/v1/push/subscriptions", more, token=bob.token)
        assert status == 201
    over = webpush_request(*push_service.subscribe("bob-21"))
    status, body = await http.request("POST", "/api/v1/push/subscriptions", over, token=bob.token)
    assert (status, body["error"]["code"]) == (413, "too_large")
    status, body = await http.request(
        "DELETE", f"/api/v1/push/subscriptions/{first['id']}", token=carl.token
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _ = await http.request(
        "DELETE", f"/api/v1/push/subscriptions/{first['id']}", token=bob.token
    )
    assert status == 204


async def test_the_example_receiver_takes_signed_pushes(
    http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/webhook_receiver.py, as an operator would run it, verifies what the
    server sends and hands it on; a forged request is refused."""
    from examples import webhook_receiver

    forwarded: list[dict[str, Any]] = []

    async def forward(push: dict[str, Any]) -> None:
        forwarded.append(push)

    monkeypatch.setattr(webhook_receiver, "forward", forward)
    ann, bob = await http.account("ann"), await http.account("bob")
    port = free_port()
    url = f"http://127.0.0.1:{port}/messenger"
    status, made = await http.request(
        "POST", "/api/v1/push/subscriptions", {"kind": "webhook", "url": url}, token=bob.token
    )
    assert status == 201, made
    runner = web.AppRunner(webhook_receiver.make_app(made["secret"]))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        device = await send_some(http, ann, bob.username, ["hello"])
        for _ in range(100):
            if forwarded:
                break
            await asyncio.sleep(0.1)
        assert forwarded == [
            {"cursor": 1, "unread": 1, "user": bob.username, "subscription": made["id"]}
        ]
        async with aiohttp.ClientSession() as session:
            forged = await session.post(
                url, json={"cursor": 9}, headers={"Messenger-Signature": "t=1,v1=00"}
            )
            assert forged.status == 401
        await device.disconnect()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_nodes_push_once(settings: Settings, push_service: FakePushService) -> None:
    """Two nodes on one PostgreSQL database, both pushers running: each burst is
    pushed once (the claim skips what the other holds, and leases what it takes)."""
    first, second = await start_server(settings), await start_server(settings)
    try:
        http = Http(first.url)
        ann, bob = await http.account("ann"), await http.account("bob")
        await subscribe_webpush(http, bob, push_service, "bob")
        device = await send_some(Http(second.url), ann, bob.username, ["a", "b"])
        await push_service.wait_for(lambda: push_service.received("bob"), timeout=10)
        await asyncio.sleep(PUSH_DELAY + 2.5)
        assert len(push_service.received("bob")) == 1
        await device.send(bob.username, "c", "p-c")
        await push_service.wait_for(lambda: len(push_service.received("bob")) == 2, timeout=10)
        await asyncio.sleep(PUSH_DELAY + 2.5)
        assert [p.json["unread"] for p in push_service.received("bob")] == [2, 3]
        await device.disconnect()
    finally:
        await second.stop()
        await first.stop()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_redis_down_still_pushes(
    settings: Settings, push_service: FakePushService, tmp_path: Path
) -> None:
    """Presence cannot be asked without Redis: the user is taken as offline, and the
    push still goes (the work is in SQL, not on the bus)."""
    redis = RedisServer(tmp_path / "redis.log")
    if redis.available() is None:
        pytest.skip("redis-server is not installed")
    redis.start()
    server = await start_server(dataclasses.replace(settings, redis_url=redis.url))
    try:
        http = Http(server.url)
        ann, bob = await http.account("ann"), await http.account("bob")
        await subscribe_webpush(http, bob, push_service, "bob")
        redis.kill()
        device = await send_some(http, ann, bob.username, ["while redis is down"])
        await push_service.wait_for(lambda: push_service.received("bob"), timeout=15)
        assert push_service.received("bob")[0].json == {"cursor": 1, "unread": 1}
        await device.disconnect()
    finally:
        await server.stop()
        redis.kill()


async def test_kill_9_between_commit_and_push(
    processes: ServeGroup, database_url: str, push_service: FakePushService
) -> None:
    """The node dies after the message is committed and before its push: the push
    is made after the restart, once."""
    env = {"MESSENGER_PUSH_DELAY": "2", "MESSENGER_PUSH_ALLOW_HTTP": "127.0.0.1"}
    server = await processes(database_url, env=env).start()
    http = Http(server.url)
    ann, bob = await http.account("ann"), await http.account("bob")
    await subscribe_webpush(http, bob, push_service, "bob")
    device = await send_some(http, ann, bob.username, ["before the crash"])
    server.send_signal(signal.SIGKILL)
    assert await server.wait_exit(10) == -signal.SIGKILL
    with contextlib.suppress(Exception):
        await device.disconnect()
    assert push_service.received("bob") == []
    await server.start()
    await push_service.wait_for(lambda: push_service.received("bob"), timeout=20)
    await asyncio.sleep(4)
    assert [p.json for p in push_service.received("bob")] == [{"cursor": 1, "unread": 1}]


async def test_nodes_starting_together_agree_on_one_key(database_url: str) -> None:
    """The first start makes the VAPID key pair; nodes starting at the same moment
    all end up with that one (none fails on the race)."""
    databases = [open_database(database_url) for _ in range(4)]
    try:
        keys = await asyncio.gather(*(load_vapid_keys(db) for db in databases))
    finally:
        for db in databases:
            await db.dispose()
    assert len({k.public_key for k in keys}) == 1
