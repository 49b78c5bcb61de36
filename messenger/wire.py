"""Everything the server sends, typed: Message objects, stream events and their seed
forms, the answers to commands, the error object (docs/protocol.md section 3).

The TypedDicts name each outbound shape once, as `client/types.py` does on the SDK
side (the server imports no client module). The functions are pure, over plain
values, shared by the writer (live pushes) and the stream reader (backlogs and
`sync`), so a replayed event is byte-for-byte the live one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, cast, overload

from messenger.protocol import (
    MESSAGE_UPDATED,
    NEW_MESSAGE,
    RECEIPT,
    RECEIVED_MESSAGE,
    STATUS_DELIVERED,
    STATUS_NAMES,
    Change,
)

# JSON without spaces, from one encoder built once: `json.dumps(..., separators=...)`
# builds a new encoder on every call, which costs about as much as the encoding. For
# Socket.IO packets (transport/packets.py) and stored receipt payloads (the writer).
to_compact_json = json.JSONEncoder(separators=(",", ":")).encode

# -- the shapes ------------------------------------------------------------------------
# Keys that are Python keywords (`from`, `with`) need the functional form.

ReplyRef = TypedDict(
    "ReplyRef",
    {"id": int, "from": str, "excerpt": str, "deleted": bool},
    total=False,
)
"""What a reply shows of the message it answers: `{id, from, excerpt}`, or
`{id, deleted: true}` once that one is deleted for everyone (3.1)."""

Reactions = dict[str, list[str]]
"""emoji -> the users who reacted with it, in the order they did."""


class AttachmentRef(TypedDict):
    """An attachment as a Message shows it (docs/attachments.md)."""

    id: int
    name: str
    size: int
    content_type: str
    width: NotRequired[int]
    height: NotRequired[int]
    thumbnail: bool


Message = TypedDict(
    "Message",
    {
        "id": int,
        "from": str,
        "to": str,
        "body": str | None,
        "client_id": str,
        "sent_at": str,
        "status": str,
        "delivered_at": str | None,
        "read_at": str | None,
        "reply_to": ReplyRef | None,
        "edited_at": str | None,
        "deleted": bool,
        "reactions": Reactions,
        "attachments": list[AttachmentRef],
        "hidden": NotRequired[bool],
    },
)
"""A stored message as it is now (3.1); times are `format_time` text."""


class NewMessageEvent(TypedDict):
    """`new_message` (3.3): live, the message as sent; replayed, as it is now."""

    cursor: int
    message: Message


class MessageUpdatedEvent(TypedDict):
    """`message_updated` (3.3): a message was edited, deleted or reacted to."""

    cursor: int
    message: Message
    change: Change


TypingNotice = TypedDict("TypingNotice", {"from": str, "state": bool})
"""`typing` (3.7) as the other user's devices get it: ephemeral, never in the stream."""


class ReceiptPayload(TypedDict):
    """What a receipt says, without its cursor: stored as the event's payload."""

    ids: list[int]
    status: str
    by: str
    at: str


class ReceiptEvent(ReceiptPayload):
    """`receipt` (3.3): messages `ids` reached `status` by `by`."""

    cursor: int


class SyncedEvent(TypedDict):
    """`synced` (3.3): the backlog after connect is sent; where the connection stands."""

    cursor: int


ReceivedMessage = TypedDict(
    "ReceivedMessage",
    {"id": int, "from": str, "to": str, "message": str, "sent_at": str},
)
"""`receivedMessage` (3.3): a message as `compat: "seed"` connections get it."""

StreamEvent = NewMessageEvent | ReceiptEvent | MessageUpdatedEvent
"""The payload of an event of a user's stream: what `cursor` counts (3.4)."""


class SyncEntry(TypedDict):
    """An element of the `sync` answer's `events`."""

    event: str
    data: StreamEvent


# Answers, without `ok`: the Socket.IO acknowledgement adds `"ok": true`; HTTP sends
# them as they are.


class SendAnswer(TypedDict):
    """`send`, `edit`, `react`, `unreact`, `delete` for everyone."""

    message: Message


