"""Event names, payload shapes, and the validation of every inbound payload.

Each `parse_*` function takes what a client sent (already JSON-decoded, of any type)
and returns a typed command, or raises `MessengerError` with the protocol's code. The
transports call these before anything touches the database, so bad input changes
nothing (G8).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import emoji

from messenger.errors import invalid, too_large
from messenger.text_search import QUERY_MAX_CHARS, TERMS_MAX, Terms, split_query

# Client -> server events.
SEND: Final = "send"
DELIVERED: Final = "delivered"
READ: Final = "read"
HISTORY: Final = "history"
SYNC: Final = "sync"
PRESENCE: Final = "presence"
BLOCK: Final = "block"
UNBLOCK: Final = "unblock"
PRIVATE_MESSAGE: Final = "privateMessage"
EDIT: Final = "edit"
DELETE: Final = "delete"
REACT: Final = "react"
UNREACT: Final = "unreact"
# Both directions: a client says it types; the other user's devices are told.
TYPING: Final = "typing"
SEARCH: Final = "search"

# Server -> client events.
NEW_MESSAGE: Final = "new_message"
RECEIPT: Final = "receipt"
SYNCED: Final = "synced"
RECEIVED_MESSAGE: Final = "receivedMessage"
MESSAGE_UPDATED: Final = "message_updated"
ERROR: Final = "error"

COMPAT_SEED: Final = "seed"

USERNAME_PATTERN: Final = re.compile(r"[a-z0-9._%+@-]{3,64}")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
CLIENT_ID_MAX: Final = 64
MARK_IDS_MAX: Final = 500
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 100
SYNC_LIMIT_DEFAULT, SYNC_LIMIT_MAX = 100, 500
SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX = 20, 50
PRESENCE_USERS_MAX: Final = 100
# Ids are 64-bit signed integers in both databases.
ID_MAX: Final = 2**63 - 1

REPLY_EXCERPT_CHARS: Final = 100
ATTACHMENTS_MAX: Final = 10
EMOJI_MAX_CHARS: Final = 32
REACTIONS_PER_USER_MAX: Final = 5

# What a `message_updated` event says changed (docs/protocol.md 3.3).
Change = Literal["edited", "deleted", "reacted", "hidden"]
EDITED: Final = "edited"
DELETED: Final = "deleted"
REACTED: Final = "reacted"
HIDDEN: Final = "hidden"

# Message status, stored as a small integer so that "only forward" is `<`.
STATUS_SENT, STATUS_DELIVERED, STATUS_READ = 0, 1, 2
STATUS_NAMES: Final = ("sent", "delivered", "read")


@dataclass(frozen=True, slots=True)
class SendCommand:
    to: str
    body: str
    client_id: str
    reply_to: int | None = None
    attachments: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EditCommand:
    message_id: int
    body: str
    client_id: str


@dataclass(frozen=True, slots=True)
class DeleteCommand:
    message_id: int
    for_everyone: bool


@dataclass(frozen=True, slots=True)
class ReactCommand:
    message_id: int
    emoji: str
    # False for `unreact`.
    add: bool


ChangeCommand = EditCommand | DeleteCommand | ReactCommand
"""What happens to a message after its send (docs/protocol.md 3.6)."""


@dataclass(frozen=True, slots=True)
class TypingCommand:
    to: str
    state: bool


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """`PUT /api/v1/users/me/settings`: the settings given (None: left as they are)."""

    read_receipts: bool | None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    with_user: str
    before: int | None
    after: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class SearchQuery:
    terms: Terms
    with_user: str | None
    before: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class SyncQuery:
    after: int
    limit: int


def normalize_username(value: Any, field: str = "username") -> str:
    """Usernames are case-insensitive: stored and compared lower-case."""
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string")
    if not value.isascii():
        # Checked before lower-casing: the Kelvin sign (U+212A) lower-cases to "k".
        raise invalid(f"{field} must be 3 to 64 characters of a-z 0-9 . _ % + @ -")
    name = value.lower()
    if not USERNAME_PATTERN.fullmatch(name):
        raise invalid(f"{field} must be 3 to 64 characters of a-z 0-9 . _ % + @ -")
    return name


def check_password(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid("password must be a string")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise invalid(f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    _require_storable(value, "password")
    return value


def parse_send(payload: Any, max_body: int) -> SendCommand:
    """A send; its body may be empty when it carries attachments."""
    data = _object(payload)
    attachments = _attachment_ids(data.get("attachments"))
    body = data.get("body")
    return SendCommand(
        to=normalize_username(data.get("to"), "to"),
        body="" if attachments and body == "" else _body(body, max_body),
        client_id=_client_id(data.get("client_id")),
        reply_to=_optional_id(data.get("reply_to"), "reply_to"),
        attachments=attachments,
    )


def _attachment_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("attachments must be a list of attachment ids")
    if len(value) > ATTACHMENTS_MAX:
        raise too_large(f"at most {ATTACHMENTS_MAX} attachments per message")
    ids = tuple(_positive_int(item, "attachments") for item in value)
    if len(set(ids)) != len(ids):
        raise invalid("attachments must not repeat an id")
    return ids


def parse_edit(payload: Any, max_body: int) -> EditCommand:
    data = _object(payload)
    return EditCommand(
        message_id=_positive_int(data.get("id"), "id"),
        body=_body(data.get("body"), max_body),
        client_id=_client_id(data.get("client_id")),
    )


def parse_delete(payload: Any) -> DeleteCommand:
    data = _object(payload)
    message_id = _positive_int(data.get("id"), "id")
    scope = data.get("for")
    if scope not in ("me", "everyone"):
        raise invalid('for must be "me" or "everyone"')
    return DeleteCommand(message_id=message_id, for_everyone=scope == "everyone")


def parse_reaction(payload: Any, add: bool) -> ReactCommand:
    data = _object(payload)
    return ReactCommand(
        message_id=_positive_int(data.get("id"), "id"),
        emoji=_emoji(data.get("emoji")),
        add=add,
    )


def parse_typing(payload: Any) -> TypingCommand:
    data = _object(payload)
    state = data.get("state")
    if not isinstance(state, bool):
        raise invalid("state must be true or false")
    return TypingCommand(to=normalize_username(data.get("to"), "to"), state=state)


def parse_settings(payload: Any) -> SettingsChange:
    """Every key must be a known setting, and at least one must be given: a typo
    must not look like a success."""
    data = _object(payload)
    unknown = sorted(set(data) - {"read_receipts"})
    if unknown:
        raise invalid(f"unknown setting {unknown[0][:64]!r}")
    if not data:
        raise invalid("give at least one setting")
    receipts = data.get("read_receipts")
    if not isinstance(receipts, bool):
        raise invalid("read_receipts must be true or false")
    return SettingsChange(read_receipts=receipts)


def _emoji(value: Any) -> str:
    """One emoji as Unicode defines it: a code point or a sequence (skin tone, ZWJ,
    flag, keycap); anything else, two emojis included, is refused."""
    if not isinstance(value, str) or not 1 <= len(value) <= EMOJI_MAX_CHARS:
        raise invalid(f"emoji must be one emoji (at most {EMOJI_MAX_CHARS} characters)")
    if not emoji.is_emoji(value):
        raise invalid("emoji must be exactly one emoji")
    return value


def parse_private_message(payload: Any, max_body: int, client_id: str) -> tuple[str, SendCommand]:
    """The seed design's event: returns (claimed sender, command).

    `client_id` is the server-chosen one, used when the client gave none.
    """
    data = _object(payload)
    claimed = normalize_username(data.get("from"), "from")
    given = data.get("client_id")
    command = SendCommand(
        to=normalize_username(data.get("to"), "to"),
        body=_body(data.get("message"), max_body, field="message"),
        client_id=client_id if given is None else _client_id(given),
    )
    return claimed, command


def parse_ids(payload: Any) -> list[int]:
    ids = _bounded_list(_object(payload), "ids", MARK_IDS_MAX, "message ids")
    return sorted({_positive_int(value, "ids") for value in ids})


def parse_history(payload: Any) -> HistoryQuery:
    data = _object(payload)
    before = _optional_id(data.get("before"), "before")
    after = _optional_id(data.get("after"), "after")
    if before is not None and after is not None:
        raise invalid("give before or after, not both")
    return HistoryQuery(
        with_user=normalize_username(data.get("with"), "with"),
        before=before,
        after=after,
        limit=_limit(data.get("limit"), HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX),
    )


def parse_search(payload: Any) -> SearchQuery:
    data = _object(payload)
    query = data.get("query")
    if not isinstance(query, str):
        raise invalid("query must be a string")
    if len(query) > QUERY_MAX_CHARS:
        raise invalid(f"query is over {QUERY_MAX_CHARS} characters")
    _require_storable(query, "query")
    terms = split_query(query)
    if terms is None:
        raise invalid("query has no words")
    if len(terms.long) + len(terms.short) > TERMS_MAX:
        raise invalid(f"query has over {TERMS_MAX} words")
    with_user = data.get("with")
    return SearchQuery(
        terms=terms,
        with_user=None if with_user is None else normalize_username(with_user, "with"),
        before=_optional_id(data.get("before"), "before"),
        limit=_limit(data.get("limit"), SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX),
    )


def parse_sync(payload: Any) -> SyncQuery:
    data = _object(payload)
    return SyncQuery(
        after=parse_cursor(data.get("after")),
        limit=_limit(data.get("limit"), SYNC_LIMIT_DEFAULT, SYNC_LIMIT_MAX),
    )


def parse_path_id(raw: str) -> int | None:
    """An id written in a URL path: ASCII digits naming 1 to ID_MAX; None otherwise
    (the route answers as for an id that does not exist)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= ID_MAX else None


