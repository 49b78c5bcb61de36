"""`messenger chat`: a line-based terminal chat over the Python SDK.

Type `/open NAME` to pick a conversation, then lines to send. Every message shown gets
a short number (`#3`), the one the commands take: `/reply 3 text`, `/edit 3 text`,
`/delete 3` (for everyone; `/delete 3 me` only for you), `/react 3 👍`. `/attach PATH
[caption]` uploads a file and sends it, `/save 3 [DIR]` downloads what message 3 carries;
messages show their files as `[photo.jpg 1.2 MB]`. A sent line's state is shown as it
changes: `…` queued, `✓` stored, `✓✓` delivered, `✓✓ read`.
Edits, deletes and reactions show the message again as it is now. Lines typed while
the server is unreachable wait in the SDK's outbox and go out when it is back.
Messages from the open conversation are marked read when shown.
`/search words` finds messages of every conversation (`/search` alone: the next page),
hits in bold on a terminal, else in `[ ]`; `/sessions`, `/end-session ID|others`,
`/password` and `/export PATH` look after the account.

Deliberately plain (no curses, no extra dependencies): output lines are appended, so
the chat also works through pipes, which is how the tests drive it. For the same
reason input comes a whole line at a time: the chat cannot see someone typing, so it
only shows the other side's typing, never sends its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import mimetypes
import os
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from messenger.client import (
    TYPING_SHOWN_FOR,
    Attachment,
    Client,
    Message,
    MessageUpdated,
    MessengerClientError,
    NewMessage,
    Receipt,
    ReplyRef,
    SearchResult,
    Session,
    Typing,
    login,
)

HELP = (
    "commands: /open NAME  /reply N text  /edit N text  /delete N [me]  /react N emoji"
    "  /unreact N emoji  /attach PATH [caption]  /save N [DIR]  /search words (alone: more)"
    "  /receipts [on|off]  /sessions  /end-session ID|others  /password  /export PATH"
    "  /who  /help  /quit; any other line is sent to the open conversation"
)
# Results per /search page: a screenful.
SEARCH_PAGE = 10
# How hits are marked: bold on a terminal that shows it, brackets anywhere else.
BOLD = ("\x1b[1m", "\x1b[0m")
BRACKETS = ("[", "]")
# The file /export writes when given a directory.
EXPORT_NAME = "messenger-export.json"
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


def supports_ansi(stream: Any = None) -> bool:
    """Whether `stream` (standard output) is a terminal that shows ANSI bold; pipes,
    `TERM=dumb` and `NO_COLOR` get plain brackets."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return False
    return os.environ.get("TERM", "dumb") != "dumb" and not os.environ.get("NO_COLOR")


@dataclass
class SearchState:
    """The last /search: its words and where its next page starts (None: no more)."""

    query: str
    next_before: int | None


@dataclass
class Sent:
    """One line we sent, numbered in this session."""

    number: int
    status: str = "queued"


class TypingShown:
    """Who is shown as typing: from their `true` until their `false`, their next
    message, or `ttl` seconds after their last `true` (a `false` can be lost, 3.7).

    Output is append-only, so a start and a stop are each one line; a stop made by
    their message (shown instead) is not written.
    """

    def __init__(
        self, ttl: float = TYPING_SHOWN_FOR, out: Callable[[str], None] | None = None
    ) -> None:
        self._ttl = ttl
        self._out = out or say
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def update(self, event: Typing) -> None:
        if event.state:
            self._start(event.sender)
        else:
            self.stop(event.sender)

    def _start(self, who: str) -> None:
        timer = self._timers.pop(who, None)
        if timer is None:
            self._out(f"* {who} is typing...")
        else:
            timer.cancel()
        self._timers[who] = asyncio.get_running_loop().call_later(self._ttl, self.stop, who)

    def stop(self, who: str, announce: bool = True) -> None:
        timer = self._timers.pop(who, None)
        if timer is None:
            return
        timer.cancel()
        if announce:
            self._out(f"* {who} stopped typing")


