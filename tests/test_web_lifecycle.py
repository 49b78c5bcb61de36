"""The web client's message lifecycle in a real browser (docs/protocol.md 3.6-3.8):
replies, edits, deletes, reactions, typing and private read receipts, between two
users in their own Chromium contexts against a real server. The fixtures and the
`Person` driver are tests/test_web.py's (same skip rules, SQLite only).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any

from playwright.async_api import Browser, Locator, expect

from tests.support import Http, RunningServer, unique_name
from tests.test_web import (  # noqa: F401  (fixtures pytest finds by their names)
    READ_BLUE,
    Person,
    backend,
    browser_fixture,
    built_client,
    chromium_binary,
    history,
    person,
)

TOMBSTONE = "This message was deleted"


async def pair(server: RunningServer, browser: Browser) -> tuple[Person, Person]:
    """Ann and bob, each with the other's conversation open."""
    ann = await person(browser, server.url, unique_name("ann"))
    bob = await person(browser, server.url, unique_name("bob"))
    await ann.open_chat(bob.name)
    await bob.open_chat(ann.name)
    return ann, bob


def bubble(who: Person, text: str) -> Locator:
    """The one message (either side) whose body is exactly `text`."""
    return who.page.locator("#messages .message").filter(
        has=who.page.locator(".body").get_by_text(text, exact=True)
    )


async def edit(who: Person, text: str, new_text: str) -> None:
    """Edits one's own message `text` through its menu: the new text in the composer,
    sent with Enter."""
    await choose(who, bubble(who, text), "edit")
    box = who.page.locator("#composer textarea")
    await box.fill(new_text)
    await box.press("Enter")


def tombstones(who: Person) -> Locator:
    return who.page.locator("#messages .message.deleted .body.tombstone")


async def open_menu(who: Person, message: Locator) -> Locator:
    """The ⋯ menu of a message, opened with the mouse as a user would."""
    await message.hover()
    await message.locator(".menu-button").click()
    menu = who.page.locator(".message-menu")
    await expect(menu).to_be_visible()
    return menu


async def choose(who: Person, message: Locator, action: str) -> None:
    menu = await open_menu(who, message)
    await menu.locator(f"[data-action={action}]").click()
    await expect(menu).to_have_count(0)


async def react(who: Person, message: Locator, emoji: str) -> None:
    menu = await open_menu(who, message)
    await menu.locator(f'[data-emoji="{emoji}"]').click()


def reaction(message: Locator, emoji: str) -> Locator:
    return message.locator(f'.reactions .reaction[data-emoji="{emoji}"]')


async def wait_for_setting(http: Http, token: str, read_receipts: bool) -> None:
    """The page saves the setting in the background: poll the server until it has it."""
    for _ in range(50):
        status, body = await http.request("GET", "/api/v1/users/me/settings", token=token)
        assert status == 200, body
        if body == {"read_receipts": read_receipts}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the setting stayed {body}")


async def test_reply_shows_the_quote(server: RunningServer, browser: Browser) -> None:
    """A reply carries a quote of the message it answers, as text, on both pages; the
    quote follows an edit of the original and becomes "deleted message" after a delete
    for everyone; a reply written offline waits in the outbox with its quote."""
    ann, bob = await pair(server, browser)
    original = "<img src=x onerror=alert(1)> lunch at one?"
    await ann.send(original)
    await expect(bubble(bob, original)).to_be_visible()

    await choose(bob, bubble(bob, original), "reply")
    await expect(bob.page.locator("#composer-mode")).to_contain_text(f"Replying to {ann.name}")
    await expect(bob.page.locator("#composer textarea")).to_be_focused()
    await bob.send("yes, see you there")
    await expect(bob.page.locator("#composer-mode")).to_be_hidden()
    for who, quoted in ((bob, ann.name), (ann, "You")):
        reply = bubble(who, "yes, see you there")
        await expect(reply.locator(".quote .quote-from")).to_have_text(quoted)
        await expect(reply.locator(".quote .quote-text")).to_have_text(original)
        assert await who.page.locator("#messages img").count() == 0
    stored = await history(Http(server.url), await ann.token(), bob.name)
    assert stored[1]["reply_to"]["id"] == stored[0]["id"], stored

    # The quote shows the original as it is now: edited, then deleted.
    await edit(ann, original, "lunch at two?")
    for who in (ann, bob):
        quote = bubble(who, "yes, see you there").locator(".quote .quote-text")
        await expect(quote).to_have_text("lunch at two?")
    await choose(ann, bubble(ann, "lunch at two?"), "delete-everyone")
    for who in (ann, bob):
        quote = bubble(who, "yes, see you there").locator(".quote")
        await expect(quote).to_have_text("deleted message")

    # Offline, a reply waits in the outbox with its quote, and is sent as a reply.
    await ann.context.set_offline(True)
    await expect(ann.page.locator("#banner")).to_be_visible()
    await choose(ann, bubble(ann, "yes, see you there"), "reply")
    await ann.send("sorry, cannot come")
    pending = bubble(ann, "sorry, cannot come")
    await expect(pending).to_have_attribute("data-status", "pending")
    await expect(pending.locator(".quote .quote-text")).to_have_text("yes, see you there")
    await ann.context.set_offline(False)
    await expect(pending).to_have_attribute("data-status", "read")
    reply = bubble(bob, "sorry, cannot come")
    await expect(reply.locator(".quote .quote-from")).to_have_text("You")
    stored = await history(Http(server.url), await ann.token(), bob.name)
    assert stored[-1]["reply_to"]["id"] == stored[1]["id"], stored
    ann.assert_clean()
    bob.assert_clean()


