"""Notifications in the web client (docs/protocol.md 3.9, docs/web.md) in a real
Chromium against a real server: the settings flow, the service worker at scope `/`, and
its `push` and `notificationclick` handlers.

Headless Chromium cannot reach a real push service (Playwright's contexts are like
incognito windows, where Chromium refuses `pushManager.subscribe`), so:
- the real `subscribe` is tried, and its failure must leave a clear message, nothing
  on the server and the setting off;
- pushes are delivered to the service worker by the browser itself, through the
  DevTools protocol (`ServiceWorker.deliverPushMessage`, as DevTools' "Push" button);
- one test replaces only the browser's `PushManager` with a subscription at the fake
  push service of tests/push_support.py: the page's request is then what the server
  encrypts to, and the payloads the server really pushes (decrypted by the fake, VAPID
  checked) are what the worker is given.
The fixtures are tests/test_web.py's (same skip rules, SQLite only).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, CDPSession, Worker, expect

from messenger.config import Settings
from messenger.push.keys import b64url_decode
from tests.push_support import FakePushService, push_settings
from tests.support import PASSWORD, Device, Http, RunningServer, unique_name
from tests.test_web import (  # noqa: F401  (fixtures pytest finds by their names)
    Person,
    backend,
    browser_fixture,
    built_client,
    chromium_binary,
)

TAG = "messenger-unread"
WAIT_S = 10.0

# Counts the page's permission requests: it may ask only after the user's click.
COUNT_ASKS = """
(() => {
  if (typeof Notification === "undefined") return;
  const ask = Notification.requestPermission.bind(Notification);
  window.__permissionAsks = 0;
  Notification.requestPermission = (...args) => {
    window.__permissionAsks += 1;
    return ask(...args);
  };
})();
"""

# The browser's side of a push subscription, at the fake push service: what Chromium
# would return from its own push service. Kept in localStorage like the real one lasts.
FAKE_PUSH_MANAGER = """
(() => {
  if (typeof PushManager === "undefined") return;
  const fake = %s;
  const made = (key) => ({
    endpoint: fake.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: key },
    toJSON: () => ({ endpoint: fake.endpoint, expirationTime: null,
                     keys: { p256dh: fake.p256dh, auth: fake.auth } }),
    unsubscribe: async () => {
      localStorage.removeItem("test:push-key");
      const ended = Number(localStorage.getItem("test:push-unsubscribed") || 0);
      localStorage.setItem("test:push-unsubscribed", String(ended + 1));
      return true;
    },
  });
  PushManager.prototype.subscribe = async function (options) {
    if (!options || options.userVisibleOnly !== true) {
      throw new DOMException("userVisibleOnly is required", "NotAllowedError");
    }
    const key = new Uint8Array(options.applicationServerKey);
    localStorage.setItem("test:push-key", JSON.stringify(Array.from(key)));
    return made(key.buffer);
  };
  PushManager.prototype.getSubscription = async function () {
    const saved = localStorage.getItem("test:push-key");
    return saved ? made(new Uint8Array(JSON.parse(saved)).buffer) : null;
  };
})();
"""

# A click on the first notification, dispatched in the worker (DevTools cannot click
# one); `waitUntil` is taken over so that the test waits for what the click does.
CLICK_NOTIFICATION = """
async () => {
  const [notification] = await self.registration.getNotifications();
  if (!notification) return false;
  const event = new NotificationEvent("notificationclick", { notification });
  const pending = [];
  Object.defineProperty(event, "waitUntil", { value: (promise) => pending.push(promise) });
  self.dispatchEvent(event);
  await Promise.all(pending);
  return true;
}
"""

# In the worker: each push event's `waitUntil` promise, settled ("done" or the error).
WATCH_PUSHES = """
() => {
  if (self.__pushes) return;
  self.__pushes = [];
  const waitUntil = ExtendableEvent.prototype.waitUntil;
  ExtendableEvent.prototype.waitUntil = function (promise) {
    if (this.type === "push") {
      const at = self.__pushes.length;
      self.__pushes.push(null);
      Promise.resolve(promise).then(
        () => { self.__pushes[at] = "done"; },
        (err) => { self.__pushes[at] = String(err); },
      );
    }
    return waitUntil.call(this, promise);
  };
}
"""

SHOWN = """
async () => (await self.registration.getNotifications()).map((n) => ({
  title: n.title, body: n.body, tag: n.tag, data: n.data,
}))
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Pushes soon after a send, and to the fake push service on loopback."""
    return push_settings(settings)


async def user(
    browser: Browser,
    server: RunningServer,
    *,
    allow: bool = True,
    fake_push: dict[str, str] | None = None,
) -> Person:
    """A new user, registered through the form, in a context where notifications are
    allowed (`allow`) or left to the browser's default."""
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    if allow:
        await context.grant_permissions(["notifications"], origin=server.url)
    await context.add_init_script(COUNT_ASKS)
    if fake_push is not None:
        await context.add_init_script(FAKE_PUSH_MANAGER % json.dumps(fake_push))
    who = Person(unique_name("ann"), context)
    await who.open_page(server.url)
    await who.page.locator("input[name=username]").fill(who.name)
    await who.page.locator("input[name=password]").fill(PASSWORD)
    await who.page.locator("button[value=register]").click()
    await who.connected()
    await who.page.locator("#settings summary").click()
    return who