@dataclass
class Chat:
    url: str
    me: str
    state: str | Path | None
    peer: str | None = None
    sent: dict[int, Sent] = field(default_factory=dict)  # by message id
    early: dict[int, str] = field(default_factory=dict)  # receipts before the send's answer
    numbers: int = 0
    ids: dict[int, int] = field(default_factory=dict)  # number -> message id
    numbered: dict[int, int] = field(default_factory=dict)  # message id -> number
    messages: dict[int, Message] = field(default_factory=dict)  # the last shown, by id
    typing: TypingShown = field(default_factory=TypingShown)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    ansi: bool = field(default_factory=supports_ansi)  # how /search marks hits
    searching: SearchState | None = None
    lines: asyncio.StreamReader | None = None  # standard input, for /password's prompts

    async def run(self, password: str | None) -> int:
        lines = await _stdin_lines()
        self.lines = lines
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
        client.on_message_updated(self._on_update)
        client.on_typing(self.typing.update)
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
            self._background(self._send(client, self.peer, text, self._new_number()))
        pending = await client.pending()
        if pending:
            say(f"* {len(pending)} message(s) or edit(s) still queued; they go out next time")

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self.tasks.discard)

    # -- commands -------------------------------------------------------------------

    async def _command(self, client: Client, text: str) -> bool:
        """Run a /command; False means quit."""
        name, _, arg = text.partition(" ")
        if name == "/quit":
            return False
        handlers: dict[str, Callable[[Client, str], None]] = {
            "/open": self._open,
            "/who": lambda _client, _arg: self._who(),
            "/reply": self._reply,
            "/edit": self._edit,
            "/delete": self._delete,
            "/react": self._react,
            "/unreact": self._unreact,
            "/attach": self._attach,
            "/save": self._save,
            "/receipts": self._receipts,
        }
        # Awaited before the next line is read: their output comes in one piece, and
        # /password reads its own lines.
        awaited: dict[str, Callable[[Client, str], Awaitable[None]]] = {
            "/search": self._search,
            "/sessions": self._sessions,
            "/end-session": self._end_session,
            "/password": self._password,
            "/export": self._export,
        }
        handler = handlers.get(name)
        waited = awaited.get(name)
        if waited is not None:
            await waited(client, arg)
        elif handler is None:
            say(f"* {HELP}")
        else:
            handler(client, arg)
        return True

    def _open(self, client: Client, arg: str) -> None:
        if not arg.strip():
            say("! usage: /open NAME")
            return
        self.peer = arg.strip().lower()
        say(f"* talking with {self.peer}")
        # In the background: while offline it waits, and typing must not.
        self._background(self._show_recent(client, self.peer))

    def _who(self) -> None:
        say(f"* you are {self.me}, talking with {self.peer or 'nobody'}")

    def _reply(self, client: Client, arg: str) -> None:
        target = self._target(arg, "/reply N text")
        if target is None:
            return
        message, text = target
        to = message.recipient if message.sender == self.me else message.sender
        number = self._new_number()
        self._background(self._send(client, to, text, number, reply_to=message.id))

    def _edit(self, client: Client, arg: str) -> None:
        target = self._target(arg, "/edit N text")
        if target is not None:
            message, text = target
            self._background(self._change(message.id, client.edit(message.id, text)))

    def _delete(self, client: Client, arg: str) -> None:
        target = self._target(arg, "/delete N [me]", rest_required=False)
        if target is None:
            return
        message, scope = target
        if scope not in ("", "me", "everyone"):
            say("! usage: /delete N [me]")
            return
        deleting = client.delete(message.id, for_everyone=scope != "me")
        self._background(self._change(message.id, deleting))

    def _react(self, client: Client, arg: str) -> None:
        target = self._target(arg, "/react N emoji")
        if target is not None:
            message, emoji = target
            self._background(self._change(message.id, client.react(message.id, emoji)))

    def _unreact(self, client: Client, arg: str) -> None:
        target = self._target(arg, "/unreact N emoji")
        if target is not None:
            message, emoji = target
            self._background(self._change(message.id, client.unreact(message.id, emoji)))

    def _attach(self, client: Client, arg: str) -> None:
        """Upload a file, then send it with the rest of the line as its caption."""
        if self.peer is None:
            say("! open a conversation first: /open NAME")
            return
        parsed = _path_and_rest(arg)
        if parsed is None:
            say("! usage: /attach PATH [caption]  (quote a PATH with spaces)")
            return
        path, caption = Path(parsed[0]).expanduser(), parsed[1]
        if not path.is_file():
            say(f"! no such file: {path}")
            return
        number = self._new_number()
        say(f"#{number} … uploading {path.name} ({human_size(path.stat().st_size)})")
        self._background(self._upload_and_send(client, self.peer, path, caption, number))

    async def _upload_and_send(
        self, client: Client, to: str, path: Path, caption: str, number: int
    ) -> None:
        """The upload waits through outages like a line does; then the message goes
        through the outbox. Lines typed meanwhile may arrive before it."""
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            made = await client.upload(path, content_type)
        except MessengerClientError as exc:
            say(f"#{number} ✗ failed: {exc.message} ({exc.code})")
            return
        except OSError as exc:
            say(f"#{number} ✗ failed: cannot read {path}: {exc.strerror or exc}")
            return
        await self._send(client, to, caption, number, attachments=[made["id"]])

    def _save(self, client: Client, arg: str) -> None:
        target = self._target(arg, "/save N [DIR]", rest_required=False)
        if target is None:
            return
        message, where = target
        number = self.numbered[message.id]
        if not message.attachments:
            say(f"! #{number} carries no files")
            return
        directory = Path(where or ".").expanduser()
        if not directory.is_dir():
            say(f"! no such directory: {directory}")
            return
        self._background(self._download(client, number, message.attachments, directory))

    async def _download(
        self, client: Client, number: int, files: tuple[Attachment, ...], directory: Path
    ) -> None:
        for attachment in files:
            path = free_path(directory, attachment.name)
            try:
                done = await client.download(attachment.id, path)
            except MessengerClientError as exc:
                say(f"! #{number} {attachment.name} not saved: {exc.message} ({exc.code})")
                continue
            except OSError as exc:
                say(f"! #{number} {attachment.name} not saved: {exc.strerror or exc}")
                continue
            say(f"* #{number} saved {done.path} ({human_size(done.size)})")

    def _receipts(self, client: Client, arg: str) -> None:
        choice = arg.strip().lower()
        if choice not in ("", "on", "off"):
            say("! usage: /receipts [on|off]")
            return
        self._background(self._set_receipts(client, None if not choice else choice == "on"))

    # -- search and the account (issue 26) -------------------------------------------

    async def _search(self, client: Client, arg: str) -> None:
        """`/search words`: the first page of results; `/search` alone: the next one."""
        words = " ".join(arg.split())
        if words:
            state = SearchState(words, None)
            before = None
        elif self.searching is None:
            say("! usage: /search words  (then /search alone for more)")
            return
        elif self.searching.next_before is None:
            say(f'* no more results for "{self.searching.query}"')
            return
        else:
            state, before = self.searching, self.searching.next_before
        try:
            page = await client.search(state.query, before=before, limit=SEARCH_PAGE)
        except MessengerClientError as exc:
            say(f"! search: {exc.message} ({exc.code})")
            return
        self.searching = state
        state.next_before = page.next_before
        if not page.results:
            say(f'* no results for "{state.query}"')
            return
        count = len(page.results)
        later = "" if before is None else " more"
        say(f'* "{state.query}": {count}{later} result{"s" if count > 1 else ""}, newest first')
        marks = BOLD if self.ansi else BRACKETS
        for result in page.results:
            number = self._remember(result.message)
            say(render_result(result, number, self.me, marks))
        if state.next_before is not None:
            say("* more: /search")

    async def _sessions(self, client: Client, arg: str) -> None:
        found = await self._session_list(client)
        if found is None:
            return
        say(f"* {len(found)} session{'s' if len(found) != 1 else ''}, newest first:")
        for session in found:
            say(render_session(session))

    async def _session_list(self, client: Client) -> list[Session] | None:
        try:
            return await client.sessions()
        except MessengerClientError as exc:
            say(f"! sessions: {exc.message} ({exc.code})")
            return None

    async def _end_session(self, client: Client, arg: str) -> None:
        """`/end-session ID` ends one other session; `/end-session others` all of them.
        This one is refused: /quit leaves, and logging out is not asked for here."""
        choice = arg.strip().lower()
        if choice != "others" and not choice.isdigit():
            say("! usage: /end-session ID|others  (IDs from /sessions)")
            return
        found = await self._session_list(client)
        if found is None:
            return
        others = [s["id"] for s in found if not s["current"]]
        if choice != "others":
            wanted = int(choice)
            if wanted not in others:
                this = any(s["current"] and s["id"] == wanted for s in found)
                say("! that is this session" if this else f"! no session {wanted} (see /sessions)")
                return
            others = [wanted]
        ended = 0
        for session_id in others:
            try:
                await client.end_session(session_id)
                ended += 1
            except MessengerClientError as exc:
                if exc.code != "not_found":  # ended meanwhile: what was asked for
                    say(f"! session {session_id} not ended: {exc.message} ({exc.code})")
        if choice == "others":
            say(f"* ended {ended} other session{'s' if ended != 1 else ''}")
        elif ended:
            say(f"* session {others[0]} ended")

    async def _password(self, client: Client, arg: str) -> None:
        """Ask for the current password and the new one twice, unechoed on a terminal."""
        current = await self._prompt("* current password:")
        if not current:
            say("* password unchanged")
            return
        new = await self._prompt("* new password:")
        again = await self._prompt("* new password again:")
        if not new or new != again:
            say("! the new passwords differ; password unchanged")
            return
        try:
            await client.change_password(current, new)
        except MessengerClientError as exc:
            say(f"! password unchanged: {exc.message} ({exc.code})")
            return
        say("* password changed; your other sessions have ended")

    async def _prompt(self, text: str) -> str:
        """One line of standard input after `text` (empty at its end), not echoed."""
        say(text)
        if self.lines is None:
            return ""
        with _echo_off():
            line = await self.lines.readline()
        return line.decode(errors="replace").rstrip("\r\n")

    async def _export(self, client: Client, arg: str) -> None:
        """In the background: a large export takes a while, and chatting goes on."""
        path = export_path(arg)
        if path is not None:
            say(f"* exporting to {path} ...")
            self._background(self._write_export(client, path))

    async def _write_export(self, client: Client, path: Path) -> None:
        try:
            done = await client.export(path)
        except MessengerClientError as exc:
            say(f"! export failed: {exc.message} ({exc.code})")
            return
        except OSError as exc:
            say(f"! export failed: {exc.strerror or exc}")
            return
        say(f"* exported to {done.path} ({human_size(done.size)})")

    def _target(
        self, arg: str, usage: str, rest_required: bool = True
    ) -> tuple[Message, str] | None:
        """The message numbered by the first word of `arg`, and the rest of `arg`."""
        word, _, rest = arg.strip().partition(" ")
        rest = rest.strip()
        number = word.removeprefix("#")
        if not number.isdigit() or (rest_required and not rest):
            say(f"! usage: {usage}")
            return None
        message_id = self.ids.get(int(number))
        message = self.messages.get(message_id) if message_id is not None else None
        if message is None:
            known = int(number) <= self.numbers
            say(f"! #{number} is not stored yet" if known else f"! no message #{number}")
            return None
        return message, rest

    async def _change(self, message_id: int, call: Awaitable[object]) -> None:
        """Await an edit, delete or reaction; the stream shows its outcome."""
        try:
            await call
        except MessengerClientError as exc:
            say(f"! #{self.numbered[message_id]} not changed: {exc.message} ({exc.code})")

    async def _set_receipts(self, client: Client, on: bool | None) -> None:
        try:
            now = await (client.read_receipts() if on is None else client.set_read_receipts(on))
        except MessengerClientError as exc:
            say(f"! receipts: {exc.message} ({exc.code})")
            return
        say(f"* read receipts {'on' if now else 'off: others learn at most delivered'}")

    # -- showing messages -----------------------------------------------------------

    def _new_number(self) -> int:
        self.numbers += 1
        return self.numbers

    def _remember(self, message: Message, number: int | None = None) -> int:
        """The message's number (a new one if it has none); keeps its latest state."""
        self.messages[message.id] = message
        if number is not None:  # a sent line's own number (an update may have given one)
            self.ids[number] = message.id
        if message.id not in self.numbered:
            number = number or self._new_number()
            self.numbered[message.id] = number
            self.ids[number] = message.id
        return self.numbered[message.id]

    def _show(self, message: Message, suffix: str = "") -> None:
        number = self._remember(message)
        lines = render(message, number, self.me, self.numbered)
        for line in lines[:-1]:
            say(line)
        say(lines[-1] + suffix)

    async def _show_recent(self, client: Client, peer: str) -> None:
        """The last few messages of the conversation, best effort."""
        try:
            async for page in client.history(peer, limit=10):
                for message in page:
                    self._show(message, f" · {message.status}")
                break
        except MessengerClientError as exc:
            say(f"! no history: {exc.message} ({exc.code})")

    async def _send(
        self,
        client: Client,
        to: str,
        body: str,
        number: int,
        reply_to: int | None = None,
        attachments: list[int] | None = None,
    ) -> None:
        say(f"#{number} … queued")
        try:
            message = await client.send(to, body, reply_to=reply_to, attachments=attachments or ())
        except MessengerClientError as exc:
            say(f"#{number} ✗ failed: {exc.message} ({exc.code})")
            return
        self._remember(message, number)
        entry = Sent(number)
        self.sent[message.id] = entry
        self._advance(entry, "sent")
        if message.id in self.early:
            self._advance(entry, self.early.pop(message.id))

    async def _on_message(self, client: Client, event: NewMessage) -> None:
        message = event.message
        if message.sender == self.me or message.hidden:
            return  # our own line, echoed back (its state is shown by number), or hidden
        self.typing.stop(message.sender, announce=False)
        self._show(message)
        if message.sender == self.peer and message.status != "read":
            try:
                await client.mark_read([message.id])
            except MessengerClientError:
                pass  # shown as unread next time; nothing lost

    def _on_update(self, event: MessageUpdated) -> None:
        """An edit, delete or reaction: the message again, as it is now."""
        self._show(event.message)

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