async def test_edit_by_keyboard_shows_on_the_other_page(
    server: RunningServer, browser: Browser
) -> None:
    """The menu works from the keyboard; an edit shows the new text and "edited" on
    the other user's page; Escape leaves edit mode without changing anything."""
    ann, bob = await pair(server, browser)
    await ann.send("see you at 5")
    mine = bubble(ann, "see you at 5")
    await expect(bubble(bob, "see you at 5")).to_be_visible()
    await expect(mine.locator(".edited")).to_be_hidden()

    # Escape in edit mode restores the composer.
    button = mine.locator(".menu-button")
    await button.focus()
    await ann.page.keyboard.press("Enter")
    menu = ann.page.locator(".message-menu")
    await expect(menu).to_be_visible()
    await expect(menu.locator("[role=menuitemcheckbox]").first).to_be_focused()
    await ann.page.keyboard.press("Escape")
    await expect(menu).to_have_count(0)
    await expect(button).to_be_focused()

    await ann.page.keyboard.press("Enter")
    await ann.page.keyboard.press("End")
    await ann.page.keyboard.press("ArrowUp")
    await ann.page.keyboard.press("ArrowUp")
    await expect(menu.locator("[data-action=edit]")).to_be_focused()
    await ann.page.keyboard.press("Enter")
    box = ann.page.locator("#composer textarea")
    await expect(box).to_have_value("see you at 5")
    await expect(box).to_be_focused()
    await expect(ann.page.locator("#composer-mode")).to_contain_text("Editing")
    await ann.page.keyboard.press("Escape")
    await expect(box).to_have_value("")
    await expect(ann.page.locator("#composer-mode")).to_be_hidden()

    # The edit itself, all by keyboard.
    await button.focus()
    await ann.page.keyboard.press("Enter")
    await ann.page.keyboard.press("End")
    await ann.page.keyboard.press("ArrowUp")
    await ann.page.keyboard.press("ArrowUp")
    await ann.page.keyboard.press("Enter")
    await box.fill("see you at 6")
    await box.press("Enter")
    for who in (ann, bob):
        edited = bubble(who, "see you at 6")
        await expect(edited).to_be_visible()
        await expect(edited.locator(".edited")).to_have_text("edited")
        await expect(bubble(who, "see you at 5")).to_have_count(0)
        await expect(who.page.locator("#messages .message")).to_have_count(1)
    await expect(bob.conversation(ann.name).locator(".preview")).to_have_text("see you at 6")

    # Offline, an edit is refused with a notice, and the text stays for a retry.
    await ann.context.set_offline(True)
    await expect(ann.page.locator("#banner")).to_be_visible()
    await choose(ann, bubble(ann, "see you at 6"), "edit")
    await box.fill("see you at 7")
    await box.press("Enter")
    await expect(ann.page.locator("#notice")).to_contain_text("offline")
    await expect(box).to_have_value("see you at 7")
    await expect(ann.page.locator("#composer-mode")).to_contain_text("Editing")
    await ann.context.set_offline(False)
    await expect(ann.page.locator("#banner")).to_be_hidden()
    await box.press("Enter")
    await expect(ann.page.locator("#composer-mode")).to_be_hidden()
    await expect(box).to_have_value("")
    await expect(bubble(bob, "see you at 7").locator(".edited")).to_be_visible()

    # Edit is offered on one's own messages only.
    await open_menu(bob, bubble(bob, "see you at 7"))
    menu = bob.page.locator(".message-menu")
    await expect(menu.locator("[data-action=reply]")).to_be_visible()
    await expect(menu.locator("[data-action=edit]")).to_have_count(0)
    await expect(menu.locator("[data-action=delete-everyone]")).to_have_count(0)
    await bob.page.keyboard.press("Escape")
    ann.assert_clean()
    bob.assert_clean()