def parse_cursor(value: Any) -> int:
    """A stream cursor: 0 (before the first event) or a later position."""
    if not _is_int(value) or not 0 <= value <= ID_MAX:
        raise invalid("cursor must be a non-negative integer")
    return int(value)


def parse_presence(payload: Any) -> list[str]:
    users = _bounded_list(_object(payload), "users", PRESENCE_USERS_MAX, "usernames")
    return list(dict.fromkeys(normalize_username(user, "users") for user in users))


def parse_block(payload: Any) -> str:
    return normalize_username(_object(payload).get("user"), "user")


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise invalid("the payload must be a JSON object")
    return payload


def _bounded_list(data: dict[str, Any], field: str, maximum: int, of_what: str) -> list[Any]:
    """A non-empty list field: empty or not a list is `invalid`, too long `too_large`."""
    value = data.get(field)
    if not isinstance(value, list) or not value:
        raise invalid(f"{field} must be a non-empty list of {of_what}")
    if len(value) > maximum:
        raise too_large(f"at most {maximum} {field} per event")
    return value


def _body(value: Any, max_body: int, field: str = "body") -> str:
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string")
    if not value:
        raise invalid(f"{field} must not be empty")
    if len(value) > max_body:
        raise too_large(f"{field} is over {max_body} characters")
    _require_storable(value, field)
    return value


def _client_id(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= CLIENT_ID_MAX:
        raise invalid(f"client_id must be a string of 1 to {CLIENT_ID_MAX} characters")
    _require_storable(value, "client_id")
    return value


def _require_storable(value: str, field: str) -> None:
    """Refuse text no database stores faithfully: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise invalid(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{field} must be valid Unicode text") from None


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, but true is not a message id.
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any, field: str) -> int:
    if not _is_int(value) or not 1 <= value <= ID_MAX:
        raise invalid(f"{field} must hold positive integers")
    return int(value)


def _optional_id(value: Any, field: str) -> int | None:
    return None if value is None else _positive_int(value, field)


def _limit(value: Any, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not _is_int(value) or not 1 <= value <= maximum:
        raise invalid(f"limit must be an integer from 1 to {maximum}")
    return int(value)