def render(message: Message, number: int, me: str, numbers: dict[int, int]) -> list[str]:
    """A message as lines: the quoted excerpt it replies to, then `#N who: body`, with
    its files (`[name size]`), `(edited)`, `[deleted]` and its reactions."""
    if message.hidden:
        return [f"#{number} [deleted for you]"]
    who = _name(message.sender, me)
    if message.deleted or message.body is None:
        return [f"#{number} {who}: [deleted]"]
    lines = [] if message.reply_to is None else [_quote(message.reply_to, me, numbers)]
    files = " ".join(f"[{a.name} {human_size(a.size)}]" for a in message.attachments)
    text = " ".join(part for part in (message.body, files) if part)
    text += " (edited)" if message.edited_at is not None else ""
    lines.append(f"#{number} {who}: {text}{_reactions(message, me)}")
    return lines


def render_result(
    result: SearchResult, number: int, me: str, marks: tuple[str, str] = BRACKETS
) -> str:
    """A search result as one line: `#N who · time: snippet`, each hit between
    `marks` (bold on and off, or brackets), the text made safe for a terminal."""
    message = result.message
    who = _name(message.sender, me)
    if message.sender == me:
        who += f" → {message.recipient}"
    start, end = marks
    snippet = "".join(
        f"{start}{printable(text)}{end}" if hit else printable(text)
        for text, hit in result.snippet.parts
    )
    return f"#{number} {who} · {local_time(message.sent_at)}: {snippet}"