class SettingsAnswer(TypedDict):
    """`GET`/`PUT /api/v1/users/me/settings`."""

    read_receipts: bool


class SessionInfo(TypedDict):
    """A live session of the user (`GET /api/v1/sessions`): never its token."""

    id: int
    created_at: str
    last_used_at: str | None
    user_agent: str | None
    address: str | None
    current: bool


class MarkAnswer(TypedDict):
    """`delivered` / `read`: how many messages changed status."""

    updated: int


class HistoryAnswer(TypedDict):
    messages: list[Message]
    has_more: bool


class SearchResult(TypedDict):
    message: Message
    # The body around the first hit, hits between U+0002 and U+0003 (3.10).
    snippet: str


class SearchAnswer(TypedDict):
    results: list[SearchResult]
    has_more: bool


class SyncAnswer(TypedDict):
    events: list[SyncEntry]
    cursor: int
    has_more: bool


class Seen(TypedDict):
    online: bool
    last_seen: str | None


class PresenceAnswer(TypedDict):
    """`presence`: one `Seen` per username asked about."""

    users: dict[str, Seen]


Conversation = TypedDict(
    "Conversation", {"with": str, "last_message": Message, "unread": int, "removed": bool}
)
"""An element of `GET /api/conversations`: a peer, the newest message, how many unread,
and whether the peer removed their account."""


class ConversationsAnswer(TypedDict):
    conversations: list[Conversation]


class ErrorObject(TypedDict):
    """What a failure says (`MessengerError.as_dict`): a protocol code and a message."""

    code: str
    message: str


class Failure(TypedDict):
    """A failed command's acknowledgement (3.2)."""

    ok: Literal[False]
    error: ErrorObject


class ErrorBody(TypedDict):
    """The body of an HTTP error response."""

    error: ErrorObject


# -- building them ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRef:
    id: int
    username: str


class StreamItem(NamedTuple):
    """One event of one user's stream, ready to emit: `data` carries its `cursor`.

    A named tuple: one is made per event pushed or replayed, and a frozen dataclass
    cost markedly more to build."""

    user_id: int
    seq: int
    event: str
    data: StreamEvent


def fitting_count(entries: Sequence[Any], max_bytes: int) -> int:
    """How many of `entries`, from the first, fit in an answer of at most `max_bytes`
    (always one at least, so a client can move on). Measured as the JSON they are sent
    as, ASCII only, so characters are bytes."""
    total = 0
    for count, entry in enumerate(entries):
        total += len(to_compact_json(entry)) + 1  # and its comma
        if total > max_bytes:
            return max(count, 1)
    return len(entries)


def utc_now() -> datetime:
    """Now, cut to milliseconds: what is stored is exactly what clients are shown."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@overload
def format_time(value: datetime) -> str: ...
@overload
def format_time(value: None) -> None: ...
def format_time(value: datetime | None) -> str | None:
    """`2026-12-01T12:00:00.123Z`: UTC, to the millisecond. Three per message sent,
    replayed or paged through: %-formatting costs much less than strftime."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (the fastest here)
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000,
    )


def formatted(value: str | None) -> str | None:
    """A time the database gave as the API's text already (`store.api_time`)."""
    return value


# How a row's times become the API's text: `format_time`, or `formatted`. The row's
# values are untyped; `Message` says what comes out.
ShowTime = Callable[[Any], Any]


