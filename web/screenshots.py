"""Screenshots of the web client's main views for docs/screenshots/, taken from a real
server (a throwaway SQLite database) and Debian's Chromium.

    . .venv/bin/activate && (cd web && npm run build) && python web/screenshots.py

Needs what tests/test_web.py needs: /usr/bin/chromium, `pip install playwright`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

from messenger.config import Settings  # noqa: E402
from messenger.store.migrate import upgrade  # noqa: E402
from tests.support import PASSWORD, Device, Http  # noqa: E402
from tests.support import start_server as start  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1100, "height": 640}


async def sign_in(browser: Browser, url: str, name: str) -> tuple[Page, object]:
    """A user's own context, logged in through the form (the account exists)."""
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = await context.new_page()
    await page.goto(url)
    await page.locator("input[name=username]").fill(name)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("button[value=login]").click()
    await expect(page.locator("#banner")).to_be_hidden()
    return page, context


async def send(page: Page, text: str) -> None:
    await page.locator("#composer textarea").fill(text)
    await page.locator("#composer textarea").press("Enter")


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{tmp}/messenger.db"
        upgrade(database_url)
        server = await start(Settings(database_url=database_url, rate_limit=0))
        try:
            await scenes(server.url, out)
        finally:
            await server.stop()


async def scenes(url: str, out: Path) -> None:
    http = Http(url)
    names = {who: f"{who}@example.com" for who in ("ann", "bob", "carol", "dave")}
    tokens = {}
    for who, name in names.items():
        await http.register(name)
        tokens[who] = (await http.login(name))[1]["token"]
    carol = await Device(url).connect(tokens["carol"])
    dave = await Device(url).connect(tokens["dave"])

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)

        login_context = await browser.new_context(viewport=VIEWPORT)
        login = await login_context.new_page()
        await login.goto(url)
        await login.locator("input[name=username]").fill("ann@example.com")
        await login.screenshot(path=out / "login.png")
        await login_context.close()

        ann, ann_context = await sign_in(browser, url, names["ann"])
        bob, bob_context = await sign_in(browser, url, names["bob"])

        # Bob's list: unread messages from ann and carol, a read chat with dave.
        await dave.send(names["bob"], "The slides are in the shared folder.", "d1")
        await bob.locator(f'[data-peer="{names["dave"]}"]').click()
        await expect(bob.locator("#messages .message")).to_have_count(1)
        await bob.locator(".back").evaluate("el => el.click()")
        await ann.locator("#new-chat input").fill(names["bob"])
        await ann.locator("#new-chat button").click()
        await send(ann, "Hi Bob! Are we still on for Friday?")
        await send(ann, "I can bring the <b>board games</b>, if you like.")
        await carol.send(names["bob"], "Lunch tomorrow?", "c1")
        await expect(bob.locator(f'[data-peer="{names["ann"]}"] .unread')).to_have_text("2")
        await expect(bob.locator(f'[data-peer="{names["carol"]}"] .unread')).to_have_text("1")
        await bob.screenshot(path=out / "conversations.png")

        # Ann's conversation: read (blue), delivered, stored.
        await bob.locator(f'[data-peer="{names["ann"]}"]').click()
        await send(bob, "Yes! 7 pm at the usual place.")
        await expect(ann.locator("#messages .message.mine[data-status=read]")).to_have_count(2)
        await bob.locator(".back").evaluate("el => el.click()")
        await send(ann, "Great, I'll book a table.")
        await expect(ann.locator("#messages .message.mine[data-status=delivered]")).to_have_count(1)
        await bob_context.set_offline(True)
        await expect(bob.locator("#banner")).to_be_visible()
        await send(ann, "Tell me if 7:30 works better.")
        await expect(ann.locator("#messages .message.mine[data-status=sent]")).to_have_count(1)
        await ann.screenshot(path=out / "conversation.png")

        # Ann offline: the banner, and a message waiting in the outbox.
        await ann_context.set_offline(True)
        await expect(ann.locator("#banner")).to_be_visible()
        await send(ann, "See you then!")
        await expect(ann.locator("#messages .message.mine[data-status=pending]")).to_have_count(1)
        await ann.screenshot(path=out / "offline.png")

        # A phone-sized window shows one pane at a time.
        await ann_context.set_offline(False)
        await expect(ann.locator("#banner")).to_be_hidden()
        await expect(ann.locator("#messages .message.mine[data-status=pending]")).to_have_count(0)
        await ann.set_viewport_size({"width": 390, "height": 700})
        await ann.screenshot(path=out / "mobile.png")
        await ann.set_viewport_size(VIEWPORT)
        await lifecycle(ann, carol, names, out)
        await search_and_account(ann, out)
        await browser.close()
    await carol.disconnect()
    await dave.disconnect()