def render_session(session: Session) -> str:
    """A session as one line for /sessions, its client's words made safe."""
    this = " (this one)" if session["current"] else ""
    where = printable(session["address"] or "address unknown")
    agent = printable(session["user_agent"] or "unknown client")
    return (
        f"*   {session['id']}{this}: since {local_time(session['created_at'])},"
        f" last used {local_time(session['last_used_at'])}, {where}, {agent}"
    )


def export_path(arg: str) -> Path | None:
    """Where `/export ARG` writes: a new file, or `messenger-export.json` (numbered if
    taken) in a directory; never over an existing file (None, said why)."""
    parsed = _path_and_rest(arg)
    if parsed is None or parsed[1]:
        say("! usage: /export PATH  (quote a PATH with spaces)")
        return None
    path = Path(parsed[0]).expanduser()
    if path.is_dir():
        return free_path(path, EXPORT_NAME)
    if path.exists():
        say(f"! {path} exists; name a new file or a directory")
        return None
    if not path.parent.is_dir():
        say(f"! no such directory: {path.parent}")
        return None
    return path


def local_time(stamp: str) -> str:
    """A server timestamp (ISO 8601, UTC) as local `YYYY-MM-DD HH:MM`; anything else
    as it came, made safe."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return printable(stamp)


def printable(text: str) -> str:
    """`text` without control characters, so that what others wrote can neither break
    the line nor drive the terminal (an ESC starts a command): line breaks and tabs
    become spaces, other controls U+FFFD."""
    if text.isprintable():
        return text
    return "".join(
        " " if char in "\n\r\t" else "\ufffd" if unicodedata.category(char) == "Cc" else char
        for char in text
    )


def human_size(size: int) -> str:
    """Bytes as people read them, in powers of 1000: `512 B`, `1.2 MB`, `25 MB`."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        shown = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if float(shown) < 1000:
            return f"{shown} {unit}"
    return f"{value / 1000:.1f} TB"


