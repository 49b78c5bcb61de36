"""The web client in a real browser (Debian's Chromium, driven by Playwright) against a
real server that serves the built client at `/`.

Browser tests skip when Chromium, Playwright or the build (`cd web && npm ci && npm run
build`) is missing, unless MESSENGER_REQUIRE_SERVICES=1, which makes that a failure.
They run on SQLite only: they test the client, and the contract tests already run every
server behaviour on both backends.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from messenger.transport.web import BUILD_HINT, WEB_DIR, add_web_routes
from tests.conftest import service_missing
from tests.support import PASSWORD, Device, Http, RunningServer, unique_name

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Locator,
        Page,
        async_playwright,
        expect,
    )

    PLAYWRIGHT_MISSING: ImportError | None = None
except ImportError as exc:  # reported by the `browser` fixture (pip install playwright)
    PLAYWRIGHT_MISSING = exc

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google's hosts, which this network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000
READ_BLUE = "rgb(29, 140, 248)"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """One backend here: the browser tests test the client, not the database."""
    return str(request.param)


@pytest.fixture
def built_client() -> None:
    """The server serves the client only if `npm run build` made it."""
    if not (WEB_DIR / "index.html").is_file():
        service_missing("The web client build", f"{WEB_DIR} is empty (cd web && npm run build)")


@pytest.fixture
def chromium_binary(built_client: None) -> None:
    if not CHROMIUM.exists():
        service_missing("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(name="browser")
async def browser_fixture(chromium_binary: None) -> AsyncIterator[Browser]:
    """Request it after `server`: it closes first, so the server's shutdown does not
    wait for the pages' websockets (aiohttp waits 10 s for a close frame). (Named so
    that other modules can import it without shadowing their `browser` arguments.)"""
    if PLAYWRIGHT_MISSING is not None:
        service_missing("Playwright", PLAYWRIGHT_MISSING)
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@dataclass
class Person:
    """One user in their own browser context (own storage, own network switch)."""

    name: str
    context: BrowserContext
    page: Page = field(init=False)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)

    async def open_page(self, url: str) -> None:
        """A new tab of the same context, recording script errors, dialogs, sockets."""
        page = await self.context.new_page()

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", on_dialog)
        page.on("websocket", lambda ws: self.websockets.append(ws.url))
        await page.goto(url)
        self.page = page

    async def connected(self) -> None:
        await expect(self.page.locator("#me")).to_have_text(self.name)
        await expect(self.page.locator("#banner")).to_be_hidden()

    async def open_chat(self, peer: str) -> None:
        await self.page.locator("#new-chat input[name=peer]").fill(peer)
        await self.page.locator("#new-chat button").click()
        await expect(self.page.locator("#thread-title")).to_have_text(peer)

    async def send(self, text: str) -> None:
        box = self.page.locator("#composer textarea")
        await box.fill(text)
        await box.press("Enter")

    def bubbles(self, text: str, mine: bool) -> Locator:
        side = "mine" if mine else "theirs"
        return self.page.locator(f"#messages .message.{side}").filter(
            has=self.page.locator(".body").get_by_text(text, exact=True)
        )

    def conversation(self, peer: str) -> Locator:
        return self.page.locator(f'#conversations [data-peer="{peer}"]')

    def unread(self, peer: str) -> Locator:
        return self.conversation(peer).locator(".unread")

    async def storage(self, key: str) -> Any:
        raw = await self.page.evaluate("key => localStorage.getItem(key)", f"messenger:{key}")
        return None if raw is None else json.loads(raw)

    async def token(self) -> str:
        return str((await self.storage("session"))["token"])

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs


async def person(browser: Browser, url: str, name: str, register: bool = True) -> Person:
    """Opens the page and registers (or logs in) through the login form."""
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    who = Person(name, context)
    await who.open_page(url)
    await who.page.locator("input[name=username]").fill(name)
    await who.page.locator("input[name=password]").fill(PASSWORD)
    action = "register" if register else "login"
    await who.page.locator(f"button[value={action}]").click()
    await who.connected()
    return who


async def history(http: Http, token: str, peer: str) -> list[dict[str, Any]]:
    status, body = await http.request(
        "GET", f"/api/v1/conversations/{quote(peer)}/messages?limit=100", token=token
    )
    assert status == 200, body
    return list(body["messages"])


async def test_chat_offline_ticks_and_outbox(server: RunningServer, browser: Browser) -> None:
    """The issue's walk-through: live chat, a message waiting for an offline reader,
    ticks that follow the receipts, and an outbox that sends once after coming back."""
    ann = await person(browser, server.url, unique_name("ann"))
    bob = await person(browser, server.url, unique_name("bob"))
    assert any("/socket.io/" in url and "transport=websocket" in url for url in ann.websockets)

    await ann.open_chat(bob.name)
    await ann.send("hello bob")
    first = ann.bubbles("hello bob", mine=True)
    # Bob is online: his client says `delivered` at once; he has not opened it.
    await expect(first).to_have_attribute("data-status", "delivered")
    await expect(first.locator(".tick")).to_have_text("✓✓")
    await expect(bob.unread(ann.name)).to_have_text("1")

    # Bob loses the network: the banner shows, and ann's next message only gets stored.
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#banner")).to_be_visible()
    await expect(bob.page.locator("#banner")).to_contain_text("offline")
    await ann.send("are you there?")
    second = ann.bubbles("are you there?", mine=True)
    await expect(second).to_have_attribute("data-status", "sent")
    await expect(second.locator(".tick")).to_have_text("✓")
    await ann.page.wait_for_timeout(1000)
    await expect(second).to_have_attribute("data-status", "sent")
    await expect(bob.unread(ann.name)).to_have_text("1")

    # Back online: bob's client resumes from its cursor and gets the waiting message.
    await bob.context.set_offline(False)
    await expect(bob.page.locator("#banner")).to_be_hidden()
    await expect(bob.unread(ann.name)).to_have_text("2")
    await expect(second).to_have_attribute("data-status", "delivered")

    # Bob opens the conversation: both messages are read, ann's ticks turn blue.
    await bob.conversation(ann.name).click()
    await expect(bob.bubbles("are you there?", mine=False)).to_be_visible()
    for bubble in (first, second):
        await expect(bubble).to_have_attribute("data-status", "read")
        await expect(bubble.locator(".tick")).to_have_css("color", READ_BLUE)
    await expect(bob.unread(ann.name)).to_have_count(0)

    # Ann goes offline and writes: the message waits in her outbox, with its client_id.
    await ann.context.set_offline(True)
    await expect(ann.page.locator("#banner")).to_be_visible()
    await ann.send("written offline")
    third = ann.bubbles("written offline", mine=True)
    await expect(third).to_have_attribute("data-status", "pending")
    await expect(ann.page.locator("#banner")).to_contain_text("1 message waiting")
    outbox = await ann.storage(f"{ann.name}:outbox")
    assert [(item["to"], item["body"]) for item in outbox] == [(bob.name, "written offline")]
    client_id = outbox[0]["client_id"]
    await expect(third).to_have_attribute("data-client-id", client_id)
    await bob.page.wait_for_timeout(500)
    await expect(bob.bubbles("written offline", mine=False)).to_have_count(0)

    # Back online: sent once, and read at once, since bob has the conversation open.
    await ann.context.set_offline(False)
    await expect(third).to_have_attribute("data-status", "read")
    await expect(bob.bubbles("written offline", mine=False)).to_have_count(1)
    assert await ann.storage(f"{ann.name}:outbox") is None
    stored = await history(Http(server.url), await bob.token(), ann.name)
    assert [m["body"] for m in stored] == ["hello bob", "are you there?", "written offline"]
    assert stored[-1]["client_id"] == client_id
    assert {m["status"] for m in stored} == {"read"}
    await expect(ann.bubbles("written offline", mine=True)).to_have_count(1)

    ann.assert_clean()
    bob.assert_clean()


async def test_markup_in_messages_stays_text(server: RunningServer, browser: Browser) -> None:
    """Bodies are text nodes: markup shows as typed and nothing in it runs or loads."""
    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>alert(2)</script>",
        '"><svg onload=alert(3)>&lt;b&gt;',
    ]
    ann = await person(browser, server.url, unique_name("ann"))
    bob = await person(browser, server.url, unique_name("bob"))
    await bob.open_chat(ann.name)
    await ann.open_chat(bob.name)
    for payload in payloads:
        await ann.send(payload)
    for who, mine in ((ann, True), (bob, False)):
        bodies = who.page.locator(f"#messages .message.{'mine' if mine else 'theirs'} .body")
        await expect(bodies).to_have_count(len(payloads))
        assert await bodies.all_text_contents() == payloads
        for tag in ("img", "script", "svg", "b"):
            assert await who.page.locator(f"#messages {tag}").count() == 0, tag
            assert await who.page.locator(f"#conversations {tag}").count() == 0, tag
    await expect(bob.conversation(ann.name).locator(".preview")).to_have_text(payloads[-1])
    await bob.page.wait_for_timeout(300)  # an onerror would have fired by now
    ann.assert_clean()
    bob.assert_clean()


async def test_history_scrolls_back(server: RunningServer, http: Http, browser: Browser) -> None:
    """Opening shows the newest page; scrolling up loads older pages with `before`,
    and what came into view is marked read."""
    ann_account = await http.account("ann")
    bob_account = await http.account("bob")
    bob = await Device(server.url).connect(bob_account.token)
    try:
        for n in range(1, 121):
            answer = await bob.send(ann_account.username, f"message {n}", f"seed-{n}")
            assert answer["ok"], answer
        # Ann's phone got them all, so they come to the browser only through history.
        phone = await Device(server.url).connect(ann_account.token)
        await phone.wait_synced()
        ids = [m["id"] for m in phone.messages()]
        assert len(ids) == 120
        assert (await phone.call("delivered", {"ids": ids}))["updated"] == 120
        await phone.disconnect()
        ann = await person(browser, server.url, ann_account.username, register=False)
        await expect(ann.unread(bob_account.username)).to_have_text("120")

        def read_by_ann() -> int:
            return sum(len(r["ids"]) for r in bob.of("receipt") if r["status"] == "read")

        async def unread_on_server() -> int:
            status, body = await http.request(
                "GET", "/api/v1/conversations", token=ann_account.token
            )
            assert status == 200, body
            return int(body["conversations"][0]["unread"])

        # Only what is on screen is read; the badge of the open conversation hides.
        await ann.conversation(bob_account.username).click()
        bodies = ann.page.locator("#messages .message .body")
        await expect(bodies).to_have_count(50)
        await expect(bodies.first).to_have_text("message 71")
        await expect(bodies.last).to_have_text("message 120")
        await bob.wait_for(lambda: read_by_ann() == 50)
        await expect(ann.unread(bob_account.username)).to_have_count(0)
        assert await unread_on_server() == 70

        for count in (100, 120):
            await ann.page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
            await expect(bodies).to_have_count(count)
        assert await bodies.all_text_contents() == [f"message {n}" for n in range(1, 121)]
        await expect(ann.page.locator("#older")).to_be_hidden()
        await bob.wait_for(lambda: read_by_ann() == 120)
        assert await unread_on_server() == 0
        ann.assert_clean()
    finally:
        await bob.disconnect()


async def test_resume_from_cursor_without_duplicates(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """A reopened page resumes from the cursor in localStorage: what came meanwhile
    arrives, and events replayed twice show once (duplicates dropped by id)."""
    bob_account = await http.account("bob")
    ann = await person(browser, server.url, unique_name("ann"))
    bob = await Device(server.url).connect(bob_account.token)
    try:
        await ann.open_chat(bob_account.username)
        for n in (1, 2, 3):
            await bob.send(ann.name, f"early {n}", f"early-{n}")
        bodies = ann.page.locator("#messages .message .body")
        await expect(bodies).to_have_count(3)
        await expect(ann.page.locator("#messages .message[data-status=read]")).to_have_count(3)
        cursor = await ann.storage(f"{ann.name}:cursor")
        assert isinstance(cursor, int) and cursor >= 5  # 3 messages, receipts of both kinds

        # The page closes; two messages come while it is away.
        url = ann.page.url
        await ann.page.close()
        for n in (4, 5):
            await bob.send(ann.name, f"late {n}", f"late-{n}")
        await ann.open_page(url)
        await ann.connected()
        bodies = ann.page.locator("#messages .message .body")
        await expect(bodies).to_have_count(5)
        assert await bodies.all_text_contents() == [
            "early 1",
            "early 2",
            "early 3",
            "late 4",
            "late 5",
        ]
        assert await ann.storage(f"{ann.name}:cursor") > cursor

        # Wind the cursor back: the whole stream is replayed, nothing shows twice.
        await ann.page.evaluate(
            "key => localStorage.setItem(key, '0')", f"messenger:{ann.name}:cursor"
        )
        await ann.page.reload()
        await ann.connected()
        await expect(ann.page.locator("#messages .message[data-status=read]")).to_have_count(5)
        await ann.page.wait_for_timeout(500)
        assert len(await bodies.all_text_contents()) == 5
        ann.assert_clean()
    finally:
        await bob.disconnect()


async def test_outbox_resend_is_stored_once(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """A message whose answer was lost stays in the outbox and is sent again on the
    next connect; the server knows its client_id, so there is still one message."""
    bob_account = await http.account("bob")
    ann = await person(browser, server.url, unique_name("ann"))
    await ann.open_chat(bob_account.username)
    await ann.send("only once")
    bubble = ann.bubbles("only once", mine=True)
    await expect(bubble).to_have_attribute("data-status", "sent")
    client_id = await bubble.get_attribute("data-client-id")
    message_id = await bubble.get_attribute("data-id")

    # What the outbox holds when the connection dropped before the answer came.
    lost = [{"client_id": client_id, "to": bob_account.username, "body": "only once"}]
    lost[0] |= {"queued_at": "2026-01-01T00:00:00.000Z", "state": "pending", "error": None}
    await ann.page.evaluate(
        "([key, value]) => localStorage.setItem(key, value)",
        [f"messenger:{ann.name}:outbox", json.dumps(lost)],
    )
    await ann.page.reload()
    await ann.connected()
    await expect(bubble).to_have_attribute("data-id", str(message_id))
    await expect(bubble).to_have_count(1)
    await expect(ann.page.locator("#messages .message")).to_have_count(1)
    assert await ann.storage(f"{ann.name}:outbox") is None
    stored = await history(http, bob_account.token, ann.name)
    assert [(m["body"], m["client_id"]) for m in stored] == [("only once", client_id)]
    ann.assert_clean()


async def test_served_page_and_files(built_client: None, server: RunningServer, http: Http) -> None:
    """`/` is the client's page with a strict Content-Security-Policy; its script is
    served from `/static/`; a missing file is the API's JSON 404."""
    async with aiohttp.ClientSession() as session, session.get(server.url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        page = await response.text()
    script = re.search(r'src="(/static/app\.js\?v=[0-9a-f]+)"', page)
    assert script is not None, page
    status, body = await http.request("GET", script.group(1))
    assert status == 200 and "socket.io" in body.lower()
    for missing in ("/static/nope.js", "/static/", "/static/..%2F..%2Fapp.py"):
        status, body = await http.request("GET", missing)
        assert status == 404 and body["error"]["code"] == "not_found", missing


async def test_root_without_a_build_says_how_to_build(tmp_path: Path) -> None:
    """Without `npm run build`, `/` explains how to build the client; nothing else breaks."""
    app = web.Application()
    add_web_routes(app, tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        status, text = await Http(f"http://127.0.0.1:{port}").request("GET", "/")
        assert status == 200 and text == BUILD_HINT
        assert "npm ci && npm run build" in text
        status, _ = await Http(f"http://127.0.0.1:{port}").request("GET", "/static/app.js")
        assert status == 404
    finally:
        await runner.cleanup()
