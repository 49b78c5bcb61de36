"""The account page of the web client, in a real browser: the session list (this
device marked, another one ended from here), a password change that logs out every
other session while this one goes on, "Download my data" (the export, saved as a JSON
file), and deleting the account, after which the page is back at the login and the
other person's page marks the conversation "(deleted account)" with its composer off.
The fixtures and the `Person` driver are tests/test_web.py's (same skip rules, SQLite
only).
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser, Locator, expect

from tests.support import PASSWORD, Http, RunningServer
from tests.test_web import (  # noqa: F401  (fixtures pytest finds by their names)
    Person,
    backend,
    browser_fixture,
    built_client,
    chromium_binary,
    person,
)

NEW_PASSWORD = "a brand new long secret"


async def open_account(who: Person) -> Locator:
    """Settings, then "Account and sessions…": the dialog."""
    settings = who.page.locator("#settings")
    if await settings.get_attribute("open") is None:
        await settings.locator("summary").click()
    await who.page.locator("#account-open").click()
    dialog = who.page.locator("#account")
    await expect(dialog).to_be_visible()
    return dialog


def sessions(who: Person) -> Locator:
    return who.page.locator("#sessions li.session")


async def at_login(who: Person, notice: str) -> None:
    await expect(who.page.locator("#login-form")).to_be_visible()
    await expect(who.page.locator("#login-form .form-error")).to_have_text(notice)
    assert await who.storage("session") is None


async def two_devices(server: RunningServer, http: Http, browser: Browser) -> tuple[Person, Person]:
    """One account logged in in two browser contexts (two sessions)."""
    name = (await http.account("ann")).username
    here = await person(browser, server.url, name, register=False)
    there = await person(browser, server.url, name, register=False)
    return here, there


async def test_sessions_are_listed_and_another_is_ended(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """The list shows this device and the other (browser, address, times); ending the
    other logs that browser out, and this one stays."""
    here, there = await two_devices(server, http, browser)
    await open_account(here)
    # The account made over HTTP has a third session; it is listed too.
    await expect(sessions(here)).to_have_count(3)
    current = here.page.locator("#sessions li.session.current")
    await expect(current).to_have_count(1)
    await expect(current.locator(".session-current")).to_have_text("This device")
    await expect(current.locator(".session-agent")).to_contain_text("Chrome")
    await expect(current.locator(".session-address")).to_have_text("127.0.0.1")
    await expect(current.locator(".session-created")).to_contain_text("Logged in")
    await expect(current.locator(".session-used")).to_contain_text("Last used")
    assert await current.locator("button").count() == 0  # this one ends with "Log out"

    # The newest other session is the second browser's (the list is newest first).
    other_token = await there.token()
    others = here.page.locator("#sessions li.session:not(.current)")
    await expect(others).to_have_count(2)
    await others.first.locator("button[data-action=end]").click()
    await expect(sessions(here)).to_have_count(2)
    await at_login(there, "Your session has ended. Please log in again.")
    status, _ = await Http(server.url).request("GET", "/api/v1/sessions", token=other_token)
    assert status == 401
    await expect(here.page.locator("#banner")).to_be_hidden()
    assert await here.storage("session") is not None
    here.assert_clean()
    there.assert_clean()


async def test_password_change_logs_out_other_sessions(
    server: RunningServer, http: Http, browser: Browser
) -> None:
    """A wrong current password and two different new ones are refused with the
    reason; the change itself logs the other browser out, and this one goes on."""
    here, there = await two_devices(server, http, browser)
    bob = await http.account("bob")
    dialog = await open_account(here)
    form = dialog.locator("#password-form")

    async def change(current: str, new: str, repeat: str) -> None:
        await form.locator("input[name=current]").fill(current)
        await form.locator("input[name=new]").fill(new)
        await form.locator("input[name=repeat]").fill(repeat)
        await form.locator("button[type=submit]").click()

    await change("not my password", NEW_PASSWORD, NEW_PASSWORD)
    await expect(dialog.locator("#password-error")).to_have_text("The current password is wrong.")
    await change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!")
    await expect(dialog.locator("#password-error")).to_contain_text("differ")
    status, _ = await http.login(here.name)  # neither attempt changed anything
    assert status == 201

    await change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    await expect(dialog.locator("#password-done")).to_contain_text("Password changed")
    await expect(dialog.locator("#password-error")).to_have_text("")
    await at_login(there, "Your session has ended. Please log in again.")
    await expect(sessions(here)).to_have_count(1)
    assert (await http.login(here.name))[0] == 401
    assert (await http.login(here.name, NEW_PASSWORD))[0] == 201

    # This page's session goes on: it still sends, over its socket.
    await dialog.locator(".dialog-close").click()
    await expect(dialog).to_be_hidden()
    await here.open_chat(bob.username)
    await here.send("still here")
    sent = here.bubbles("still here", mine=True)
    await expect(sent).to_have_attribute("data-status", "sent")
    await expect(here.page.locator("#banner")).to_be_hidden()
    here.assert_clean()


async def test_export_then_delete_the_account(
    server: RunningServer, http: Http, browser: Browser, tmp_path: Path
) -> None:
    """The "Download my data" button saves the export (JSON, with a message sent); the deletion
    needs the confirmation and the right password, then the page is back at the
    login, and the other person's page marks the conversation and turns its composer
    off."""
    ann = await person(browser, server.url, (await http.account("ann")).username, register=False)
    bob = await person(browser, server.url, (await http.account("bob")).username, register=False)
    await ann.open_chat(bob.name)
    await ann.send("export me, please")
    await expect(ann.bubbles("export me, please", mine=True)).to_have_attribute(
        "data-status", "delivered"
    )

    dialog = await open_account(ann)
    async with ann.page.expect_download() as started:
        await dialog.locator("#export").click()
    download = await started.value
    assert download.suggested_filename.endswith(".json"), download.suggested_filename
    saved = tmp_path / "export.json"
    await download.save_as(saved)
    data = json.loads(saved.read_text("utf-8"))
    assert data["user"]["username"] == ann.name, data["user"]
    assert [m["body"] for m in data["messages"]] == ["export me, please"], data["messages"]
    await expect(dialog.locator("#export-status")).to_have_text("Downloaded.")

    form = dialog.locator("#delete-form")
    await form.locator("input[name=password]").fill(PASSWORD)
    await form.locator("button[type=submit]").click()  # not confirmed: nothing happens
    await ann.page.wait_for_timeout(500)
    await expect(dialog).to_be_visible()
    assert (await http.login(ann.name))[0] == 201

    await form.locator("input[name=confirm]").check()
    await form.locator("input[name=password]").fill("not my password")
    await form.locator("button[type=submit]").click()
    await expect(dialog.locator("#delete-error")).to_have_text(
        "Wrong password: the account was not deleted."
    )
    await form.locator("input[name=password]").fill(PASSWORD)
    await form.locator("button[type=submit]").click()
    await at_login(ann, "Your account was deleted.")
    assert await ann.storage(f"{ann.name}:cursor") is None
    assert (await http.login(ann.name))[0] == 401

    # Bob keeps the conversation, marked; he can read it but not write to it.
    await bob.page.reload()
    await bob.connected()
    row = bob.conversation(ann.name)
    await expect(row.locator(".removed-mark")).to_have_text("(deleted account)")
    await row.click()
    await expect(bob.page.locator("#thread-removed")).to_be_visible()
    await expect(bob.bubbles("export me, please", mine=False)).to_be_visible()
    await expect(bob.page.locator("#composer textarea")).to_be_disabled()
    await expect(bob.page.locator("#composer button[type=submit]")).to_be_disabled()
    await expect(bob.page.locator("#removed-note")).to_be_visible()
    ann.assert_clean()
    bob.assert_clean()