async def test_delete_for_everyone_and_for_me(server: RunningServer, browser: Browser) -> None:
    """For everyone: the tombstone on both pages, the body nowhere. For me: gone from
    the deleter's page (also after a reload), still on the other page."""
    ann, bob = await pair(server, browser)
    for text in ("oops, wrong chat", "this one stays", "the last one"):
        await ann.send(text)
    await expect(bob.page.locator("#messages .message")).to_have_count(3)

    await choose(ann, bubble(ann, "oops, wrong chat"), "delete-everyone")
    for who in (ann, bob):
        await expect(tombstones(who)).to_have_count(1)
        await expect(tombstones(who)).to_have_text(TOMBSTONE)
        await expect(who.page.locator("#messages .message")).to_have_count(3)
        await expect(who.page.locator("#messages").get_by_text("oops")).to_have_count(0)
        first = who.page.locator("#messages .message").first
        await expect(first).to_have_class(re.compile(r"\bdeleted\b"))
    # A tombstone offers only "delete for me".
    menu = await open_menu(ann, ann.page.locator("#messages .message.deleted"))
    await expect(menu.locator("[data-action]")).to_have_count(1)
    await expect(menu.locator("[data-action=delete-me]")).to_be_visible()
    await expect(menu.locator(".menu-emoji")).to_have_count(0)
    await ann.page.keyboard.press("Escape")

    await choose(bob, bubble(bob, "this one stays"), "delete-me")
    await expect(bubble(bob, "this one stays")).to_have_count(0)
    await expect(bob.page.locator("#messages .message")).to_have_count(2)
    await ann.page.wait_for_timeout(500)
    await expect(bubble(ann, "this one stays")).to_be_visible()
    await expect(ann.page.locator("#messages .message")).to_have_count(3)

    # The last message deleted for me: the list's preview moves to the one before.
    await choose(bob, bubble(bob, "the last one"), "delete-me")
    await expect(bob.conversation(ann.name).locator(".preview")).to_have_text(TOMBSTONE)
    await bob.page.reload()
    await bob.connected()
    await expect(bob.page.locator("#messages .message")).to_have_count(1)
    await expect(tombstones(bob)).to_have_count(1)
    await expect(bubble(ann, "the last one")).to_be_visible()
    ann.assert_clean()
    bob.assert_clean()


async def test_react_and_unreact(server: RunningServer, browser: Browser) -> None:
    """Reactions show under the message with a count and the names in the title on
    both pages; clicking one's own reaction takes it back."""
    ann, bob = await pair(server, browser)
    await ann.send("pizza tonight?")
    theirs, mine = bubble(bob, "pizza tonight?"), bubble(ann, "pizza tonight?")
    await expect(theirs).to_be_visible()

    await react(bob, theirs, "👍")
    for message in (mine, theirs):
        chip = reaction(message, "👍")
        await expect(chip).to_have_text("👍1")
    await expect(reaction(mine, "👍")).to_have_attribute("title", bob.name)
    await expect(reaction(mine, "👍")).to_have_attribute("aria-pressed", "false")
    await expect(reaction(theirs, "👍")).to_have_attribute("aria-pressed", "true")

    # Ann joins by clicking the chip; then adds ❤️ from the menu, by keyboard.
    await reaction(mine, "👍").click()
    for message in (mine, theirs):
        await expect(reaction(message, "👍")).to_have_text("👍2")
    title = await reaction(theirs, "👍").get_attribute("title")
    assert title is not None and ann.name in title and "You" in title, title
    await mine.locator(".menu-button").focus()
    await ann.page.keyboard.press("Enter")
    await ann.page.keyboard.press("ArrowRight")
    await expect(ann.page.locator('.message-menu [data-emoji="❤️"]')).to_be_focused()
    await ann.page.keyboard.press("Enter")
    await expect(reaction(theirs, "❤️")).to_have_text("❤️1")

    # Bob clicks his own 👍: it is taken back on both pages.
    await reaction(theirs, "👍").click()
    for message in (mine, theirs):
        await expect(reaction(message, "👍")).to_have_text("👍1")
    await expect(reaction(theirs, "👍")).to_have_attribute("title", ann.name)
    # Ann takes back ❤️ from the menu, where it shows as hers.
    menu = await open_menu(ann, mine)
    heart = menu.locator('[data-emoji="❤️"]')
    await expect(heart).to_have_attribute("aria-checked", "true")
    await heart.click()
    for message in (mine, theirs):
        await expect(reaction(message, "❤️")).to_have_count(0)
    stored = await history(Http(server.url), await ann.token(), bob.name)
    assert stored[0]["reactions"] == {"👍": [ann.name]}, stored
    ann.assert_clean()
    bob.assert_clean()


