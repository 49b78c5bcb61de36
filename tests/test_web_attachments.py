"""Attachments in the web client (docs/attachments.md, docs/web.md), in a real browser:
files chosen by the attach button or dropped on the conversation, uploaded with their
progress shown, sent with the text; images shown to the other user as thumbnails that
open at full size, other files downloaded with their name and bytes; a file chosen
offline goes out once when the page is back, and so does one whose upload was cut off
by a reload. The fixtures and the `Person` driver are tests/test_web.py's (same skip
rules, SQLite only), and `pair` is tests/test_web_lifecycle.py's.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image
from playwright.async_api import Browser, Route, expect

from tests.support import Http, RunningServer, unique_name
from tests.test_web import (  # noqa: F401  (fixtures pytest finds by their names)
    Person,
    backend,
    browser_fixture,
    built_client,
    chromium_binary,
    history,
    person,
)
from tests.test_web_lifecycle import pair

MARKUP_NAME = "<img src=x onerror=alert(1)>.txt"
# Files the page keeps for its outbox (web/src/files.js): how many there are now.
COUNT_FILES = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("messenger-files");
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const db = open.result;
    if (!db.objectStoreNames.contains("files")) return resolve(0);
    const count = db.transaction("files").objectStore("files").count();
    count.onsuccess = () => resolve(count.result);
    count.onerror = () => reject(count.error);
  };
})"""


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def payload(name: str, mime: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


async def attach_by_button(who: Person, *files: dict[str, Any]) -> None:
    """The composer's 📎 button, and the browser's file chooser it opens."""
    async with who.page.expect_file_chooser() as chooser:
        await who.page.locator("#attach").click()
    await (await chooser.value).set_files(list(files))  # type: ignore[arg-type]


async def drop_files(who: Person, *files: tuple[str, str, bytes]) -> None:
    """Drags files (name, type, bytes) over the conversation and drops them there."""
    transfer = await who.page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, type, data] of files) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type }));
            }
            return transfer;
        }""",
        [[name, mime, base64.b64encode(data).decode()] for name, mime, data in files],
    )
    zone = who.page.locator(".thread")
    await zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    await zone.dispatch_event("dragover", {"dataTransfer": transfer})
    await expect(zone).to_have_class("thread dropping")
    await zone.dispatch_event("drop", {"dataTransfer": transfer})
    await expect(zone).to_have_class("thread")


async def send_text(who: Person, text: str) -> None:
    box = who.page.locator("#composer textarea")
    await box.fill(text)
    await box.press("Enter")


async def fetch(url: str, token: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            url + path, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.read()


async def released(who: Person, url: str) -> bool:
    """Whether an object URL was revoked (a data: URL is freed with its element)."""
    if not url.startswith("blob:"):
        return True
    return bool(
        await who.page.evaluate(
            "url => fetch(url).then(() => false, () => true)",
            url,
        )
    )


async def kept_files(who: Person, count: int) -> None:
    """Waits until the page's IndexedDB holds `count` outbox files (writes are async)."""
    for _ in range(50):
        if await who.page.evaluate(COUNT_FILES) == count:
            return
        await who.page.wait_for_timeout(100)
    assert await who.page.evaluate(COUNT_FILES) == count


def only_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(messages) == 1, messages
    return messages[0]


