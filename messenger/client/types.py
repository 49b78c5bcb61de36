"""What the SDK hands to applications: typed messages and events, and its one error.

The wire shapes are PROTOCOL.md 3.1, 3.3, 3.7 and 3.9 and docs/attachments.md; these
dataclasses (and two TypedDicts) give them names and types so that applications (and
mypy) do not dig through untyped dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from messenger import protocol
from messenger.client.snippets import Snippet
from messenger.errors import ErrorCode

# Answers that retrying cannot change: the message leaves the outbox and `send` raises.
PERMANENT_CODES = frozenset(
    {ErrorCode.INVALID, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.TOO_LARGE}
)


class MessengerClientError(Exception):
    """A failure answered by the server (or met by the SDK), with the protocol's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        """True when retrying the same request can never succeed."""
        return self.code in PERMANENT_CODES

    @classmethod
    def from_answer(cls, answer: Any) -> MessengerClientError:
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            return cls(ErrorCode.INTERNAL.value, f"unexpected answer {answer!r:.200}")
        return cls(str(error.get("code", "internal")), str(error.get("message", "")))


@dataclass(frozen=True, slots=True)
class ReplyRef:
    """The message a reply answers, as it is now (PROTOCOL.md 3.1 `reply_to`).

    `sender` and `excerpt` are None once that message is deleted for everyone; the
    excerpt is recomputed by the server each time, so an edit shows through.
    """

    id: int
    sender: str | None
    excerpt: str | None
    deleted: bool

    @classmethod
    def from_dict(cls, data: Any) -> ReplyRef | None:
        if not isinstance(data, dict) or not isinstance(data.get("id"), int):
            return None
        deleted = data.get("deleted") is True
        return cls(
            id=data["id"],
            sender=None if deleted else _optional_str(data.get("from")),
            excerpt=None if deleted else _optional_str(data.get("excerpt")),
            deleted=deleted,
        )


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a message carries (docs/attachments.md), as the Message shows it.

    `width` and `height` are the pixels of an image the server could decode, else
    None; `thumbnail` says whether `download_thumbnail` has a PNG to give.
    """

    id: int
    name: str
    size: int
    content_type: str
    width: int | None = None
    height: int | None = None
    thumbnail: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> Attachment | None:
        if not isinstance(data, dict) or not isinstance(data.get("id"), int):
            return None
        return cls(
            id=data["id"],
            name=str(data.get("name", "file")),
            size=int(data.get("size", 0)),
            content_type=str(data.get("content_type", "application/octet-stream")),
            width=_optional_int(data.get("width")),
            height=_optional_int(data.get("height")),
            thumbnail=data.get("thumbnail") is True,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message (PROTOCOL.md 3.1), as it was when the server last showed it.

    `body` is None once the message is deleted (for everyone, or `hidden` for us).
    `reactions` maps each emoji to the users who reacted with it, in their order;
    `attachments` are the files it carries (none once it is deleted). Fields an older
    server does not send take their empty defaults.
    """

    id: int
    sender: str
    recipient: str
    body: str | None
    client_id: str
    sent_at: str
    status: str
    delivered_at: str | None
    read_at: str | None
    reply_to: ReplyRef | None = None
    edited_at: str | None = None
    deleted: bool = False
    reactions: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    hidden: bool = False
    attachments: tuple[Attachment, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=int(data["id"]),
            sender=str(data["from"]),
            recipient=str(data["to"]),
            body=_optional_str(data.get("body")),
            client_id=str(data["client_id"]),
            sent_at=str(data["sent_at"]),
            status=str(data["status"]),
            delivered_at=data.get("delivered_at"),
            read_at=data.get("read_at"),
            reply_to=ReplyRef.from_dict(data.get("reply_to")),
            edited_at=_optional_str(data.get("edited_at")),
            deleted=data.get("deleted") is True,
            reactions=_reactions(data.get("reactions")),
            hidden=data.get("hidden") is True,
            attachments=_attachments(data.get("attachments")),
        )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _attachments(value: Any) -> tuple[Attachment, ...]:
    if not isinstance(value, list):
        return ()
    found = (Attachment.from_dict(item) for item in value)
    return tuple(item for item in found if item is not None)


def _reactions(value: Any) -> dict[str, tuple[str, ...]]:
    """The wire's emoji -> [users] object; dicts keep the server's order of emojis."""
    if not isinstance(value, dict):
        return {}
    return {str(emoji): tuple(str(u) for u in users) for emoji, users in value.items()}


@dataclass(frozen=True, slots=True)
class NewMessage:
    """`new_message`: a message to or from the user (our own sends come back too)."""

    cursor: int
    message: Message


@dataclass(frozen=True, slots=True)
class Receipt:
    """`receipt`: messages `ids` reached `status` ("delivered" or "read") by `by`."""

    cursor: int
    ids: tuple[int, ...]
    status: str
    by: str
    at: str


@dataclass(frozen=True, slots=True)
class MessageUpdated:
    """`message_updated`: `message` as it is after `change` ("edited", "deleted",
    "reacted", or "hidden" when we deleted it for ourselves). A stream event, so it
    comes in cursor order with messages and receipts."""

    cursor: int
    message: Message
    change: str


@dataclass(frozen=True, slots=True)
class Typing:
    """`typing`: `sender` started (True) or stopped typing to us. Ephemeral: no
    cursor, never replayed; show it for at most `TYPING_SHOWN_FOR` seconds."""

    sender: str
    state: bool


# A client shows a typing indicator at most this long after the last `true` (3.7).
TYPING_SHOWN_FOR = 6.0

Event = NewMessage | Receipt | MessageUpdated


