"""Search in the web client (the `search` event), in a real browser: the box finds
messages across accents, case and scripts without spaces, shows each snippet as text
with its hits in <mark> elements (a body's markup never runs), pages with "More", says
why a query is refused, and a click on a result opens its conversation at the message,
loading the history page around it first when it is older than what the page holds;
"Only this conversation" limits it to the open conversation. The fixtures and the
`Person` driver are tests/test_web.py's (same skip rules, SQLite only).
"""

from __future__ import annotations

import re

from playwright.async_api import Browser, Locator, expect

from tests.support import Device, Http, RunningServer
from tests.test_web import (  # noqa: F401  (fixtures pytest finds by their names)
    Person,
    backend,
    browser_fixture,
    built_client,
    chromium_binary,
    person,
)

HOSTILE = '<img src=x onerror="window.__pwned = 1"> lunch <script>window.__pwned = 2</script>'


async def search(who: Person, query: str) -> None:
    box = who.page.locator("#search-input")
    await box.fill(query)
    await box.press("Enter")


FLASHED = re.compile(r"\bflash\b")


def results(who: Person) -> Locator:
    return who.page.locator("#search-list .search-result")


async def seed(device: Device, to: str, bodies: list[str]) -> list[int]:
    """Sends `bodies` in order from `device`'s user to `to`; their ids."""
    ids = []
    for n, body in enumerate(bodies):
        answer = await device.send(to, body, f"seed-{n}-{len(body)}")
        assert answer["ok"], answer
        ids.append(int(answer["message"]["id"]))
    return ids


async def delivered_elsewhere(url: str, token: str, count: int) -> None:
    """Another device of the reader takes the backlog, so the page sees these messages
    only through history (or search)."""
    phone = await Device(url).connect(token)
    try:
        await phone.wait_synced()
        ids = [m["id"] for m in phone.messages()]
        assert len(ids) == count
        for start in range(0, count, 500):
            answer = await phone.call("delivered", {"ids": ids[start : start + 500]})
            assert answer["ok"], answer
    finally:
        await phone.disconnect()