async def test_image_by_button_thumbnail_and_full_size(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """Ann attaches a photo with the button and sends it with text; bob sees its
    thumbnail (fetched with his token), opens the full size, and closes it again."""
    ann, bob = await pair(server, browser)
    photo = png(640, 480)
    await attach_by_button(ann, payload("holiday.png", "image/png", photo))
    tray = ann.page.locator("#tray .tray-file")
    await expect(tray).to_have_count(1)
    await expect(tray.locator(".file-name")).to_have_text("holiday.png")
    await send_text(ann, "look at this")
    await expect(ann.page.locator("#tray")).to_be_hidden()

    mine = ann.bubbles("look at this", mine=True)
    await expect(mine).to_have_attribute("data-status", "read")
    await expect(mine.locator(".attachment-image img")).to_have_js_property("naturalWidth", 320)

    theirs = bob.bubbles("look at this", mine=False)
    image = theirs.locator(".attachment-image")
    thumb = image.locator("img")
    await expect(thumb).to_have_attribute("alt", "holiday.png")
    # The thumbnail (320 a side at most), drawn from bytes the page fetched itself.
    await expect(thumb).to_have_js_property("naturalWidth", 320)
    await expect(thumb).to_have_js_property("naturalHeight", 240)
    thumb_url = str(await thumb.get_attribute("src"))
    assert thumb_url.startswith(("blob:", "data:")), thumb_url

    await image.click()
    viewer = bob.page.locator("#viewer")
    await expect(viewer).to_be_visible()
    await expect(viewer.locator(".viewer-name")).to_contain_text("holiday.png")
    full = viewer.locator("img.viewer-image")
    await expect(full).to_have_js_property("naturalWidth", 640)
    await expect(full).to_have_js_property("naturalHeight", 480)
    full_url = str(await full.get_attribute("src"))
    assert full_url.startswith(("blob:", "data:")), full_url
    await bob.page.keyboard.press("Escape")
    await expect(viewer).to_be_hidden()
    await expect(full).not_to_have_attribute("src", full_url)
    assert await released(bob, full_url)

    # What the server has: one message with one attachment, the bytes as sent.
    stored = only_message(await history(http, await bob.token(), ann.name))
    assert stored["body"] == "look at this"
    (attachment,) = stored["attachments"]
    assert attachment["name"] == "holiday.png"
    assert (attachment["width"], attachment["height"], attachment["thumbnail"]) == (640, 480, True)
    status, data = await fetch(
        server.url, await bob.token(), f"/api/v1/attachments/{attachment['id']}"
    )
    assert status == 200 and data == photo

    # Leaving the conversation takes the thumbnail off the screen, and its URL with it.
    await bob.open_chat(unique_name("carol"))
    await expect(thumb).to_have_count(0)
    assert await released(bob, thumb_url)
    ann.assert_clean()
    bob.assert_clean()


async def test_file_dropped_with_progress_downloads_by_name(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """Ann drops two files and sends them without text: a 3 MB one, whose upload's
    progress shows while it goes out (slowed down in Chromium), and one named with
    markup. Bob sees both names as text, and downloads the first with its name and its
    bytes (Chromium itself turns < and > into _ in a file name on disk)."""
    ann, bob = await pair(server, browser)
    data = os.urandom(3 * 1024 * 1024)
    name = "Q3 report (final) é.bin"
    await drop_files(
        ann, (name, "application/octet-stream", data), (MARKUP_NAME, "text/plain", b"<b>hi</b>")
    )
    await expect(ann.page.locator("#tray .file-name")).to_have_text([name, MARKUP_NAME])

    cdp = await ann.context.new_cdp_session(ann.page)
    await cdp.send("Network.enable")
    conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
    await cdp.send(
        "Network.emulateNetworkConditions", conditions | {"uploadThroughput": 1024 * 1024}
    )
    await ann.page.locator("#composer button[type=submit]").click()  # no text: files only
    pending = ann.page.locator("#messages .message.mine .attachment-pending")
    await expect(pending.locator(".file-name")).to_have_text([name, MARKUP_NAME])
    # Part of it went out, not all of it: the bar and the percentage follow the upload.
    await ann.page.wait_for_function(
        """() => {
            const bar = document.querySelector("#messages .attachment-pending progress");
            return bar !== null && bar.value > 0.1 && bar.value < 0.9;
        }""",
        timeout=20_000,
    )
    await expect(pending.first.locator(".upload-state")).to_have_text(re.compile(r"^\d+%$"))
    await expect(pending.last.locator(".upload-state")).to_have_text("Waiting to upload")
    await cdp.send("Network.emulateNetworkConditions", conditions | {"uploadThroughput": -1})

    theirs = bob.page.locator("#messages .message.theirs")
    buttons = theirs.locator(".attachment-file")
    await expect(buttons.locator(".file-name")).to_have_text([name, MARKUP_NAME], timeout=20_000)
    await expect(buttons.locator(".file-size")).to_have_text(["3.0 MB", "9 B"])
    await expect(theirs.locator(".body")).to_be_hidden()
    await expect(bob.conversation(ann.name).locator(".preview")).to_have_text("📎 2 files")
    assert await bob.page.locator("#messages img").count() == 0
    async with bob.page.expect_download() as started:
        await buttons.first.click()
    download = await started.value
    assert download.suggested_filename == name
    saved = Path(str(await download.path()))
    assert await asyncio.to_thread(saved.read_bytes) == data

    stored = only_message(await history(http, await bob.token(), ann.name))
    assert stored["body"] == ""
    assert [a["name"] for a in stored["attachments"]] == [name, MARKUP_NAME]
    ann.assert_clean()
    bob.assert_clean()


async def test_file_chosen_offline_goes_out_on_reconnect(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """A photo chosen offline waits with its message (the file in IndexedDB, the entry
    in the outbox); back online it is uploaded, then sent: one message, one attachment."""
    ann, bob = await pair(server, browser)
    await ann.context.set_offline(True)
    await expect(ann.page.locator("#banner")).to_contain_text("offline")
    photo = png(300, 200, (20, 120, 40))
    await attach_by_button(ann, payload("away.png", "image/png", photo))
    await send_text(ann, "from the train")
    mine = ann.bubbles("from the train", mine=True)
    await expect(mine).to_have_attribute("data-status", "pending")
    await expect(mine.locator(".attachment-pending .upload-state")).to_have_text(
        "Waiting to upload"
    )
    (entry,) = await ann.storage(f"{ann.name}:outbox")
    assert [(a["name"], a["size"], a["id"]) for a in entry["attachments"]] == [
        ("away.png", len(photo), None)
    ]
    await kept_files(ann, 1)
    await ann.page.wait_for_timeout(1000)
    assert await history(http, await bob.token(), ann.name) == []

    await ann.context.set_offline(False)
    await expect(mine).to_have_attribute("data-status", "read")
    await expect(mine.locator(".attachment-image img")).to_have_js_property("naturalWidth", 300)
    theirs = bob.bubbles("from the train", mine=False)
    await expect(theirs.locator(".attachment-image img")).to_have_js_property("naturalWidth", 300)
    assert await ann.storage(f"{ann.name}:outbox") is None
    await kept_files(ann, 0)

    stored = only_message(await history(http, await bob.token(), ann.name))
    assert stored["client_id"] == entry["client_id"]
    (attachment,) = stored["attachments"]
    status, data = await fetch(
        server.url, await bob.token(), f"/api/v1/attachments/{attachment['id']}"
    )
    assert status == 200 and data == photo
    ann.assert_clean()
    bob.assert_clean()


async def test_upload_cut_off_is_made_again_after_reload(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """The server stores an upload but its answer never reaches the page; the page is
    reloaded. The file (IndexedDB) is uploaded again, and the message is sent once."""
    bob_account = await http.account("bob")
    ann = await person(browser, server.url, unique_name("ann"))
    await ann.open_chat(bob_account.username)
    uploads: list[int] = []

    async def lose_answer(route: Route) -> None:
        response = await route.fetch()  # the server stores it...
        uploads.append(response.status)
        await route.abort("connectionreset")  # ...and the page hears nothing

    await ann.page.route("**/api/v1/attachments?*", lose_answer)
    report = b"quarterly numbers\n" * 1000
    await attach_by_button(ann, payload("report.csv", "text/csv", report))
    await send_text(ann, "the report")
    for _ in range(100):
        if uploads:
            break
        await ann.page.wait_for_timeout(100)
    assert uploads == [201]
    mine = ann.bubbles("the report", mine=True)
    await expect(mine).to_have_attribute("data-status", "pending")
    await ann.page.unroute("**/api/v1/attachments?*")

    await ann.page.reload()
    await ann.connected()
    await expect(mine).to_have_attribute("data-status", "sent")
    await expect(mine.locator(".attachment-file .file-name")).to_have_text("report.csv")
    await expect(ann.page.locator("#messages .message")).to_have_count(1)
    assert await ann.storage(f"{ann.name}:outbox") is None
    await kept_files(ann, 0)

    stored = only_message(await history(http, bob_account.token, ann.name))
    assert stored["body"] == "the report"
    (attachment,) = stored["attachments"]
    assert attachment["name"] == "report.csv" and attachment["size"] == len(report)
    status, data = await fetch(
        server.url, bob_account.token, f"/api/v1/attachments/{attachment['id']}"
    )
    assert status == 200 and data == report
    ann.assert_clean()


async def test_deleted_for_everyone_shows_no_attachments(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """A photo's message deleted for everyone: both pages show the tombstone and no
    file, and the file is gone from the server."""
    ann, bob = await pair(server, browser)
    await attach_by_button(ann, payload("gone.png", "image/png", png(64, 64)))
    await send_text(ann, "soon gone")
    theirs = bob.bubbles("soon gone", mine=False)
    await expect(theirs.locator(".attachment-image img")).to_have_js_property("naturalWidth", 64)
    attachment_id = await theirs.locator(".attachment-image").get_attribute("data-attachment")

    mine = ann.bubbles("soon gone", mine=True)
    await mine.hover()
    await mine.locator(".menu-button").click()
    await ann.page.locator(".message-menu [data-action=delete-everyone]").click()
    for who in (ann, bob):
        tomb = who.page.locator("#messages .message.deleted")
        await expect(tomb.locator(".body")).to_have_text("This message was deleted")
        await expect(tomb.locator(".attachments")).to_be_hidden()
        await expect(who.page.locator("#messages .attachment-image")).to_have_count(0)
    status, _ = await fetch(server.url, await bob.token(), f"/api/v1/attachments/{attachment_id}")
    assert status == 404
    ann.assert_clean()
    bob.assert_clean()
