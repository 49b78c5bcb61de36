"""`Client`: one user's connection to a messenger server, kept alive and in order.

Background tasks do the work, so that the application only awaits results:

- the *supervisor* keeps a Socket.IO connection open, reconnecting with exponential
  backoff and passing the last processed cursor in `auth.cursor`;
- the *reader* takes what the server pushes, in order, through `Stream` (dedupe, gap
  filling); the *dispatcher* hands each event to the application and only then moves
  the saved cursor and acknowledges messages as `delivered`;
- the *flusher* sends the outbox (sends and edits), oldest first, one at a time, until
  each has its answer; the outbox is durable when a state file is given;
- attachments go over HTTP (`files.py`) before the send that carries them is queued;
- the *typing teller* hands `typing` events to their callbacks: they are ephemeral,
  outside the stream, so they skip the reader and the dispatcher.

python-socketio's own reconnection is off: it does not reconnect after the server
closes the socket (which is what a server does when it stops gracefully), and it would
keep retrying a revoked token forever. Ours does the first and stops on the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import socketio

from messenger import protocol
from messenger.client import accounts
from messenger.client.api import push_subscriptions as list_subscriptions
from messenger.client.api import read_receipts as get_read_receipts
from messenger.client.api import search as search_http
from messenger.client.api import search_query
from messenger.client.api import set_read_receipts as put_read_receipts
from messenger.client.api import subscribe_webhook as add_webhook
from messenger.client.api import unsubscribe as remove_subscription
from messenger.client.files import download as fetch_file
from messenger.client.files import download_thumbnail as fetch_thumbnail
from messenger.client.files import upload as upload_file
from messenger.client.ids import new_client_id
from messenger.client.state import Outgoing, StateStore
from messenger.client.stream import Stream
from messenger.client.types import (
    Downloaded,
    Event,
    Exported,
    Message,
    MessageUpdated,
    MessengerClientError,
    NewMessage,
    PushSubscription,
    Receipt,
    SearchPage,
    SearchResult,
    Session,
    Typing,
    Uploaded,
    parse_search_page,
    parse_typing,
)

log = logging.getLogger("messenger.client")

E = TypeVar("E", NewMessage, Receipt, MessageUpdated, Typing)
Callback = Callable[[E], Awaitable[None] | None]
_CONNECTED = "__connected__"  # marks a new connection in the reader's queue
MARK_BATCH = protocol.MARK_IDS_MAX
# Upload failures that a later attempt may not meet: retried while the client is open.
UPLOAD_RETRIED = frozenset({"unavailable", "internal", "rate_limited", "timeout"})
SEARCH_PAGE_MAX = protocol.SEARCH_LIMIT_MAX


class Client:
    """A user's session: send through a durable outbox, receive events in order.

    Use as `async with Client(url, token, state_path) as client:`. Register callbacks
    before entering (or at any time); events that arrive while nobody listens wait
    (and stay undelivered on the server) until a callback or `events()` takes them.
    """

    def __init__(
        self,
        url: str,
        token: str,
        state_path: str | Path | None = None,
        *,
        call_timeout: float = 10.0,
        reconnect_delay: float = 0.25,
        reconnect_delay_max: float = 5.0,
        transports: tuple[str, ...] = ("websocket",),
    ) -> None:
        self.url = url
        self._token = token
        self._state = StateStore(state_path)
        self._call_timeout = call_timeout
        self._delay_min = reconnect_delay
        self._delay_max = reconnect_delay_max
        self._transports = list(transports)
        self._stream = Stream(None)
        self._committed: int | None = None  # the saved cursor: passed at connect
        self._taken_cursor: int | None = None  # the application has everything up to it
        self._me: str | None = None  # learned from the first stored send
        self._sio: socketio.AsyncClient | None = None
        self._connected = asyncio.Event()
        self._synced = asyncio.Event()
        self._inbound: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._ready: asyncio.Queue[tuple[list[Event], int | None]] = asyncio.Queue()
        self._outbox_wakeup = asyncio.Event()
        self._ack_wakeup = asyncio.Event()
        self._consumers_changed = asyncio.Event()
        self._acks: set[int] = set()
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._message_callbacks: list[Callback[NewMessage]] = []
        self._receipt_callbacks: list[Callback[Receipt]] = []
        self._update_callbacks: list[Callback[MessageUpdated]] = []
        self._typing_callbacks: list[Callback[Typing]] = []
        self._typing_inbox: asyncio.Queue[Typing] = asyncio.Queue()
        self._subscriber: asyncio.Queue[tuple[Event, asyncio.Future[bool]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first_attempt: asyncio.Future[MessengerClientError | None] | None = None
        self._refusal: MessengerClientError | None = None
        self._failure: MessengerClientError | None = None
        self._stopped = asyncio.Event()  # set while the client is not open
        self._stopped.set()

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Load the state, start connecting and flush the outbox.

        Raises `MessengerClientError("unauthorized")` if the server refuses the token.
        If the server cannot be reached, returns anyway and keeps trying: sends are
        queued meanwhile.
        """
        await self._state.open()
        self._stopped.clear()
        self._committed = await self._state.get_cursor()
        self._stream = Stream(self._committed)
        self._first_attempt = asyncio.get_running_loop().create_future()
        for work in (
            self._supervise,
            self._read,
            self._deliver,
            self._flush,
            self._acknowledge,
            self._tell_typing,
        ):
            self._tasks.append(asyncio.create_task(work(), name=f"messenger-{work.__name__}"))
        self._outbox_wakeup.set()
        refused = await self._first_attempt
        if refused is not None:
            await self.close()
            raise refused

    async def close(self) -> None:
        """Stop; the outbox keeps whatever has not been answered, for the next open."""
        self._stopped.set()
        if self._acks and self._sio is not None:
            with contextlib.suppress(MessengerClientError):
                await self._call("delivered", {"ids": sorted(self._acks)[:MARK_BATCH]}, 2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._commit(self._taken_cursor)  # in case closing interrupted the last save
        closed = MessengerClientError("closed", "the client closed; the message stays queued")
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(closed)
        self._waiters.clear()
        await self._state.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def cursor(self) -> int | None:
        """The last stream position the application has taken (saved in the state)."""
        return self._committed

    async def wait_synced(self) -> None:
        """Wait until the current connection has replayed its backlog (bound it with
        `asyncio.timeout`)."""
        await self._synced.wait()

    # -- sending ------------------------------------------------------------------

    async def send(
        self,
        to: str,
        body: str,
        reply_to: int | None = None,
        attachments: Sequence[int] = (),
    ) -> Message:
        """Send a message (a reply to message `reply_to`, if given); return it as stored.

        `attachments` are ids from `upload` (up to 10, not yet sent; `body` may then be
        ""). They are queued with the message, so a resend carries the same ones.

        The message is queued in the outbox first and sent with a fresh client_id; it
        is resent with that same id after reconnects and restarts until the server
        answers, so it is stored exactly once. This waits through outages: cancelling
        the wait (e.g. `asyncio.wait_for`) does not cancel the send. Raises
        `MessengerClientError` for answers that no retry can change (`invalid`,
        `forbidden`, `not_found`, `too_large`), or `unauthorized` when the token is
        refused.
        """
        ids = tuple(int(i) for i in attachments)
        return await self._queue(
            Outgoing(new_client_id(), to, body, reply_to=reply_to, attachments=ids)
        )

    async def edit(self, message_id: int, body: str) -> Message:
        """Replace the body of one of our messages; return the message as it is now.

        Goes through the outbox like `send`, with a client_id of its own, so an edit
        retried after a reconnect or a restart is applied once: the server answers a
        repeat with the message as it is now, without undoing a later edit (3.6).
        Raises like `send`: `forbidden` (not ours, or past the edit window),
        `not_found` (no such message, or deleted).
        """
        return await self._queue(Outgoing(new_client_id(), "", body, edit_of=message_id))

    async def _queue(self, item: Outgoing) -> Message:
        """Put `item` in the outbox and wait for the server's answer to it."""
        if self._failure is not None:
            raise self._failure
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[item.client_id] = future
        try:
            await self._state.enqueue(item)
            self._outbox_wakeup.set()
            return await asyncio.shield(future)
        finally:
            self._waiters.pop(item.client_id, None)

    async def pending(self) -> list[Outgoing]:
        """The sends and edits still waiting for the server's answer, oldest first."""
        return await self._state.pending()

    async def _flush(self) -> None:
        delay = self._delay_min
        while True:
            await self._outbox_wakeup.wait()
            self._outbox_wakeup.clear()
            if await self._flush_once():
                delay = self._delay_min
                continue
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, self._delay_max)
            self._outbox_wakeup.set()

    async def _flush_once(self) -> bool:
        """Send the outbox in order; False when a transient failure stopped it."""
        for item in await self._state.pending():
            await self._connected.wait()
            event, payload = _wire(item)
            try:
                answer = await self._call(event, payload, self._call_timeout)
            except MessengerClientError as exc:
                if not exc.permanent:
                    log.info("%s %s will be retried: %s", event, item.client_id, exc)
                    return False
                await self._state.remove(item.client_id)
                self._settle(item.client_id, exc)
                continue
            message = Message.from_dict(answer["message"])
            self._me = message.sender
            await self._state.remove(item.client_id)
            self._settle(item.client_id, message)
        return True

    def _settle(self, client_id: str, outcome: Message | MessengerClientError) -> None:
        future = self._waiters.get(client_id)
        if future is None or future.done():
            return
        if isinstance(outcome, Message):
            future.set_result(outcome)
        else:
            future.set_exception(outcome)

    # -- attachments (HTTP, docs/attachments.md) ------------------------------------

    async def upload(
        self,
        source: str | PathLike[str] | bytes,
        content_type: str,
        name: str | None = None,
    ) -> Uploaded:
        """Upload a file (a path, streamed from disk, never read whole) or bytes;
        returns the server's answer, whose `id` goes in `send(..., attachments=)`.

        While the client is open, failures that a later attempt may not meet (the
        server unreachable, `internal`, `rate_limited`) are retried with backoff, so an
        upload waits through outages like a send; closing the client ends the wait with
        `closed`. A retry stores nothing twice: the server keeps one copy of the same
        bytes (an upload that no send takes is collected after a day). Raises
        `too_large` (over the server's limit or the user's quota), `invalid` (a
        declared image whose bytes are not one, a bad name or type), or the `OSError`
        of a file that cannot be read. Before `open()` it is one plain attempt.
        """
        delay = self._delay_min
        while True:
            try:
                return await upload_file(self.url, self._token, source, content_type, name)
            except MessengerClientError as exc:
                if exc.code not in UPLOAD_RETRIED or self._stopped.is_set():
                    raise
                log.info("upload will be retried: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_jitter(delay)):
                    await self._stopped.wait()
            if self._stopped.is_set():
                raise MessengerClientError("closed", "the client closed during the upload")
            delay = min(delay * 2, self._delay_max)

    async def download(self, attachment_id: int, path: str | PathLike[str]) -> Downloaded:
        """Stream an attachment of a message of ours (or our own upload) to `path`.

        Written to `<path>.part` and renamed once complete and matching the server's
        SHA-256, so `path` never holds a partial file. A plain request: raises
        `unavailable` without the server, `not_found` for an id that is not ours to
        see (or deleted for everyone) exactly as for one that does not exist.
        """
        return await fetch_file(self.url, self._token, attachment_id, path)

    async def download_thumbnail(self, attachment_id: int, path: str | PathLike[str]) -> Downloaded:
        """Stream the PNG thumbnail of an image attachment (`Attachment.thumbnail`) to
        `path`, like `download`; `not_found` for one without."""
        return await fetch_thumbnail(self.url, self._token, attachment_id, path)

    # -- changing sent messages (3.6) and typing (3.7) ---------------------------

    async def delete(self, message_id: int, for_everyone: bool) -> Message | None:
        """Delete a message for everyone (ours, within the window: returns the
        tombstone) or only for us (either party, any time: returns None).

        Not queued: a delete is only worth making while the user watches, and a
        repeat is harmless (the server answers it the same), so call it again after
        a failure.
        """
        scope = "everyone" if for_everyone else "me"
        answer = await self.request(protocol.DELETE, {"id": message_id, "for": scope})
        message = answer.get("message")
        return Message.from_dict(message) if isinstance(message, dict) else None

    async def react(self, message_id: int, emoji: str) -> Message:
        """Add our reaction `emoji` (one emoji) to a message; returns it as it is now."""
        answer = await self.request(protocol.REACT, {"id": message_id, "emoji": emoji})
        return Message.from_dict(answer["message"])

    async def unreact(self, message_id: int, emoji: str) -> Message:
        """Remove our reaction `emoji` from a message; returns it as it is now."""
        answer = await self.request(protocol.UNREACT, {"id": message_id, "emoji": emoji})
        return Message.from_dict(answer["message"])

    async def typing(self, to: str, state: bool) -> None:
        """Tell `to` that the user is typing (True; repeat at least every 3 s while
        they type) or stopped (False).

        Fire and forget: no outbox and no answer asked for, since a stale typing
        state is worth nothing. Dropped when not connected.
        """
        sio = self._sio
        if sio is None:
            return
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await sio.emit(protocol.TYPING, {"to": to, "state": state})

    # -- settings (HTTP, 3.8) ------------------------------------------------------

    async def read_receipts(self) -> bool:
        """Whether senders learn when this user reads their messages."""
        return await get_read_receipts(self.url, self._token)

    async def set_read_receipts(self, on: bool) -> bool:
        """Make reading public (True) or private (False); returns the setting now."""
        return await put_read_receipts(self.url, self._token, on)

    # -- push to offline devices (HTTP, 3.9) ---------------------------------------

    async def subscribe_webhook(
        self, url: str, label: str | None = None, preview: bool = False
    ) -> PushSubscription:
        """Have pushes for this user POSTed, signed, to `url` while no device of theirs
        is connected; returns the subscription with its one-time `secret`.

        The subscription belongs to this client's session (logging out ends it). Keep
        the secret: the receiver checks signatures with it and the server never shows
        it again. Raises `invalid` for a URL the server will not call. Works without
        `open()`: it is plain HTTP.
        """
        return await add_webhook(self.url, self._token, url, label, preview)

    async def subscriptions(self) -> list[PushSubscription]:
        """The user's push subscriptions, from all sessions; `current` marks ours."""
        return await list_subscriptions(self.url, self._token)

    async def unsubscribe(self, subscription_id: int) -> None:
        """Remove one of the user's subscriptions; raises `not_found` if there is none."""
        await remove_subscription(self.url, self._token, subscription_id)

    # -- the account (HTTP) ----------------------------------------------------------

    async def change_password(self, current: str, new: str) -> None:
        """Replace the user's password. Every other session ends (their sockets are
        dropped); this client's token stays valid and its connection stays up.
        Raises `bad_credentials` for a wrong `current`, `invalid` for a refused `new`."""
        await accounts.change_password(self.url, self._token, current, new)

    async def sessions(self) -> list[Session]:
        """The user's live sessions, newest first; `current` marks this client's."""
        return await accounts.sessions(self.url, self._token)

    async def end_session(self, session_id: int) -> None:
        """End one of the user's sessions (its sockets are dropped); `not_found` if it
        is not a live one of theirs. Ending this client's own session is a logout:
        the client then stops with `unauthorized`."""
        await accounts.end_session(self.url, self._token, session_id)

    async def delete_account(self, password: str) -> None:
        """Remove the account for good (`bad_credentials` for a wrong password). Every
        session ends, this one too, so the client then stops with `unauthorized`; its
        outbox keeps what was queued, which no one can send any more."""
        await accounts.delete_account(self.url, self._token, password)

    async def export(self, path: str | PathLike[str]) -> Exported:
        """Stream everything the server keeps about the user (JSON) to `path`, through
        a temporary file renamed once complete; returns where and how many bytes."""
        return await accounts.export(self.url, self._token, path)

    # -- requests -----------------------------------------------------------------

    async def mark_read(self, ids: list[int]) -> int:
        """Mark messages to us as read (which implies delivered); returns how many changed."""
        updated = 0
        unique = sorted(set(ids))
        for start in range(0, len(unique), MARK_BATCH):
            answer = await self.request(protocol.READ, {"ids": unique[start : start + MARK_BATCH]})
            updated += int(answer["updated"])
        return updated

    async def history(
        self, with_: str, *, before: int | None = None, limit: int = 50
    ) -> AsyncIterator[list[Message]]:
        """Pages of the conversation with `with_`: the newest page first, then older ones.

        Each page is in ascending id order (as the server gives it); the iteration ends
        at the first message of the conversation. `before` starts further back.
        """
        while True:
            query: dict[str, Any] = {"with": with_, "limit": limit}
            if before is not None:
                query["before"] = before
            answer = await self.request(protocol.HISTORY, query)
            page = [Message.from_dict(m) for m in answer["messages"]]
            if page:
                yield page
            if not page or not answer["has_more"]:
                return
            before = page[0].id

    async def search(
        self,
        query: str,
        with_: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> SearchPage:
        """One page of the user's messages (both directions) matching `query`, newest
        first: every whitespace-separated term must occur, case and accents ignored.

        `with_` keeps one conversation; `before` (a message id, `page.next_before`)
        asks for older results; `limit` is 1 to 50 (the server's default, 20, if
        None). Over the socket while connected, else over HTTP, so it works before
        `open()` and during outages the server is reachable through. Raises `invalid`
        (an empty or too long query, a bad limit, `with_` ourselves) or `not_found`
        (an unknown `with_`).
        """
        fields = search_query(query, with_, before, limit)
        if self._sio is None:
            return await search_http(self.url, self._token, query, with_, before, limit)
        try:
            answer = await self._call(protocol.SEARCH, fields, self._call_timeout)
        except MessengerClientError as exc:
            if exc.code != "unavailable":
                raise
            # The socket went away under us: HTTP may still reach the server.
            return await search_http(self.url, self._token, query, with_, before, limit)
        return parse_search_page(answer)

    async def search_all(
        self,
        query: str,
        with_: str | None = None,
        *,
        max_results: int = 200,
        page_size: int = SEARCH_PAGE_MAX,
    ) -> AsyncIterator[SearchResult]:
        """Every result of `query`, newest first, page after page (following
        `before`), up to `max_results`: a common word in years of messages would
        otherwise page through all of them. Raises like `search`."""
        before: int | None = None
        left = max_results
        while left > 0:
            page = await self.search(query, with_, before, min(page_size, left, SEARCH_PAGE_MAX))
            for result in page.results[:left]:
                yield result
            left -= min(len(page.results), left)
            following = page.next_before
            if following is None or (before is not None and following >= before):
                return  # the last page, or a server that does not move back: stop
            before = following

    async def request(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Any client event of the protocol: waits for a connection, raises on `ok: false`."""
        if self._failure is not None:
            raise self._failure
        try:
            async with asyncio.timeout(self._call_timeout):
                await self._connected.wait()
        except TimeoutError:
            raise MessengerClientError("unavailable", "not connected to the server") from None
        return await self._call(event, payload, self._call_timeout)

    async def _call(self, event: str, payload: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Emit `event` and wait for its acknowledgement.

        Not `AsyncClient.call`: it waits through `asyncio.wait_for`, which on Python
        3.11 returns the answer instead of raising when the calling task is cancelled
        just as the answer arrives (CPython gh-86296). The task then carries on as if
        never cancelled, and `close()`, which cancels and awaits it, waits forever.
        """
        sio = self._sio
        if sio is None:
            raise MessengerClientError("unavailable", "not connected to the server")
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*args: Any) -> None:
            if not acked.done():
                acked.set_result(args[0] if len(args) == 1 else args)

        try:
            await sio.emit(event, payload, callback=on_ack)
        except socketio.exceptions.SocketIOError as exc:
            raise MessengerClientError("unavailable", str(exc)) from None
        try:
            async with asyncio.timeout(seconds):
                answer = await acked
        except TimeoutError:
            raise MessengerClientError("timeout", f"no answer to {event}") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            raise MessengerClientError.from_answer(answer)
        return answer

    # -- receiving ----------------------------------------------------------------

    def on_message(self, callback: Callback[NewMessage]) -> None:
        """Call `callback(event)` (sync or async) for every new message, in order."""
        self._message_callbacks.append(callback)
        self._consumers_changed.set()

    def on_receipt(self, callback: Callback[Receipt]) -> None:
        """Call `callback(event)` for every receipt (delivered/read), in order."""
        self._receipt_callbacks.append(callback)
        self._consumers_changed.set()

    def on_message_updated(self, callback: Callback[MessageUpdated]) -> None:
        """Call `callback(event)` for every edit, delete or reaction, in stream order."""
        self._update_callbacks.append(callback)
        self._consumers_changed.set()

    def on_typing(self, callback: Callback[Typing]) -> None:
        """Call `callback(event)` when someone starts or stops typing to us.

        Not a stream event: it comes as soon as it arrives, outside the order of the
        others, and is not replayed. Show it for at most `TYPING_SHOWN_FOR` seconds
        after the last `True`, since a `False` can be lost.
        """
        self._typing_callbacks.append(callback)

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in stream order. One iterator at a time.

        A message counts as taken (and is acknowledged as delivered) when it is yielded.
        """
        if self._subscriber is not None:
            raise RuntimeError("events() is already being iterated")
        queue: asyncio.Queue[tuple[Event, asyncio.Future[bool]]] = asyncio.Queue(maxsize=1)
        self._subscriber = queue
        self._consumers_changed.set()
        try:
            while True:
                event, taken = await queue.get()
                taken.set_result(True)
                yield event
        finally:
            self._subscriber = None
            while not queue.empty():  # handed over but not yielded: give it back
                _, taken = queue.get_nowait()
                taken.set_result(False)

    async def _read(self) -> None:
        """Put the pushed events in order (Stream); the dispatcher hands them over."""
        while True:
            name, data = await self._inbound.get()
            if name == _CONNECTED:
                self._stream.new_connection()
                self._synced.clear()
                continue
            try:
                events = await self._stream.feed(name, data, self._sync_page)
            except MessengerClientError as exc:
                # The gap stays; a new connection from the cursor replays it.
                log.warning("could not fill a gap in the stream (%s); reconnecting", exc)
                await self._drop_connection()
                continue
            self._ready.put_nowait((events, self._stream.cursor))
            if name == protocol.SYNCED:
                self._synced.set()

    async def _deliver(self) -> None:
        """Hand events to the application, then move the saved cursor past them.

        Separate from `_read` so that a slow application never holds up the socket,
        and a cursor is saved only once the application has what comes before it.
        """
        while True:
            events, cursor = await self._ready.get()
            for event in events:
                await self._dispatch(event)
                self._taken(event)
            self._taken_cursor = cursor
            await self._commit(cursor)

    async def _sync_page(self, after: int) -> tuple[list[tuple[str, Any]], int, bool]:
        answer = await self._call(
            protocol.SYNC, {"after": after, "limit": protocol.SYNC_LIMIT_MAX}, self._call_timeout
        )
        entries = [(str(e["event"]), e["data"]) for e in answer["events"]]
        return entries, int(answer["cursor"]), bool(answer["has_more"])

    async def _dispatch(self, event: Event) -> None:
        """Hand one event to the application; returns once it has been taken."""
        callbacks = self._callbacks_for(event)
        await _call_each(callbacks, event)
        while True:
            queue = self._subscriber
            if queue is not None:
                taken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                await queue.put((event, taken))
                if await taken:
                    return
                continue
            if callbacks or self._has_stream_callbacks():
                return  # callbacks exist; none for this kind means nobody wants it
            self._consumers_changed.clear()
            await self._consumers_changed.wait()

    def _callbacks_for(self, event: Event) -> list[Any]:
        if isinstance(event, NewMessage):
            return self._message_callbacks
        if isinstance(event, Receipt):
            return self._receipt_callbacks
        return self._update_callbacks

    def _has_stream_callbacks(self) -> bool:
        return bool(self._message_callbacks or self._receipt_callbacks or self._update_callbacks)

    async def _tell_typing(self) -> None:
        """Hand `typing` events to their callbacks in arrival order, off the socket."""
        while True:
            event = await self._typing_inbox.get()
            await _call_each(self._typing_callbacks, event)

    def _taken(self, event: Event) -> None:
        if isinstance(event, NewMessage) and event.message.sender != self._me:
            # Messages from us come back too; acking them is harmless but useless.
            if event.message.status == "sent":
                self._acks.add(event.message.id)
                self._ack_wakeup.set()

    async def _commit(self, cursor: int | None) -> None:
        if cursor is not None and cursor != self._committed:
            await self._state.set_cursor(cursor)
            self._committed = cursor

    async def _acknowledge(self) -> None:
        """Send `delivered` for taken messages, in batches, until the server has them."""
        delay = self._delay_min
        while True:
            await self._ack_wakeup.wait()
            self._ack_wakeup.clear()
            while self._acks:
                await self._connected.wait()
                ids = sorted(self._acks)[:MARK_BATCH]
                try:
                    await self._call(protocol.DELIVERED, {"ids": ids}, self._call_timeout)
                except MessengerClientError as exc:
                    if not exc.permanent:
                        await asyncio.sleep(_jitter(delay))
                        delay = min(delay * 2, self._delay_max)
                        continue
                    log.warning("delivered refused for %s: %s", ids, exc)
                self._acks.difference_update(ids)
                delay = self._delay_min

    # -- the connection -----------------------------------------------------------

    def _auth(self) -> dict[str, Any]:
        """Called by python-socketio at each connect, so the cursor is the latest."""
        auth: dict[str, Any] = {"token": self._token}
        if self._committed is not None:
            auth["cursor"] = self._committed
        return auth

    async def _supervise(self) -> None:
        delay = self._delay_min
        while True:
            lost = asyncio.Event()
            sio = self._socket(lost)
            self._refusal = None
            try:
                await sio.connect(
                    self.url,
                    auth=self._auth,
                    transports=self._transports,
                    wait_timeout=self._call_timeout,
                )
            except (socketio.exceptions.ConnectionError, ValueError) as exc:
                await _quietly_close(sio)
                if self._refusal is not None and self._refusal.code == "unauthorized":
                    self._give_up(self._refusal)
                    return
                self._first_done(None)
                log.info("cannot connect to %s (%s); retrying in %.1fs", self.url, exc, delay)
                await asyncio.sleep(_jitter(delay))
                delay = min(delay * 2, self._delay_max)
                continue
            self._first_done(None)
            delay = self._delay_min
            try:
                _raise_if_cancelled()  # connect() waits with wait_for too (see _call)
                await lost.wait()
            finally:
                await _quietly_close(sio)
            log.info("connection to %s lost; reconnecting", self.url)
            await asyncio.sleep(_jitter(delay))

    def _socket(self, lost: asyncio.Event) -> socketio.AsyncClient:
        """A fresh AsyncClient per connection: no state carried over from a dead one."""
        sio = socketio.AsyncClient(reconnection=False)

        async def on_connect() -> None:
            self._sio = sio
            self._inbound.put_nowait((_CONNECTED, None))
            self._connected.set()
            self._outbox_wakeup.set()
            self._ack_wakeup.set()

        async def on_disconnect(*_: Any) -> None:
            if self._sio is sio:
                self._sio = None
                self._connected.clear()
            lost.set()

        async def on_connect_error(data: Any = None) -> None:
            if isinstance(data, dict) and "code" in data:
                self._refusal = MessengerClientError(str(data["code"]), str(data.get("message")))

        def forward(name: str) -> Callable[[Any], Awaitable[None]]:
            async def handler(data: Any = None) -> None:
                if self._sio is sio:
                    self._inbound.put_nowait((name, data))

            return handler

        async def on_typing(data: Any = None) -> None:
            event = parse_typing(data)
            if event is not None and self._sio is sio:
                self._typing_inbox.put_nowait(event)

        sio.on("connect", on_connect)
        sio.on("disconnect", on_disconnect)
        sio.on("connect_error", on_connect_error)
        for name in (
            protocol.NEW_MESSAGE,
            protocol.RECEIPT,
            protocol.MESSAGE_UPDATED,
            protocol.SYNCED,
        ):
            sio.on(name, forward(name))
        sio.on(protocol.TYPING, on_typing)
        return sio

    async def _drop_connection(self) -> None:
        sio = self._sio
        if sio is not None:
            await _quietly_close(sio)

    def _first_done(self, refusal: MessengerClientError | None) -> None:
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(refusal)

    def _give_up(self, refusal: MessengerClientError) -> None:
        """The token is refused: fail every waiting send; the outbox keeps them."""
        log.warning("the server refused the token: %s", refusal)
        self._failure = refusal
        self._first_done(refusal)
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(refusal)


def _wire(item: Outgoing) -> tuple[str, dict[str, Any]]:
    """The event and payload that carry an outbox item: an `edit` or a `send`."""
    if item.edit_of is not None:
        return protocol.EDIT, {"id": item.edit_of, "body": item.body, "client_id": item.client_id}
    payload: dict[str, Any] = {"to": item.to, "body": item.body, "client_id": item.client_id}
    if item.reply_to is not None:
        payload["reply_to"] = item.reply_to
    if item.attachments:
        payload["attachments"] = list(item.attachments)
    return protocol.SEND, payload


async def _call_each(callbacks: list[Any], event: object) -> None:
    """Run the application's callbacks (plain or async) for one event; a failing
    one is logged, so it cannot stop the client's tasks."""
    for callback in callbacks:
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("an event callback failed")


def _raise_if_cancelled() -> None:
    """Honour a cancel that a library call swallowed (see `Client._call`): the task's
    count of cancel requests stays up until someone calls `uncancel()`."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _quietly_close(sio: socketio.AsyncClient) -> None:
    with contextlib.suppress(Exception):
        await sio.disconnect()
    with contextlib.suppress(Exception):
        await sio.shutdown()


def _jitter(delay: float) -> float:
    """Spread reconnects of many clients after an outage."""
    return delay * random.uniform(0.8, 1.2)