def parse_event(name: str, data: Any) -> Event | None:
    """A stream event from the wire, or None for anything this SDK does not know."""
    if not isinstance(data, dict) or not isinstance(data.get("cursor"), int):
        return None
    if name == protocol.NEW_MESSAGE and isinstance(data.get("message"), dict):
        return NewMessage(data["cursor"], Message.from_dict(data["message"]))
    if name == protocol.MESSAGE_UPDATED and isinstance(data.get("message"), dict):
        message = Message.from_dict(data["message"])
        return MessageUpdated(data["cursor"], message, str(data.get("change")))
    if name == protocol.RECEIPT:
        return Receipt(
            cursor=data["cursor"],
            ids=tuple(int(i) for i in data.get("ids", [])),
            status=str(data.get("status")),
            by=str(data.get("by")),
            at=str(data.get("at")),
        )
    return None


def parse_typing(data: Any) -> Typing | None:
    """The ephemeral `typing` event, or None if it is not the documented shape."""
    if not isinstance(data, dict) or not isinstance(data.get("from"), str):
        return None
    if not isinstance(data.get("state"), bool):
        return None
    return Typing(data["from"], data["state"])


class PushSubscription(TypedDict):
    """A push subscription as the server shows it (PROTOCOL.md 3.9).

    A dict rather than a dataclass because it is what applications store and pass on
    (to a gateway's configuration, say) as JSON. `session` is the id of the login that
    made it and `current` whether that is this client's token: a subscription lives as
    long as its session, and a logout ends it. `secret` (a webhook's HMAC key) is
    present only in the answer to the subscribe that made it: the server never shows
    it again.
    """

    id: int
    kind: str
    label: str | None
    preview: bool
    created_at: str
    session: int
    current: bool
    secret: NotRequired[str]


def parse_subscription(data: Any) -> PushSubscription:
    """The documented fields of a Subscription, typed; MessengerClientError if the
    answer is not one (so a wrong server fails here, not later in the application)."""
    try:
        made: PushSubscription = {
            "id": int(data["id"]),
            "kind": str(data["kind"]),
            "label": _optional_str(data.get("label")),
            "preview": data.get("preview") is True,
            "created_at": str(data["created_at"]),
            "session": int(data["session"]),
            "current": data.get("current") is True,
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        raise MessengerClientError(
            ErrorCode.INTERNAL.value, f"not a push subscription: {data!r:.200}"
        ) from None
    if isinstance(data.get("secret"), str):
        made["secret"] = data["secret"]
    return made


class Uploaded(TypedDict):
    """The server's answer to an upload (docs/attachments.md): pass `id` to `send`.

    A dict, as the brief answer it is; `sha256` (lowercase hex) lets an application
    check a download, and `width`/`height` are present for a decoded image.
    """

    id: int
    name: str
    size: int
    content_type: str
    sha256: str
    width: NotRequired[int]
    height: NotRequired[int]


def parse_uploaded(data: Any) -> Uploaded:
    """The documented fields of an upload's answer, typed; MessengerClientError if it
    is not one."""
    try:
        made: Uploaded = {
            "id": int(data["id"]),
            "name": str(data["name"]),
            "size": int(data["size"]),
            "content_type": str(data["content_type"]),
            "sha256": str(data["sha256"]),
        }
    except (KeyError, TypeError, ValueError):
        raise MessengerClientError(
            ErrorCode.INTERNAL.value, f"not an upload's answer: {data!r:.200}"
        ) from None
    width, height = _optional_int(data.get("width")), _optional_int(data.get("height"))
    if width is not None and height is not None:
        made["width"], made["height"] = width, height
    return made


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A file written by `download` or `download_thumbnail`: where, how many bytes,
    and their SHA-256 (checked against the server's ETag before the file appeared)."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One message found by `search`, as it is now, and the piece of its body that
    matched (`snippet.parts` gives the hits; render them as text, never as HTML)."""

    message: Message
    snippet: Snippet


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results, newest first; `has_more` says an older page exists,
    which `next_before` (the last result's id) asks for."""

    results: tuple[SearchResult, ...]
    has_more: bool

    @property
    def next_before(self) -> int | None:
        """The `before` of the next page, or None when this is the last one."""
        if not self.has_more or not self.results:
            return None
        return self.results[-1].message.id


def parse_search_page(data: Any) -> SearchPage:
    """A search answer (socket or HTTP), typed; MessengerClientError if it is not one."""
    try:
        found = data["results"]
        if not isinstance(found, list):
            raise TypeError("results is not a list")
        results = tuple(
            SearchResult(Message.from_dict(item["message"]), Snippet(str(item["snippet"])))
            for item in found
        )
        return SearchPage(results, data["has_more"] is True)
    except (KeyError, TypeError, ValueError):
        raise MessengerClientError(
            ErrorCode.INTERNAL.value, f"not a search answer: {data!r:.200}"
        ) from None


class Session(TypedDict):
    """A live login of the user (`GET /api/v1/sessions`), as the server shows it.

    `current` marks the session of the token that asked; `user_agent` and `address`
    are what the server saw at login (None if it kept nothing).
    """

    id: int
    created_at: str
    last_used_at: str
    user_agent: str | None
    address: str | None
    current: bool


def parse_session(data: Any) -> Session:
    """The documented fields of a session, typed; MessengerClientError if it is not one."""
    try:
        return {
            "id": int(data["id"]),
            "created_at": str(data["created_at"]),
            "last_used_at": str(data["last_used_at"]),
            "user_agent": _optional_str(data.get("user_agent")),
            "address": _optional_str(data.get("address")),
            "current": data.get("current") is True,
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        raise MessengerClientError(
            ErrorCode.INTERNAL.value, f"not a session: {data!r:.200}"
        ) from None


@dataclass(frozen=True, slots=True)
class Exported:
    """The account's export written by `export`: where, and how many bytes."""

    path: Path
    size: int