def message_dict(
    row: Mapping[Any, Any],
    sender: str,
    recipient: str,
    show_time: ShowTime = format_time,
    *,
    viewer_id: int | None = None,
    reactions: Reactions | None = None,
    attachments: list[AttachmentRef] | None = None,
) -> Message:
    """A Message object (3.1) as `viewer_id` sees it now, from a `messages` row with
    the reply columns of `store.message_views`; `show_time` turns the row's times
    into the API's text (`formatted` for rows whose times the database formatted).

    The sender of a message read privately sees it `delivered` (3.8); a message its
    viewer deleted for themselves shows as `hidden` (the row says so in `hidden`)."""
    status = row["status"]
    read_at = row["read_at"]
    if row["read_private"] and viewer_id == row["sender_id"] and status > STATUS_DELIVERED:
        status, read_at = STATUS_DELIVERED, None
    deleted = row["deleted_at"] is not None
    hidden = bool(row.get("hidden"))
    message: Message = {
        "id": row["id"],
        "from": sender,
        "to": recipient,
        "body": None if deleted or hidden else row["body"],
        "client_id": row["client_id"],
        "sent_at": show_time(row["sent_at"]),
        "status": STATUS_NAMES[status],
        "delivered_at": show_time(row["delivered_at"]),
        "read_at": show_time(read_at),
        "reply_to": None if deleted or hidden else reply_ref(row, sender, recipient),
        "edited_at": show_time(row["edited_at"]),
        "deleted": deleted or hidden,
        "reactions": {} if deleted or hidden or reactions is None else reactions,
        "attachments": [] if deleted or hidden or attachments is None else attachments,
    }
    if hidden:
        message["hidden"] = True
    return message


def attachment_ref(row: Mapping[Any, Any]) -> AttachmentRef:
    """An `attachments` row as a Message shows it."""
    ref: AttachmentRef = {
        "id": row["id"],
        "name": row["name"],
        "size": row["size"],
        "content_type": row["content_type"],
        "thumbnail": row["thumbnail_sha256"] is not None,
    }
    if row["width"] is not None:
        ref["width"], ref["height"] = row["width"], row["height"]
    return ref


def reply_ref(row: Mapping[Any, Any], sender: str, recipient: str) -> ReplyRef | None:
    """The `reply_to` of a message row: the replied-to message is of the same
    conversation, so its author is the row's sender or recipient."""
    parent = row["reply_to_id"]
    if parent is None:
        return None
    if row["reply_deleted_at"] is not None or row["reply_sender_id"] is None:
        return {"id": parent, "deleted": True}
    author = sender if row["reply_sender_id"] == row["sender_id"] else recipient
    return {"id": parent, "from": author, "excerpt": row["reply_excerpt"]}


def new_message_item(user_id: int, seq: int, message: Message) -> StreamItem:
    event: NewMessageEvent = {"cursor": seq, "message": message}
    return StreamItem(user_id, seq, NEW_MESSAGE, event)


def message_updated_item(user_id: int, seq: int, message: Message, change: Change) -> StreamItem:
    event: MessageUpdatedEvent = {"cursor": seq, "message": message, "change": change}
    return StreamItem(user_id, seq, MESSAGE_UPDATED, event)


def receipt_payload(ids: list[int], status: int, by: str, at: datetime) -> ReceiptPayload:
    """What a receipt says, without its cursor (stored as the event's payload)."""
    return {"ids": ids, "status": STATUS_NAMES[status], "by": by, "at": format_time(at)}


def receipt_item(user_id: int, seq: int, payload: ReceiptPayload) -> StreamItem:
    event: ReceiptEvent = {"cursor": seq, **payload}
    return StreamItem(user_id, seq, RECEIPT, event)


def synced_event(cursor: int) -> SyncedEvent:
    return {"cursor": cursor}


def seed_form(item: StreamItem) -> tuple[str, StreamEvent | ReceivedMessage] | None:
    """The event as a seed-protocol connection gets it: `receivedMessage` for messages,
    receipts as they are, and nothing for what the seed protocol has no event for
    (`message_updated`, and a message deleted by the time it is pushed)."""
    if item.event == RECEIPT:
        return item.event, item.data
    if item.event != NEW_MESSAGE:
        return None
    message = cast(NewMessageEvent, item.data)["message"]
    if message["deleted"]:
        return None
    return RECEIVED_MESSAGE, {
        "id": message["id"],
        "from": message["from"],
        "to": message["to"],
        "message": cast(str, message["body"]),
        "sent_at": message["sent_at"],
    }


def sync_entry(item: StreamItem) -> SyncEntry:
    """An element of the `sync` answer's `events` list."""
    return {"event": item.event, "data": item.data}
