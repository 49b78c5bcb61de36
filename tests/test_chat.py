"""The terminal chat driven as a user would: a `messenger chat` process with its
standard input and output on pipes, against a real server, chatting with a raw device.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messenger.chat import TypingShown, free_path, human_size, render
from messenger.client import Attachment, Message, Typing, upload
from messenger.config import Settings
from tests.support import (
    PASSWORD,
    Http,
    RunningServer,
    Servers,
    accounts,
    connect_synced,
    port_of,
)
from tests.test_attachments import fetch, png
from tests.test_client import eventually, history_rows


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """Attachments kept in the test's directory (with PostgreSQL they would default to
    ./messenger-blobs)."""
    return dataclasses.replace(settings, blob_dir=str(tmp_path / "blobs"))


class Terminal:
    """A `messenger chat` subprocess: type lines, wait for output lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._seen = 0

    @classmethod
    async def start(cls, url: str, user: str, state: Path) -> Terminal:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "messenger",
            "chat",
            "--url",
            url,
            "--user",
            user,
            "--state",
            str(state),
            "--password-stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        terminal = cls(process)
        await terminal.type(PASSWORD)
        return terminal

    async def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The next output line (after the last one matched) matching `pattern`."""
        assert self.process.stdout is not None
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                while self._seen < len(self.lines):
                    line = self.lines[self._seen]
                    self._seen += 1
                    if found := regex.search(line):
                        return found
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"chat exited; output: {self.lines}")
                self.lines.append(raw.decode().rstrip("\n"))

    async def quit(self) -> int:
        if self.process.returncode is None:
            await self.type("/quit")
            try:
                async with asyncio.timeout(10):
                    assert self.process.stdout is not None
                    await self.process.stdout.read()
                    return await self.process.wait()
            except TimeoutError:
                self.process.kill()
        return await self.process.wait()


@pytest.fixture
async def terminals() -> AsyncIterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        if terminal.process.returncode is None:
            terminal.process.kill()
            await terminal.process.wait()


async def logged_in(terminals: list[Terminal], url: str, user: str, state: Path) -> Terminal:
    """A chat of `user`'s (killed at the end of the test if still running), once it says
    it is logged in."""
    term = await Terminal.start(url, user, state)
    terminals.append(term)
    await term.expect(r"logged in as " + re.escape(user))
    return term


async def test_chat_with_a_device_shows_messages_and_state_marks(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    bob_device, _ = await connect_synced(server.url, bob)
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    await term.type(f"/open {bob.username}")
    await term.expect(r"talking with " + re.escape(bob.username))

    await term.type("hello bob")
    await term.expect(r"^#1 ✓ stored$")
    await bob_device.wait_for(lambda: bool(bob_device.messages()))
    [message] = bob_device.messages()
    assert (message["from"], message["body"]) == (ann.username, "hello bob")

    assert (await bob_device.call("delivered", {"ids": [message["id"]]}))["updated"] == 1
    await term.expect(r"^#1 ✓✓ delivered$")
    assert (await bob_device.call("read", {"ids": [message["id"]]}))["updated"] == 1
    await term.expect(r"^#1 ✓✓ read$")

    # bob answers: the chat shows it and, the conversation being open, marks it read.
    answer = await bob_device.send(ann.username, "hi ann", "b1")
    await term.expect(re.escape(f"{bob.username}: hi ann"))
    reply_id = answer["message"]["id"]
    await bob_device.wait_for(
        lambda: any(
            r["status"] == "read" and reply_id in r["ids"] for r in bob_device.of("receipt")
        )
    )
    assert await term.quit() == 0
    await bob_device.disconnect()


async def test_chat_needs_an_open_conversation_and_a_good_password(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann = await http.account("ann")
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    await term.type("nobody to hear this")
    await term.expect(r"open a conversation first")
    await term.type("/open nobody@example.com")
    await term.type("hello?")
    await term.expect(r"^#1 ✗ failed: .*\(not_found\)$")
    assert await term.quit() == 0

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "messenger", "chat", "--url", server.url,
        "--user", ann.username, "--password-stdin",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(b"wrong password\n"), 10)
    assert process.returncode == 1
    assert "bad_credentials" in out.decode()


async def test_a_line_typed_while_the_server_is_down_goes_out_when_it_is_back(
    servers: Servers, tmp_path: Path, terminals: list[Terminal]
) -> None:
    server = await servers.start()
    http = Http(server.url)
    ann, bob = await http.account("ann"), await http.account("bob")
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    await term.expect(r"^\* online$")
    await term.type(f"/open {bob.username}")
    await term.expect(r"talking with")

    await servers.stop(server)
    await term.expect(r"^\* offline")
    await term.type("typed while down")
    await term.expect(r"^#1 … queued$")

    server = await servers.start(port_of(server.url))
    await term.expect(r"^#1 ✓ stored$", timeout=15)
    rows = await history_rows(server.url, bob, ann.username)
    assert [r["body"] for r in rows] == ["typed while down"]
    assert await term.quit() == 0


async def test_chat_replies_edits_reacts_deletes_and_shows_typing(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    bob_device, _ = await connect_synced(server.url, bob)
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    await term.type(f"/open {bob.username}")
    await term.expect(r"talking with ")
    b = re.escape(bob.username)

    question = (await bob_device.send(ann.username, "lunch at one?", "q1"))["message"]["id"]
    await term.expect(rf"^#1 {b}: lunch at one\?$")
    await term.type("/reply 1 sure")
    await term.expect(r"^#2 ✓ stored$")
    await bob_device.wait_for(lambda: len(bob_device.messages()) == 2)
    reply = bob_device.messages()[-1]
    assert (reply["body"], reply["reply_to"]["id"]) == ("sure", question)

    await term.type("/edit 2 sure, at one")
    await term.expect(rf"^  > #1 {b}: lunch at one\?$")
    await term.expect(r"^#2 you: sure, at one \(edited\)$")
    assert (await bob_device.call("react", {"id": reply["id"], "emoji": "👍"}))["ok"]
    await term.expect(rf"^#2 you: sure, at one \(edited\) \[👍 {b}\]$")
    await term.type("/react 1 ❤️")
    await term.expect(r"^#1 .*: lunch at one\? \[❤️ you\]$")
    edit = {"id": question, "body": "lunch at two?", "client_id": "e1"}
    assert (await bob_device.call("edit", edit))["ok"]
    await term.expect(rf"^#1 {b}: lunch at two\? \(edited\) \[❤️ you\]$")
    await term.type("/unreact 1 ❤️")
    await term.expect(rf"^#1 {b}: lunch at two\? \(edited\)$")

    await bob_device.sio.emit("typing", {"to": ann.username, "state": True})
    await term.expect(rf"^\* {b} is typing\.\.\.$")
    await bob_device.sio.emit("typing", {"to": ann.username, "state": False})
    await term.expect(rf"^\* {b} stopped typing$")

    await term.type("/delete 2")
    await term.expect(r"^#2 you: \[deleted\]$")
    await bob_device.wait_for(
        lambda: any(u["change"] == "deleted" for u in bob_device.of("message_updated"))
    )
    await term.type("/delete 1 me")
    await term.expect(r"^#1 \[deleted for you\]$")
    await term.type("/edit 9 nope")
    await term.expect(r"^! no message #9$")
    await term.type("/edit 1 mine now")  # bob's message, and hidden from ann
    await term.expect(r"^! #1 not changed: .*\(not_found\)$")
    await term.type("/react 1")
    await term.expect(r"^! usage: /react N emoji$")

    # The history shows the tombstone with its number; the hidden message is gone.
    await term.type(f"/open {bob.username}")
    await term.expect(r"^#2 you: \[deleted\] · sent$")
    assert await term.quit() == 0
    [shown] = [m for m in await history_rows(server.url, bob, ann.username) if m["deleted"]]
    assert (shown["id"], shown["body"]) == (reply["id"], None)
    await bob_device.disconnect()


async def test_typing_indicator_lasts_until_false_message_or_expiry() -> None:
    out: list[str] = []
    shown = TypingShown(ttl=1.0, out=out.append)
    shown.update(Typing("bob", True))
    shown.update(Typing("bob", True))  # a repeat while shown: no new line
    assert out == ["* bob is typing..."]
    await asyncio.sleep(0.5)
    shown.update(Typing("bob", True))  # ...but it lasts from the last one
    await asyncio.sleep(0.6)
    assert out == ["* bob is typing..."]
    await eventually(lambda: len(out) == 2, timeout=2)
    assert out[1] == "* bob stopped typing"
    shown.update(Typing("bob", False))  # the server's late false: already stopped
    shown.update(Typing("bob", True))
    shown.stop("bob", announce=False)  # their message arrived: it says enough
    shown.update(Typing("bob", False))
    await asyncio.sleep(1.2)
    assert out == ["* bob is typing...", "* bob stopped typing", "* bob is typing..."]


async def test_chat_attaches_shows_and_saves_files(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    bob_device, _ = await connect_synced(server.url, bob)
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    b = re.escape(bob.username)
    await term.type("/attach nothing-open.txt")
    await term.expect(r"^! open a conversation first")
    await term.type(f"/open {bob.username}")
    await term.expect(r"talking with ")

    # A photo with a caption, then a file whose path has a space, without one.
    photo = tmp_path / "photo.png"
    photo.write_bytes(png())
    await term.type(f"/attach {photo} the view from here")
    await term.expect(rf"^#1 … uploading photo\.png \({re.escape(human_size(len(png())))}\)$")
    await term.expect(r"^#1 ✓ stored$")
    spaced = tmp_path / "my notes.txt"
    spaced.write_text("remember the milk\n")
    await term.type(f'/attach "{spaced}"')
    await term.expect(r"^#2 ✓ stored$")
    await bob_device.wait_for(lambda: len(bob_device.messages()) == 2)
    first, second = bob_device.messages()
    assert first["body"] == "the view from here"
    [shown] = first["attachments"]
    assert (shown["name"], shown["size"], shown["content_type"]) == (
        "photo.png",
        len(png()),
        "image/png",
    )
    assert (shown["width"], shown["height"], shown["thumbnail"]) == (640, 480, True)
    status, body, _ = await fetch(http, bob, f"/api/v1/attachments/{shown['id']}")
    assert (status, body) == (200, photo.read_bytes())
    assert second["body"] == ""
    assert [(a["name"], a["content_type"]) for a in second["attachments"]] == [
        ("my notes.txt", "text/plain")
    ]

    # bob sends a file without a caption: shown with its name and size, then saved.
    report = os.urandom(1_234_567)
    made = await upload(server.url, bob.token, report, "application/pdf", "report.pdf")
    sent = await bob_device.call(
        "send",
        {"to": ann.username, "body": "", "client_id": "r1", "attachments": [made["id"]]},
    )
    assert sent["ok"], sent
    await term.expect(rf"^#3 {b}: \[report\.pdf 1\.2 MB\]$")
    saved = tmp_path / "saved"
    saved.mkdir()
    for copy in ("report.pdf", "report (1).pdf"):  # never over an existing file
        await term.type(f"/save 3 {saved}")
        await term.expect(rf"^\* #3 saved {re.escape(str(saved / copy))} \(1\.2 MB\)$")
        digest = hashlib.sha256((saved / copy).read_bytes()).hexdigest()
        assert digest == made["sha256"] == hashlib.sha256(report).hexdigest()

    await term.type(f"/attach {tmp_path / 'missing.txt'}")
    await term.expect(r"^! no such file: .*missing\.txt$")
    await term.type("/save 9")
    await term.expect(r"^! no message #9$")
    bare = await bob_device.send(ann.username, "just text", "t1")
    assert bare["ok"]
    await term.expect(rf"^#4 {b}: just text$")
    await term.type("/save 4")
    await term.expect(r"^! #4 carries no files$")
    # A file the server refuses: a .png that is not one.
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a picture at all")
    await term.type(f"/attach {fake}")
    await term.expect(r"^#5 ✗ failed: .*\(invalid\)$")
    assert await term.quit() == 0
    assert len(await history_rows(server.url, bob, ann.username)) == 4
    await bob_device.disconnect()


def test_sizes_are_shown_as_people_read_them() -> None:
    assert [
        human_size(n)
        for n in (0, 999, 1000, 1_234, 9_949, 9_950, 999_499, 999_999, 1_234_567, 25 * 2**20)
    ] == ["0 B", "999 B", "1.0 KB", "1.2 KB", "9.9 KB", "10 KB", "999 KB", "1.0 MB",
          "1.2 MB", "26 MB"]  # fmt: skip


def test_messages_show_their_files_and_saved_names_stay_in_their_directory(
    tmp_path: Path,
) -> None:
    files = (
        Attachment(1, "photo.jpg", 1_200_000, "image/jpeg", 800, 600, True),
        Attachment(2, "notes.txt", 512, "text/plain"),
    )
    message = Message(
        id=7, sender="bob", recipient="ann", body="", client_id="c", sent_at="t",
        status="sent", delivered_at=None, read_at=None, attachments=files,
    )  # fmt: skip
    assert render(message, 3, "ann", {}) == ["#3 bob: [photo.jpg 1.2 MB] [notes.txt 512 B]"]
    captioned = dataclasses.replace(message, body="look", edited_at="t")
    assert render(captioned, 3, "ann", {}) == [
        "#3 bob: look [photo.jpg 1.2 MB] [notes.txt 512 B] (edited)"
    ]
    assert render(dataclasses.replace(message, deleted=True, body=None), 3, "ann", {}) == [
        "#3 bob: [deleted]"
    ]
    for hostile in ("../../.bashrc", "..\\evil.txt", "..", ""):
        path = free_path(tmp_path, hostile)
        assert path.parent == tmp_path and path.name not in ("", ".", ".."), hostile
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.txt.part").write_text("x")  # a download in progress
    assert free_path(tmp_path, "a.txt").name == "a (1).txt"
    assert free_path(tmp_path, "b.txt").name == "b (1).txt"


async def test_chat_searches_page_by_page_with_hits_marked(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    bob_device, _ = await connect_synced(server.url, bob)
    for i in range(11):
        assert (await bob_device.send(ann.username, f"lunch plan {i}", f"l{i}"))["ok"]
    assert (await bob_device.send(ann.username, "the Café at noon", "c"))["ok"]
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    b, when = re.escape(bob.username), r"\d{4}-\d\d-\d\d \d\d:\d\d"
    await term.type("/search")
    await term.expect(r"^! usage: /search words")
    await term.type(f"/open {bob.username}")
    await term.expect(r"talking with ")
    await term.type("my lunch too")
    await term.expect(r"^#\d+ ✓ stored$")  # after the 12 messages of the backlog

    await term.type("/search LUNCH")  # piped output: hits in brackets, never ANSI
    await term.expect(r'^\* "LUNCH": 10 results, newest first$')
    await term.expect(rf"^#(\d+) you → {b} · {when}: my \[lunch\] too$")
    for i in range(10, 1, -1):
        await term.expect(rf"^#\d+ {b} · {when}: \[lunch\] plan {i}$")
    await term.expect(r"^\* more: /search$")
    await term.type("/search")
    await term.expect(r'^\* "LUNCH": 2 more results, newest first$')
    last = await term.expect(rf"^#(\d+) {b} · {when}: \[lunch\] plan 1$")
    await term.expect(rf"^#\d+ {b} · {when}: \[lunch\] plan 0$")
    await term.type("/search")
    await term.expect(r'^\* no more results for "LUNCH"$')
    assert not any("\x1b" in line for line in term.lines)

    await term.type("/search cafe   NOON")
    await term.expect(r'^\* "cafe NOON": 1 result, newest first$')
    await term.expect(rf"^#\d+ {b} · {when}: the \[Café\] at \[noon\]$")
    await term.type("/search dinner")
    await term.expect(r'^\* no results for "dinner"$')
    await term.type("/search " + "x" * 257)
    await term.expect(r"^! search: .*\(invalid\)$")
    # A result has a number like any shown message: reply to it.
    await term.type(f"/reply {last.group(1)} yes, plan 1")
    await term.expect(r"^#\d+ ✓ stored$")

    def from_ann() -> list[dict[str, Any]]:  # bob's own sends come back to him too
        return [m for m in bob_device.messages() if m["from"] == ann.username]

    await bob_device.wait_for(lambda: len(from_ann()) == 2)
    [_, reply] = from_ann()  # after "my lunch too"
    assert (reply["body"], reply["reply_to"]["excerpt"]) == ("yes, plan 1", "lunch plan 1")
    assert await term.quit() == 0
    await bob_device.disconnect()


async def test_chat_lists_and_ends_sessions_changes_the_password_and_exports(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    term = await logged_in(terminals, server.url, ann.username, tmp_path / "ann.state")
    await term.type("/sessions")  # ann.token (from `accounts`) and the chat's own
    await term.expect(r"^\* 2 sessions, newest first:$")
    mine = await term.expect(r"^\*   (\d+) \(this one\): since .*, last used .*, 127\.0\.0\.1, ")
    other = await term.expect(r"^\*   (\d+): since ")
    await term.type(f"/end-session {mine.group(1)}")
    await term.expect(r"^! that is this session$")
    await term.type("/end-session 999999999")
    await term.expect(r"^! no session 999999999 \(see /sessions\)$")
    await term.type("/end-session soon")
    await term.expect(r"^! usage: /end-session ID\|others")
    await term.type(f"/end-session {other.group(1)}")
    await term.expect(rf"^\* session {other.group(1)} ended$")
    status, _ = await http.request("GET", "/api/v1/sessions", token=ann.token)
    assert status == 401
    for _ in range(2):
        assert (await http.login(ann.username))[0] == 201
    await term.type("/end-session others")
    await term.expect(r"^\* ended 2 other sessions$")
    await term.type("/end-session others")
    await term.expect(r"^\* ended 0 other sessions$")

    for answers, said in [
        (["wrong password", "a new secret", "a new secret"], r"password unchanged: .*bad_cred"),
        ([PASSWORD, "a new secret", "another secret"], r"the new passwords differ"),
        ([PASSWORD, "short", "short"], r"password unchanged: .*\(invalid\)"),
        ([""], r"^\* password unchanged$"),
    ]:
        await term.type("/password")
        await term.expect(r"^\* current password:$")
        for answer in answers:
            await term.type(answer)
        await term.expect(said)
    assert (await http.login(ann.username))[0] == 201  # unchanged so far
    other_token = (await http.login(ann.username))[1]["token"]
    await term.type("/password")
    for answer in (PASSWORD, "a new secret", "a new secret"):
        await term.type(answer)
    await term.expect(r"^\* password changed; your other sessions have ended$")
    assert (await http.request("GET", "/api/v1/sessions", token=other_token))[0] == 401
    assert (await http.login(ann.username, "a new secret"))[0] == 201
    assert all("a new secret" not in line for line in term.lines)  # piped: no echo to undo
    await term.type(f"/open {bob.username}")
    await term.type("still logged in")
    await term.expect(r"^#1 ✓ stored$")

    await term.type(f"/export {tmp_path}")
    done = await term.expect(r"^\* exported to (.*) \([\d.]+ K?B\)$")
    assert done.group(1) == str(tmp_path / "messenger-export.json")
    exported = json.loads((tmp_path / "messenger-export.json").read_text())
    assert [m["body"] for m in exported["messages"]] == ["still logged in"]
    await term.type(f"/export {done.group(1)}")
    await term.expect(r"^! .*messenger-export\.json exists; name a new file or a directory$")
    await term.type(f"/export {tmp_path / 'missing' / 'x.json'}")
    await term.expect(r"^! no such directory: ")
    assert await term.quit() == 0