def free_path(directory: Path, name: str) -> Path:
    """Where to save a file the other side named: in `directory` whatever the name says
    (the server refuses paths, but the name is theirs), never over an existing file."""
    base = Path(name.replace("\\", "/")).name
    if base in ("", ".", ".."):
        base = "file"
    stem, suffix = Path(base).stem, Path(base).suffix
    candidate, n = directory / base, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".part").exists():
        candidate = directory / f"{stem} ({n}){suffix}"
        n += 1
    return candidate


def _path_and_rest(arg: str) -> tuple[str, str] | None:
    """`PATH rest` or `"PATH with spaces" rest` (or single quotes): the path and the
    rest, its inner spaces kept."""
    arg = arg.strip()
    if arg[:1] in ("'", '"'):
        end = arg.find(arg[0], 1)
        if end <= 1:
            return None
        return arg[1:end], arg[end + 1 :].strip()
    path, _, rest = arg.partition(" ")
    return (path, rest.strip()) if path else None


def _quote(ref: ReplyRef, me: str, numbers: dict[int, int]) -> str:
    if ref.deleted:
        return "  > [deleted]"
    where = f"#{numbers[ref.id]} " if ref.id in numbers else ""
    return f"  > {where}{_name(ref.sender or '?', me)}: {ref.excerpt or ''}"


def _reactions(message: Message, me: str) -> str:
    if not message.reactions:
        return ""
    shown = (
        f"{emoji} {', '.join(_name(user, me) for user in users)}"
        for emoji, users in message.reactions.items()
    )
    return f" [{'; '.join(shown)}]"


def _name(user: str, me: str) -> str:
    return "you" if user == me else user


def say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def _echo_off() -> Iterator[None]:
    """Like getpass: on a terminal, what is typed meanwhile is not shown."""
    if sys.platform == "win32" or not sys.stdin.isatty():
        yield
        return
    import termios

    fd = sys.stdin.fileno()
    before = termios.tcgetattr(fd)
    quiet = list(before)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, before)


async def _stdin_lines() -> asyncio.StreamReader:
    """Standard input as an asyncio stream, so typing never blocks incoming messages."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