async def test_typing_indicator(server: RunningServer, browser: Browser) -> None:
    """Typing shows "NAME is typing…" on the other page and goes away on send, on blur
    and after a pause; the page says `true` at most every 3 s and `false` once."""
    ann, bob = await pair(server, browser)
    frames: list[dict[str, Any]] = []

    def record(payload: str | bytes) -> None:
        text = payload if isinstance(payload, str) else payload.decode(errors="replace")
        if text.startswith("42") and '"typing"' in text:
            event = json.loads(text.lstrip("0123456789"))
            frames.append({"at": time.monotonic(), **event[1]})

    # The socket is opened when the page loads: listen, then load it again.
    ann.page.on("websocket", lambda ws: ws.on("framesent", record))
    await ann.page.reload()
    await ann.connected()
    await expect(ann.page.locator("#thread-title")).to_have_text(bob.name)

    indicator = bob.page.locator("#typing")
    await expect(indicator).to_be_hidden()
    box = ann.page.locator("#composer textarea")
    await box.press_sequentially("hello there, how are you", delay=180)  # ~4.3 s
    await expect(indicator).to_have_text(f"{ann.name} is typing…")
    await expect(indicator).to_be_visible()
    await box.press("Enter")
    await expect(indicator).to_be_hidden()
    await expect(bubble(bob, "hello there, how are you")).to_be_visible()
    trues = [f for f in frames if f["state"] is True]
    assert all(f["to"] == bob.name for f in frames), frames
    # Said again while typing goes on (4 s here), but never sooner than 3 s after.
    assert len(trues) >= 2, frames
    assert all(b["at"] - a["at"] >= 2.9 for a, b in itertools.pairwise(trues)), frames
    assert frames[-1]["state"] is False, frames
    assert [f["state"] for f in frames].count(False) == 1, frames

    # A pause: `false` after 3 s without a key, so it goes before the 6 s expiry.
    frames.clear()
    await box.press_sequentially("one more", delay=50)
    await expect(indicator).to_be_visible()
    await expect(indicator).to_be_hidden(timeout=5_500)
    # The page said `false` itself, about 3 s after the last key.
    assert [f["state"] for f in frames] == [True, False], frames
    assert 2.5 <= frames[1]["at"] - frames[0]["at"] <= 5, frames

    # Leaving the box stops it at once.
    await box.press_sequentially(" and more", delay=20)
    await expect(indicator).to_be_visible()
    await ann.page.locator("#thread-title").click()
    await expect(indicator).to_be_hidden(timeout=2_000)
    # Clearing the text is not typing either.
    await box.press_sequentially("x")
    await expect(indicator).to_be_visible()
    await box.fill("")  # an `input` event with no text
    await expect(indicator).to_be_hidden(timeout=2_000)
    ann.assert_clean()
    bob.assert_clean()