async def test_search_matches_and_shows_snippets_as_text(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """Accents and case are ignored, a Japanese phrase is found inside a sentence, both
    directions are found (newest first), hits are <mark> text, markup stays text and
    runs nothing, a query that is too long is refused with the reason, and a result
    opens its conversation at the message."""
    bob_account = await http.account("bob")
    ann = await person(browser, server.url, (await http.account("ann")).username, register=False)
    bob = await Device(server.url).connect(bob_account.token)
    try:
        await seed(
            bob,
            ann.name,
            ["Rendez-vous au Café à midi", "明日は東京で会いましょう", HOSTILE, "nothing here"],
        )
        await ann.open_chat(bob_account.username)
        await ann.send("cafe latte, please")
        await expect(ann.page.locator("#messages .message")).to_have_count(5)
    finally:
        await bob.disconnect()

    await search(ann, "CAFE")
    await expect(results(ann)).to_have_count(2)
    await expect(ann.page.locator("#conversations")).to_be_hidden()
    marks = ann.page.locator("#search-list mark")
    await expect(marks).to_have_text(["cafe", "Café"])  # newest first, as written
    first, second = results(ann).nth(0), results(ann).nth(1)
    await expect(first.locator(".snippet")).to_have_text("You: cafe latte, please")
    await expect(first.locator(".peer")).to_have_text(bob_account.username)
    await expect(second.locator(".snippet")).to_have_text("Rendez-vous au Café à midi")

    await search(ann, "東京で会い")
    await expect(results(ann)).to_have_count(1)
    await expect(marks).to_have_text(["東京で会い"])
    await expect(results(ann).locator(".snippet")).to_have_text("明日は東京で会いましょう")

    await search(ann, "lunch")
    await expect(results(ann)).to_have_count(1)
    await expect(marks).to_have_text(["lunch"])
    snippet = results(ann).locator(".snippet")
    await expect(snippet).to_contain_text('<img src=x onerror="window.__pwned = 1">')
    await expect(snippet).to_contain_text("<script>window.__pwned = 2</script>")
    for tag in ("img", "script"):
        assert await ann.page.locator(f"#search-results {tag}").count() == 0, tag
    await ann.page.wait_for_timeout(300)  # an onerror would have fired by now
    assert await ann.page.evaluate("() => window.__pwned") is None

    await search(ann, "nothing-matches-this")
    await expect(ann.page.locator("#search-status")).to_have_text("No messages found.")
    await search(ann, "x" * 300)
    await expect(ann.page.locator("#search-error")).to_contain_text("too long")
    await expect(results(ann)).to_have_count(0)

    # A result opens its conversation at the message, flashed.
    await search(ann, "café")
    await expect(results(ann)).to_have_count(2)
    await results(ann).nth(1).click()
    target = ann.page.locator("#messages .message").filter(has_text="Rendez-vous au Café à midi")
    await expect(target).to_be_in_viewport()
    await expect(target).to_have_class(FLASHED)

    # Escape in the box ends the search: the conversations are back.
    await ann.page.locator("#search-input").press("Escape")
    await expect(ann.page.locator("#search-results")).to_be_hidden()
    await expect(ann.conversation(bob_account.username)).to_be_visible()
    ann.assert_clean()


async def test_search_pages_and_jumps_to_an_old_message(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """120 messages, the conversation open on the newest 50: "More" pages the results
    with `before`; a click on a result far older than the page loads the history page
    ending with it, scrolls to it, and the messages between fill in as they come into
    view, each once and in order."""
    ann_account, bob_account = await http.account("ann"), await http.account("bob")
    bob = await Device(server.url).connect(bob_account.token)
    bodies = [f"note {n}" for n in range(1, 121)]
    bodies[2] = "note 3 with the needle"
    try:
        await seed(bob, ann_account.username, bodies)
    finally:
        await bob.disconnect()
    await delivered_elsewhere(server.url, ann_account.token, 120)

    ann = await person(browser, server.url, ann_account.username, register=False)
    await ann.open_chat(bob_account.username)
    shown = ann.page.locator("#messages .message .body")
    await expect(shown).to_have_count(50)
    await expect(shown.first).to_have_text("note 71")

    await search(ann, "note")
    await expect(results(ann)).to_have_count(20)
    await expect(ann.page.locator("#search-status")).to_have_text("20+ messages found")
    await expect(results(ann).first.locator(".snippet")).to_have_text("note 120")
    await ann.page.locator("#search-more").click()
    await expect(results(ann)).to_have_count(40)
    await expect(results(ann).nth(20).locator(".snippet")).to_have_text("note 100")
    ids = [int(i) for i in await results(ann).evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 40, ids

    await search(ann, "needle")
    await expect(results(ann)).to_have_count(1)
    needle = ann.page.locator("#messages .message").filter(has_text="note 3 with the needle")
    assert await needle.count() == 0  # not loaded: older than the page held
    await results(ann).click()
    await expect(needle).to_be_in_viewport()
    await expect(needle).to_have_class(FLASHED)
    await expect(shown.first).to_have_text("note 1")  # the page ending with it: 1 to 3

    # The gap between it and note 71 fills as it comes into view.
    gap = ann.page.locator("#messages .gap-row")
    for _ in range(20):
        if await gap.count() == 0:
            break
        await gap.scroll_into_view_if_needed()
        await ann.page.wait_for_timeout(200)
    await expect(gap).to_have_count(0)
    await expect(shown).to_have_count(120)
    assert await shown.all_text_contents() == bodies
    ann.assert_clean()


async def test_only_this_conversation_narrows_the_search(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """Two conversations hold the same word: the box "Only this conversation" (shown
    only while one is open, off by default, a labelled checkbox) narrows the results to
    the open one and says so, follows the open conversation, and unticked (or with no
    conversation open) searches everywhere again."""
    bob_account, carol_account = await http.account("bob"), await http.account("carol")
    bob_name, carol_name = bob_account.username, carol_account.username
    ann = await person(browser, server.url, (await http.account("ann")).username, register=False)
    bob = await Device(server.url).connect(bob_account.token)
    carol = await Device(server.url).connect(carol_account.token)
    try:
        await seed(bob, ann.name, ["picnic on Saturday?", "bring the picnic blanket"])
        await seed(carol, ann.name, ["the picnic is cancelled"])
    finally:
        await bob.disconnect()
        await carol.disconnect()
    await expect(ann.conversation(carol_name)).to_be_visible()

    only = ann.page.get_by_label("Only this conversation")
    await expect(only).to_be_hidden()  # nothing open: nothing to limit to
    await ann.open_chat(bob_name)
    await expect(ann.page.locator("#messages .message")).to_have_count(2)
    await expect(only).to_be_visible()
    await expect(only).not_to_be_checked()
    assert await only.get_attribute("type") == "checkbox"

    status = ann.page.locator("#search-status")
    peers = results(ann).locator(".peer")
    await search(ann, "picnic")
    await expect(results(ann)).to_have_count(3)
    await expect(status).to_have_text("3 messages found")
    await expect(peers).to_have_text([carol_name, bob_name, bob_name])

    await only.check()
    await expect(status).to_have_text(f"2 messages found in {bob_name}")
    await expect(peers).to_have_text([bob_name, bob_name])
    await expect(results(ann).locator(".snippet")).to_have_text(
        ["bring the picnic blanket", "picnic on Saturday?"]
    )
    # A query typed now stays in the conversation too.
    await search(ann, "cancelled")
    await expect(status).to_have_text(f"No messages found in {bob_name}.")
    await expect(results(ann)).to_have_count(0)

    # Another conversation opened: the limited search follows it.
    await ann.open_chat(carol_name)
    await expect(status).to_have_text(f"1 message found in {carol_name}")
    await expect(peers).to_have_text([carol_name])

    await only.uncheck()
    await search(ann, "picnic")
    await expect(status).to_have_text("3 messages found")
    await only.check()
    await expect(status).to_have_text(f"1 message found in {carol_name}")

    # The conversation closed (its back button shows on phones only): the box goes
    # (unticked) and the search is everywhere again.
    await ann.page.locator(".back").evaluate("el => el.click()")
    await expect(only).to_be_hidden()
    await expect(status).to_have_text("3 messages found")
    await ann.open_chat(bob_name)
    await expect(only).not_to_be_checked()
    ann.assert_clean()