async def lifecycle(ann: Page, carol: Device, names: dict[str, str], out: Path) -> None:
    """A reply with its quote, an edited message, a tombstone, reactions, carol typing,
    and the menu of a message open."""
    await carol.send(names["ann"], "Lunch tomorrow? The new noodle bar is open.", "c10")
    await ann.locator(f'[data-peer="{names["carol"]}"]').click()
    await expect(ann.locator("#messages .message")).to_have_count(1)
    lunch = ann.locator("#messages .message").first
    await lunch.hover()
    await lunch.locator(".menu-button").click()
    await ann.locator('.message-menu [data-action="reply"]').click()
    await send(ann, "Sure, 12:30 at the noodle bar?")
    await expect(ann.locator("#messages .message.mine[data-status=sent]")).to_have_count(1)
    reply_id = int(await ann.locator("#messages .message.mine").first.get_attribute("data-id") or 0)
    answer = await carol.send(names["ann"], "Perfect, see you at 12:30", "c11")
    edited = await carol.send(names["ann"], "I will bring the umbrella", "c12")
    oops = await carol.send(names["ann"], "(wrong chat, sorry)", "c13")
    await carol.call("react", {"id": reply_id, "emoji": "👍"})
    await carol.call("react", {"id": answer["message"]["id"], "emoji": "🙏"})
    await carol.call(
        "edit", {"id": edited["message"]["id"], "body": "I will bring umbrellas", "client_id": "e1"}
    )
    await carol.call("delete", {"id": oops["message"]["id"], "for": "everyone"})
    await expect(ann.locator("#messages .message.deleted")).to_have_count(1)
    await expect(ann.locator("#messages .edited:visible")).to_have_count(1)
    theirs = ann.locator("#messages .message.theirs").nth(1)
    await theirs.hover()
    await theirs.locator(".menu-button").click()
    await ann.locator('.message-menu [data-emoji="❤️"]').click()
    await carol.call("typing", {"to": names["ann"], "state": True})
    await expect(ann.locator("#typing")).to_be_visible()
    await theirs.locator(".menu-button").click()
    await expect(ann.locator(".message-menu")).to_be_visible()
    await ann.screenshot(path=out / "lifecycle.png")


async def search_and_account(ann: Page, out: Path) -> None:
    """Search results with their hits marked, then the account page."""
    await ann.keyboard.press("Escape")  # the menu lifecycle() left open
    await ann.locator("#search-input").fill("noodle")
    await ann.locator("#search-input").press("Enter")
    await expect(ann.locator("#search-list .search-result")).to_have_count(2)
    await ann.screenshot(path=out / "search.png")
    await ann.locator("#search-input").press("Escape")
    await ann.locator("#settings summary").click()
    await ann.locator("#account-open").click()
    await expect(ann.locator("#sessions li.session")).to_have_count(2)
    await ann.screenshot(path=out / "account.png")
    await ann.locator("#account .dialog-close").click()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
    for shot in sorted(target.glob("*.png")):
        print(shot)
