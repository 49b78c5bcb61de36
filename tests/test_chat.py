"""The terminal chat driven as a user would: a `messenger chat` process with its
standard input and output on pipes, against a real server, chatting with a raw device."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import PASSWORD, Device, Http, RunningServer, Servers, port_of
from tests.test_client import history_rows


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


async def test_chat_with_a_device_shows_messages_and_state_marks(
    server: RunningServer, http: Http, tmp_path: Path, terminals: list[Terminal]
) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    bob_device = await Device(server.url).connect(bob.token)
    await bob_device.wait_synced()
    term = await Terminal.start(server.url, ann.username, tmp_path / "ann.state")
    terminals.append(term)
    await term.expect(r"logged in as " + re.escape(ann.username))
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
    term = await Terminal.start(server.url, ann.username, tmp_path / "ann.state")
    terminals.append(term)
    await term.expect("logged in")
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
    term = await Terminal.start(server.url, ann.username, tmp_path / "ann.state")
    terminals.append(term)
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
