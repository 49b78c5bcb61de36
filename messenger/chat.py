"""`messenger chat`: a line-based terminal chat over the Python SDK.

Type `/open NAME` to pick a conversation, then lines to send. Each sent line gets a
number and its state is shown as it changes: `…` queued, `✓` stored, `✓✓` delivered,
`✓✓ read`. Lines typed while the server is unreachable wait in the SDK's outbox and go
out when it is back. Messages from the open conversation are marked read when shown.

Deliberately plain (no curses, no extra dependencies): output lines are appended, so
the chat also works through pipes, which is how the tests drive it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from messenger.client import Client, MessengerClientError, NewMessage, Receipt, login

HELP = "commands: /open NAME  /who  /help  /quit; any other line is sent to the open conversation"
MARKS = {"sent": "✓ stored", "delivered": "✓✓ delivered", "read": "✓✓ read"}
ORDER = ("sent", "delivered", "read")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server URL")
    parser.add_argument("--user", required=True, help="your username")
    parser.add_argument("--state", help="file keeping the outbox and cursor across runs")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line"
    )


def main(args: argparse.Namespace) -> int:
    password = None if args.password_stdin else getpass.getpass("Password: ")
    try:
        return asyncio.run(Chat(args.url, args.user.lower(), args.state).run(password))
    except KeyboardInterrupt:
        return 130


@dataclass
class Sent:
    """One line we sent, numbered in this session."""

    number: int
    status: str = "queued"


@dataclass
class Chat:
    url: str
    me: str
    state: str | Path | None
    peer: str | None = None
    sent: dict[int, Sent] = field(default_factory=dict)  # by message id
    early: dict[int, str] = field(default_factory=dict)  # receipts before the send's answer
    numbers: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, password: str | None) -> int:
        lines = await _stdin_lines()
        if password is None:
            password = (await lines.readline()).decode().rstrip("\r\n")
        try:
            token = await login(self.url, self.me, password)
        except MessengerClientError as exc:
            say(f"! cannot log in: {exc.message} ({exc.code})")
            return 1
        client = Client(self.url, token, self.state)
        client.on_message(lambda event: self._on_message(client, event))
        client.on_receipt(self._on_receipt)
        try:
            async with client:
                say(f"* logged in as {self.me}. {HELP}")
                watcher = asyncio.create_task(self._watch_connection(client))
                try:
                    await self._read_input(client, lines)
                finally:
                    watcher.cancel()
        except MessengerClientError as exc:
            say(f"! {exc.message} ({exc.code})")
            return 1
        return 0

    async def _read_input(self, client: Client, lines: asyncio.StreamReader) -> None:
        while line := await lines.readline():
            text = line.decode(errors="replace").rstrip("\r\n")
            if not text.strip():
                continue
            if text.startswith("/"):
                if not await self._command(client, text):
                    break
                continue
            if self.peer is None:
                say("! open a conversation first: /open NAME")
                continue
            self.numbers += 1
            self._background(self._send(client, self.peer, text, self.numbers))
        pending = await client.pending()
        if pending:
            say(f"* {len(pending)} message(s) still queued; they go out next time")

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self.tasks.discard)

    async def _command(self, client: Client, text: str) -> bool:
        """Run a /command; False means quit."""
        name, _, arg = text.partition(" ")
        if name == "/quit":
            return False
        if name == "/open" and arg.strip():
            self.peer = arg.strip().lower()
            say(f"* talking with {self.peer}")
            # In the background: while offline it waits, and typing must not.
            self._background(self._show_recent(client, self.peer))
        elif name == "/who":
            say(f"* you are {self.me}, talking with {self.peer or 'nobody'}")
        else:
            say(f"* {HELP}")
        return True

    async def _show_recent(self, client: Client, peer: str) -> None:
        """The last few messages of the conversation, best effort."""
        try:
            async for page in client.history(peer, limit=10):
                for message in page:
                    who = "you" if message.sender == self.me else message.sender
                    say(f"  {who}: {message.body} [{message.status}]")
                break
        except MessengerClientError as exc:
            say(f"! no history: {exc.message} ({exc.code})")

    async def _send(self, client: Client, to: str, body: str, number: int) -> None:
        say(f"#{number} … queued")
        try:
            message = await client.send(to, body)
        except MessengerClientError as exc:
            say(f"#{number} ✗ failed: {exc.message} ({exc.code})")
            return
        entry = Sent(number)
        self.sent[message.id] = entry
        self._advance(entry, "sent")
        if message.id in self.early:
            self._advance(entry, self.early.pop(message.id))

    async def _on_message(self, client: Client, event: NewMessage) -> None:
        message = event.message
        if message.sender == self.me:
            return  # our own line, echoed back; its state is shown by number
        say(f"{message.sender}: {message.body}")
        if message.sender == self.peer and message.status != "read":
            try:
                await client.mark_read([message.id])
            except MessengerClientError:
                pass  # shown as unread next time; nothing lost

    def _on_receipt(self, event: Receipt) -> None:
        if event.by == self.me:
            return  # our own marks, told to our other devices
        for message_id in event.ids:
            entry = self.sent.get(message_id)
            if entry is None:
                self.early[message_id] = event.status
            else:
                self._advance(entry, event.status)

    def _advance(self, entry: Sent, status: str) -> None:
        """Show a state change; states only move forward (read implies delivered)."""
        if status not in ORDER:
            return
        if entry.status in ORDER and ORDER.index(status) <= ORDER.index(entry.status):
            return
        entry.status = status
        say(f"#{entry.number} {MARKS[status]}")

    async def _watch_connection(self, client: Client) -> None:
        online = client.connected
        say("* online" if online else "* offline: lines are queued until the server is back")
        while True:
            await asyncio.sleep(0.2)
            if client.connected != online:
                online = client.connected
                say(
                    "* online" if online else "* offline: lines are queued until the server is back"
                )


def say(text: str) -> None:
    print(text, flush=True)


async def _stdin_lines() -> asyncio.StreamReader:
    """Standard input as an asyncio stream, so typing never blocks incoming messages."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