async def test_read_receipts_off_keeps_ticks_at_delivered(
    server: RunningServer, browser: Browser
) -> None:
    """Bob turns read receipts off in the settings: ann's ticks stop at delivered when
    he reads; turned on again, his next read shows."""
    http = Http(server.url)
    ann = await person(browser, server.url, unique_name("ann"))
    bob = await person(browser, server.url, unique_name("bob"))
    toggle = bob.page.locator("#read-receipts")
    await bob.page.locator("#settings summary").click()
    await expect(toggle).to_be_enabled()
    await expect(toggle).to_be_checked()
    await toggle.uncheck()
    await expect(toggle).not_to_be_checked()
    await wait_for_setting(http, await bob.token(), False)
    await expect(toggle).to_be_enabled()

    await ann.open_chat(bob.name)
    await ann.send("private read?")
    first = ann.bubbles("private read?", mine=True)
    await expect(first).to_have_attribute("data-status", "delivered")
    await bob.conversation(ann.name).click()
    await expect(bob.bubbles("private read?", mine=False)).to_have_attribute("data-status", "read")
    await expect(bob.unread(ann.name)).to_have_count(0)
    await ann.page.wait_for_timeout(1500)
    await expect(first).to_have_attribute("data-status", "delivered")
    await expect(first.locator(".tick")).not_to_have_css("color", READ_BLUE)

    # The setting is the server's: a reload shows it off.
    await bob.page.reload()
    await bob.connected()
    await bob.page.locator("#settings summary").click()
    await expect(toggle).to_be_enabled()
    await expect(toggle).not_to_be_checked()
    await expect(first).to_have_attribute("data-status", "delivered")

    # On again: a new read shows; the private one stays delivered (3.8).
    await toggle.check()
    await wait_for_setting(http, await bob.token(), True)
    await expect(toggle).to_be_enabled()
    await ann.send("and now?")
    second = ann.bubbles("and now?", mine=True)
    await expect(second).to_have_attribute("data-status", "read")
    await expect(second.locator(".tick")).to_have_css("color", READ_BLUE)
    await expect(first).to_have_attribute("data-status", "delivered")
    ann.assert_clean()
    bob.assert_clean()


async def test_offline_device_shows_the_current_state(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """A device offline (network off, then page closed) while messages are edited,
    deleted and reacted to shows each one as it is now when it comes back; so does a
    new device of the same user."""
    carl = await http.account("carl")
    ann, bob = await pair(server, browser)
    for text in ("first draft", "to be deleted", "react to me", "edit me later"):
        await ann.send(text)
    await expect(bob.page.locator("#messages .message")).to_have_count(4)

    # Bob looks at another conversation and loses the network; ann edits, deletes and
    # reacts meanwhile. Her thread is not loaded again when he is back: what changes
    # it is the stream he missed.
    await bob.open_chat(carl.username)
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#banner")).to_be_visible()
    await edit(ann, "first draft", "final text")
    await expect(bubble(ann, "final text")).to_be_visible()
    await choose(ann, bubble(ann, "to be deleted"), "delete-everyone")
    await expect(tombstones(ann)).to_have_count(1)
    await react(ann, bubble(ann, "react to me"), "😂")
    await expect(reaction(bubble(ann, "react to me"), "😂")).to_have_text("😂1")
    await edit(ann, "edit me later", "edit me later, again")
    await expect(bubble(ann, "edit me later, again")).to_be_visible()

    await bob.context.set_offline(False)
    await expect(bob.page.locator("#banner")).to_be_hidden()
    preview = bob.conversation(ann.name).locator(".preview")
    await expect(preview).to_have_text("edit me later, again")
    await bob.conversation(ann.name).click()
    await expect(bubble(bob, "final text").locator(".edited")).to_be_visible()
    await expect(bubble(bob, "first draft")).to_have_count(0)
    await expect(tombstones(bob)).to_have_count(1)
    await expect(bob.page.locator("#messages").get_by_text("to be deleted")).to_have_count(0)
    await expect(reaction(bubble(bob, "react to me"), "😂")).to_have_text("😂1")
    await expect(bob.page.locator("#messages .message")).to_have_count(4)

    # Bob's page is closed; more changes; the reopened page resumes from its cursor.
    url = bob.page.url
    await bob.page.close()
    await edit(ann, "edit me later, again", "edited while closed")
    await expect(bubble(ann, "edited while closed")).to_be_visible()
    await choose(ann, bubble(ann, "react to me"), "delete-everyone")
    await expect(tombstones(ann)).to_have_count(2)
    await bob.open_page(url)
    await bob.connected()
    for who in (bob, ann):
        await expect(who.page.locator("#messages .message")).to_have_count(4)
        await expect(bubble(who, "edited while closed").locator(".edited")).to_be_visible()
        await expect(tombstones(who)).to_have_count(2)
        await expect(who.page.locator("#messages .reaction")).to_have_count(0)
        assert await who.page.locator("#messages").get_by_text("edit me later").count() == 0

    # A new device of bob's (no cursor, history only) agrees.
    phone = await person(browser, server.url, bob.name, register=False)
    await phone.conversation(ann.name).click()
    await expect(phone.page.locator("#messages .message")).to_have_count(4)
    bodies = phone.page.locator("#messages .message .body")
    assert await bodies.all_text_contents() == [
        "final text",
        TOMBSTONE,
        TOMBSTONE,
        "edited while closed",
    ]
    ann.assert_clean()
    bob.assert_clean()
    phone.assert_clean()