async def wait_until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Polls `check` until it returns something true."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.05)


async def registration(who: Person) -> dict[str, Any] | None:
    """The page's service worker registration at `/`: its scope and worker states."""
    result: dict[str, Any] | None = await who.page.evaluate(
        """async () => {
            const r = await navigator.serviceWorker.getRegistration("/");
            return r ? { scope: r.scope, active: r.active && r.active.state,
                         script: r.active && r.active.scriptURL,
                         controlled: Boolean(navigator.serviceWorker.controller) } : null;
        }"""
    )
    return result


async def server_subscriptions(http: Http, token: str) -> list[dict[str, Any]]:
    status, body = await http.request("GET", "/api/v1/push/subscriptions", token=token)
    assert status == 200, body
    return list(body["subscriptions"])


async def settled(http: Http, token: str, want: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """The server's subscriptions once `want` holds (the page saves in the background)."""

    async def check() -> tuple[list[dict[str, Any]]] | None:
        found = await server_subscriptions(http, token)
        return (found,) if want(found) else None  # a tuple: true even when empty

    return (await wait_until(check, "the server's subscriptions"))[0]


@dataclasses.dataclass
class PushDriver:
    """The browser's push delivery, through DevTools, and a look into the worker.

    Chromium's `getNotifications()` drops what its notification center does not show
    yet, so asking while a push is being shown can lose that notification (a race in
    the browser, which the worker never meets: it asks only for `unread: 0`). The
    driver therefore waits for each push's `waitUntil` promise, seen through a hook on
    `ExtendableEvent.prototype.waitUntil` in the worker, before it looks."""

    context: BrowserContext
    cdp: CDPSession
    origin: str
    registration_id: str

    @classmethod
    async def attach(cls, who: Person, origin: str) -> PushDriver:
        cdp = await who.context.new_cdp_session(who.page)
        seen: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: seen.extend(e["registrations"]))
        await cdp.send("ServiceWorker.enable")

        async def ours() -> str | None:
            for r in seen:
                if r["scopeURL"] == origin + "/" and not r["isDeleted"]:
                    return str(r["registrationId"])
            return None

        driver = cls(who.context, cdp, origin, await wait_until(ours, "the registration"))

        async def running() -> Worker | None:
            return driver.worker_or_none()

        await wait_until(running, "the worker")
        await driver.worker().evaluate(WATCH_PUSHES)
        return driver

    def worker_or_none(self) -> Worker | None:
        workers = [w for w in self.context.service_workers if w.url == self.origin + "/sw.js"]
        return workers[-1] if workers else None

    def worker(self) -> Worker:
        worker = self.worker_or_none()
        assert worker is not None, self.context.service_workers
        return worker

    async def deliver(self, data: str | dict[str, Any]) -> None:
        """One push message, as the browser hands it to the worker; returns once the
        worker's handler has finished (and fails if it failed)."""
        text = data if isinstance(data, str) else json.dumps(data)
        worker = self.worker()
        handled = await worker.evaluate("self.__pushes.length")
        await self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": self.origin, "registrationId": self.registration_id, "data": text},
        )
        await wait_until(
            lambda: worker.evaluate(f"self.__pushes[{handled}] != null"), "the push handled"
        )
        outcome = await worker.evaluate(f"self.__pushes[{handled}]")
        assert outcome == "done", outcome

    async def shown(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.worker().evaluate(SHOWN)
        return result

    async def shown_after(self, data: str | dict[str, Any]) -> list[dict[str, Any]]:
        """The notifications shown once the worker has handled this push."""
        await self.deliver(data)
        return await self.shown()

    async def redeliver(self, data: str) -> list[dict[str, Any]]:
        """A push again right after a click closed its notification. Chromium closes by
        tag, and a close still on its way can take the new one along (a few times in a
        hundred here): such a push is delivered again, as a user would get the next."""
        for _ in range(5):
            shown = await self.shown_after(data)
            if shown:
                return shown
            await asyncio.sleep(0.1)
        raise AssertionError("the notification did not come back")


@pytest.mark.usefixtures("built_client")
async def test_service_worker_is_served_at_the_root(server: RunningServer) -> None:
    """`/sw.js` is the worker (scope `/` needs it at the root), revalidated on each
    load like the page, under the same strict policy."""
    async with aiohttp.ClientSession() as session, session.get(server.url + "/sw.js") as response:
        assert response.status == 200
        assert response.content_type in ("application/javascript", "text/javascript")
        assert response.headers["Cache-Control"] == "no-cache"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        script = await response.text()
    for handler in ('"push"', '"notificationclick"'):
        assert f"addEventListener({handler}" in script, handler
    assert "innerHTML" not in script


async def test_turning_on_asks_only_on_click_and_says_when_push_is_missing(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """Nothing is asked or registered until the click; the click asks permission,
    starts the worker at scope `/`, and the refusal of headless Chromium's push service
    is said plainly, with nothing left on the server."""
    ann = await user(browser, server)
    box = ann.page.locator("#notifications")
    preview = ann.page.locator("#notification-preview")
    await expect(box).not_to_be_checked()
    await expect(box).to_be_enabled()
    await expect(preview).not_to_be_checked()
    await ann.page.wait_for_timeout(300)  # the app has started (settings, socket)
    assert await ann.page.evaluate("window.__permissionAsks") == 0
    assert await registration(ann) is None

    await box.click()
    error = ann.page.locator("#notifications-error")
    await expect(error).to_contain_text("could not subscribe to its push service")
    assert await ann.page.evaluate("window.__permissionAsks") == 1
    await expect(box).not_to_be_checked()
    await expect(box).to_be_enabled()
    found = await registration(ann)
    assert found == {
        "scope": server.url + "/",
        "active": "activated",
        "script": server.url + "/sw.js",
        "controlled": True,  # clients.claim(): this page is the worker's at once
    }
    assert await server_subscriptions(http, await ann.token()) == []
    assert await ann.storage(f"{ann.name}:push") is None

    # Trying again asks again (a click each time), and fails the same way.
    await box.click()
    await expect(box).not_to_be_checked()
    await wait_until(lambda: ann.page.evaluate("window.__permissionAsks === 2"), "a 2nd ask")
    await expect(error).to_contain_text("could not subscribe to its push service")
    assert await server_subscriptions(http, await ann.token()) == []
    ann.assert_clean()


async def test_without_permission_nothing_starts(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """Permission not given: the setting stays off with a reason, and neither the
    worker nor a subscription is made."""
    ann = await user(browser, server, allow=False)
    await ann.page.locator("#notifications").click()
    error = ann.page.locator("#notifications-error")
    await expect(error).to_have_text(
        "Notifications are blocked for this site. Allow them in the browser's site "
        "settings, then try again."
    )
    assert await ann.page.evaluate("window.__permissionAsks") == 1
    await expect(ann.page.locator("#notifications")).not_to_be_checked()
    assert await registration(ann) is None
    assert await server_subscriptions(http, await ann.token()) == []
    ann.assert_clean()


async def test_the_worker_shows_one_notification_per_push(
    server: RunningServer, browser: Browser
) -> None:
    """Pushes delivered by the browser: one notification, replaced by the next (one
    tag); a count without previews, sender and text with them, as text only; `unread:
    0` takes it away."""
    ann = await user(browser, server)
    await ann.page.locator("#notifications").click()  # starts the worker (push fails)
    await expect(ann.page.locator("#notifications-error")).not_to_be_empty()
    push = await PushDriver.attach(ann, server.url)

    shown = await push.shown_after({"cursor": 4, "unread": 1})
    assert shown == [
        {
            "title": "Messenger",
            "body": "1 unread message",
            "tag": TAG,
            "data": {"from": None, "unread": 1, "cursor": 4},
        }
    ]
    shown = await push.shown_after({"cursor": 9, "unread": 3})
    assert [(n["title"], n["body"]) for n in shown] == [("Messenger", "3 unread messages")]

    markup = "<img src=x onerror=alert(1)> <b>bold</b>\n<script>alert(2)</script>"
    bob = "bob@example.com"
    shown = await push.shown_after({"cursor": 10, "unread": 4, "from": bob, "excerpt": markup})
    assert shown == [
        {
            "title": f"{bob} (4 unread messages)",
            "body": markup.replace("\n", " "),  # the characters as sent, line breaks as spaces
            "tag": TAG,
            "data": {"from": bob, "unread": 4, "cursor": 10},
        }
    ]
    shown = await push.shown_after({"cursor": 11, "unread": 1, "from": bob, "excerpt": "hi"})
    assert [(n["title"], n["body"]) for n in shown] == [(bob, "hi")]

    assert await push.shown_after({"cursor": 12, "unread": 0}) == []
    # A push that is not JSON (or empty) still says something, never nothing.
    shown = await push.shown_after("not json")
    assert [(n["title"], n["body"]) for n in shown] == [("Messenger", "New messages")]
    await ann.page.wait_for_timeout(200)
    ann.assert_clean()


async def test_server_pushes_reach_the_worker_and_a_click_opens_the_chat(
    server: RunningServer, http: Http, browser: Browser, push_service: FakePushService
) -> None:
    """With the browser's push subscription at the fake push service: turning on
    posts it (label, preview), the server's pushes while ann is away become her
    notification, a click opens the sender's conversation, reading it elsewhere
    clears it, and turning off ends the subscription on both sides."""
    status, vapid = await http.request("GET", "/api/v1/push/vapid")
    assert status == 200, vapid
    name = "ann-browser"
    endpoint, keys = push_service.subscribe(name, application_server_key=vapid["public_key"])
    fake = {"endpoint": endpoint, "p256dh": keys.p256dh, "auth": keys.auth}
    ann = await user(browser, server, fake_push=fake)
    token = await ann.token()
    page = ann.page

    await page.locator("#notification-preview").check()
    await page.locator("#notifications").click()
    [made] = await settled(http, token, lambda found: len(found) == 1)
    await expect(page.locator("#notifications")).to_be_checked()
    await expect(page.locator("#notifications")).to_be_enabled()
    await expect(page.locator("#notifications-error")).to_be_empty()
    assert made["kind"] == "webpush" and made["preview"] is True and made["current"] is True
    assert made["label"] == "Chrome on Linux"
    assert await ann.storage(f"{ann.name}:push") == {"id": made["id"], "preview": True}
    asked_key = await page.evaluate("JSON.parse(localStorage.getItem('test:push-key'))")
    assert bytes(asked_key) == b64url_decode(vapid["public_key"])  # applicationServerKey

    # Previews off while on: the same subscription, updated on the server.
    await page.locator("#notification-preview").uncheck()
    found = await settled(http, token, lambda found: not found[0]["preview"])
    assert [s["id"] for s in found] == [made["id"]]
    await page.locator("#notification-preview").check()
    found = await settled(http, token, lambda found: found[0]["preview"])
    assert [s["id"] for s in found] == [made["id"]]
    await expect(page.locator("#notifications")).to_be_enabled()

    # Ann leaves the app (no live connection); bob writes twice.
    push = await PushDriver.attach(ann, server.url)
    await page.goto("about:blank")
    bob_account = await http.account("bob")
    bob = await Device(server.url).connect(bob_account.token)
    try:
        for n, body in enumerate(["first", "<i>second</i> one"]):
            answer = await bob.send(ann.name, body, f"push-{n}")
            assert answer["ok"], answer
        await push_service.wait_for(lambda: push_service.received(name), timeout=10)
        payload = push_service.received(name)[0]
        expected = {"unread": 2, "from": bob_account.username, "excerpt": "<i>second</i> one"}
        assert {k: payload.json[k] for k in expected} == expected
        shown = await push.shown_after(payload.payload.decode())
        assert [(n["title"], n["body"]) for n in shown] == [
            (f"{bob_account.username} (2 unread messages)", "<i>second</i> one")
        ]

        # She comes back to the app; the notification is clicked: her page is focused
        # and shows bob's conversation.
        await page.goto(server.url + "/")
        await ann.connected()
        await expect(page.locator("#thread-title")).to_be_hidden()
        assert await push.worker().evaluate(CLICK_NOTIFICATION) is True
        await expect(page.locator("#thread-title")).to_have_text(bob_account.username)
        await expect(ann.bubbles("<i>second</i> one", mine=False)).to_be_visible()
        assert await push.shown() == []  # the click closed it
        # The reload renewed the subscription quietly: still the one, still hers.
        assert [(s["id"], s["current"]) for s in await server_subscriptions(http, token)] == [
            (made["id"], True)
        ]

        # Reading them (the open conversation) makes unread 0: the server says so.
        await push.redeliver(payload.payload.decode())  # the notification back, once more
        await push_service.wait_for(lambda: len(push_service.received(name)) == 2, timeout=10)
        cleared = push_service.received(name)[1]
        assert cleared.json["unread"] == 0
        assert await push.shown_after(cleared.payload.decode()) == []
    finally:
        await bob.disconnect()

    # Off: the browser's subscription ends, the server's is deleted.
    await page.locator("#settings summary").click()
    await page.locator("#notifications").click()
    await settled(http, token, lambda found: not found)
    await expect(page.locator("#notifications")).not_to_be_checked()
    await expect(page.locator("#notifications")).to_be_enabled()
    assert await page.evaluate("localStorage.getItem('test:push-unsubscribed')") == "1"
    assert await ann.storage(f"{ann.name}:push") == {"id": None, "preview": True}

    # On again, then log out: the session's subscription and the browser's both end.
    await page.locator("#notifications").click()
    await settled(http, token, lambda found: len(found) == 1)
    await expect(page.locator("#notifications")).to_be_checked()
    await page.locator("#logout").click()
    await expect(page.locator("#login-form")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('test:push-unsubscribed')") == "2"
    status, again = await http.login(ann.name)
    assert status == 201, again
    assert await server_subscriptions(http, again["token"]) == []
    assert await ann.storage(f"{ann.name}:push") is None
    ann.assert_clean()
