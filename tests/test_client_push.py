"""Push subscriptions through the Python SDK (docs/protocol.md 3.9) against a real
server, with a webhook receiver on loopback that checks every request's HMAC signature
against the secret the SDK handed back (tests/push_support.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from messenger.client import (
    Client,
    MessengerClientError,
    login,
    push_subscriptions,
    subscribe_webhook,
    unsubscribe,
)
from messenger.config import Settings
from tests.processes import free_port
from tests.push_support import PUSH_DELAY, WebhookReceiver, push_settings
from tests.support import PASSWORD, Account, Http

# Long enough for a push that was going to come: the delay plus the pusher's tick
# and a margin.
QUIET = PUSH_DELAY + 3.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return push_settings(settings)


@contextlib.asynccontextmanager
async def opened(url: str, account: Account) -> AsyncIterator[Client]:
    async with Client(url, account.token, reconnect_delay=0.05) as client:
        async with asyncio.timeout(10):
            await client.wait_synced()
        yield client


async def test_a_webhook_subscribed_through_the_sdk_is_pushed_listed_and_removed(
    http: Http, webhook_receiver: WebhookReceiver
) -> None:
    """Bob subscribes from his client and leaves; Ann's message reaches the receiver
    as a push signed with the secret the SDK returned, carrying no content. Listed
    from another session, it is not `current` and shows no secret; once removed,
    no push comes."""
    ann, bob = await http.account("ann"), await http.account("bob")
    async with opened(http.url, bob) as bob_client:
        made = await bob_client.subscribe_webhook(webhook_receiver.url_for("/bob"), label="gateway")
    assert made["kind"] == "webhook" and made["label"] == "gateway", made
    assert made["preview"] is False and made["current"] is True, made
    assert isinstance(made["secret"], str) and len(made["secret"]) >= 32, made
    webhook_receiver.expect("/bob", made["secret"])

    async with opened(http.url, ann) as ann_client:
        await ann_client.send(bob.username, "are you there?")
        pushes = await webhook_receiver.wait_for(
            lambda: webhook_receiver.received("/bob"), timeout=10
        )
    assert pushes[0].json == {
        "cursor": 1,
        "unread": 1,
        "user": bob.username,
        "subscription": made["id"],
    }
    assert webhook_receiver.rejections == []

    # Plain HTTP: a Client that is never opened lists and removes too.
    phone = Client(http.url, await login(http.url, bob.username, PASSWORD))
    listed = await phone.subscriptions()
    assert [(s["id"], s["session"], s["current"]) for s in listed] == [
        (made["id"], made["session"], False)
    ]
    assert "secret" not in listed[0]
    assert (await Client(http.url, bob.token).subscriptions())[0]["current"] is True

    with pytest.raises(MessengerClientError) as foreign:
        await Client(http.url, ann.token).unsubscribe(made["id"])
    assert foreign.value.code == "not_found"
    await phone.unsubscribe(made["id"])
    assert await phone.subscriptions() == []
    with pytest.raises(MessengerClientError) as again:
        await phone.unsubscribe(made["id"])
    assert again.value.code == "not_found"

    async with opened(http.url, ann) as ann_client:
        await ann_client.send(bob.username, "hello?")
        await asyncio.sleep(QUIET)
    assert len(webhook_receiver.received("/bob")) == 1, webhook_receiver.received("/bob")


async def test_preview_and_a_new_secret_on_subscribing_again(
    http: Http, webhook_receiver: WebhookReceiver
) -> None:
    """Subscribing the same URL again keeps the subscription but gives it a new
    secret, and the pushes are signed with that one; `preview` adds who and what."""
    ann, bob = await http.account("ann"), await http.account("bob")
    bob_client = Client(http.url, bob.token)
    url = webhook_receiver.url_for("/bob")
    first = await bob_client.subscribe_webhook(url)
    again = await bob_client.subscribe_webhook(url, label="phone", preview=True)
    assert again["id"] == first["id"] and again["secret"] != first["secret"]
    assert (again["label"], again["preview"]) == ("phone", True)
    webhook_receiver.expect("/bob", again["secret"])

    async with opened(http.url, ann) as ann_client:
        await ann_client.send(bob.username, "x" * 150)
        pushes = await webhook_receiver.wait_for(
            lambda: webhook_receiver.received("/bob"), timeout=10
        )
    assert pushes[0].json == {
        "cursor": 1,
        "unread": 1,
        "from": ann.username,
        "excerpt": "x" * 100,
        "user": bob.username,
        "subscription": first["id"],
    }
    assert webhook_receiver.rejections == []


async def test_refused_subscriptions_raise_with_the_code(
    http: Http, webhook_receiver: WebhookReceiver
) -> None:
    """A URL the server will not call is `invalid` (and permanent); past 20
    subscriptions `too_large`; a bad token `unauthorized`. Nothing is stored."""
    bob = await http.account("bob")
    for url, label in (
        ("http://example.com/hook", None),  # http:// only for listed hosts
        ("https://10.0.0.1/hook", None),  # a private address
        ("https://localhost/hook", None),  # a name for a loopback address
        ("https://[::1]/hook", None),
        ("ftp://127.0.0.1/hook", None),
        ("https://user:pw@example.com/hook", None),
        (webhook_receiver.url_for("/hook"), "x" * 65),  # a label too long
    ):
        with pytest.raises(MessengerClientError) as refused:
            await subscribe_webhook(http.url, bob.token, url, label=label)
        assert refused.value.code == "invalid" and refused.value.permanent, (url, refused.value)
    assert await push_subscriptions(http.url, bob.token) == []

    for i in range(20):
        await subscribe_webhook(http.url, bob.token, webhook_receiver.url_for(f"/hook/{i}"))
    with pytest.raises(MessengerClientError) as over:
        await subscribe_webhook(http.url, bob.token, webhook_receiver.url_for("/hook/20"))
    assert over.value.code == "too_large"
    assert len(await push_subscriptions(http.url, bob.token)) == 20

    stranger = "not-a-token"
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: subscribe_webhook(http.url, stranger, webhook_receiver.url_for("/x")),
        lambda: push_subscriptions(http.url, stranger),
        lambda: unsubscribe(http.url, stranger, 1),
    ]
    for call in calls:
        with pytest.raises(MessengerClientError) as refused:
            await call()
        assert refused.value.code == "unauthorized"


async def test_no_server_or_a_wrong_answer_is_an_error_not_a_crash() -> None:
    """`unavailable` when nothing listens; `internal` when what answers is not the
    protocol (so a bad answer fails in the SDK, not later in the application)."""
    port = free_port()
    with pytest.raises(MessengerClientError) as down:
        await Client(f"http://127.0.0.1:{port}", "token").subscriptions()
    assert down.value.code == "unavailable"

    async def wrong(_: web.Request) -> web.Response:
        shapes: list[Any] = [{"id": "seven"}]
        return web.json_response({"subscriptions": shapes}, status=200)

    async def empty(_: web.Request) -> web.Response:
        return web.json_response({"nothing": True}, status=201)

    app = web.Application()
    app.router.add_get("/api/v1/push/subscriptions", wrong)
    app.router.add_post("/api/v1/push/subscriptions", empty)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = Client(f"http://127.0.0.1:{port}", "token")
        calls: list[Callable[[], Awaitable[object]]] = [
            client.subscriptions,
            lambda: client.subscribe_webhook("https://example.com/"),
        ]
        for call in calls:
            with pytest.raises(MessengerClientError) as bad:
                await call()
            assert bad.value.code == "internal"
    finally:
        await runner.cleanup()
