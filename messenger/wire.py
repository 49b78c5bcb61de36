"""The shapes the server sends: Message objects, stream events, and their seed forms.

Pure functions over plain values, shared by the writer (live pushes) and the stream
reader (backlogs and `sync`), so a replayed event is byte-for-byte the live one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from messenger.protocol import NEW_MESSAGE, RECEIPT, RECEIVED_MESSAGE, STATUS_NAMES

# JSON without spaces, from one encoder built once: `json.dumps(..., separators=...)`
# builds a new encoder on every call, which costs about as much as the encoding. For
# Socket.IO packets (transport/packets.py) and stored receipt payloads (the writer).
to_compact_json = json.JSONEncoder(separators=(",", ":")).encode


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
    data: dict[str, Any]


def utc_now() -> datetime:
    """Now, cut to milliseconds: what is stored is exactly what clients are shown."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


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


def message_dict(
    row: Mapping[Any, Any],
    sender: str,
    recipient: str,
    show_time: Callable[[Any], str | None] = format_time,
) -> dict[str, Any]:
    """A Message object (PROTOCOL.md 3.1) from a `messages` row; `show_time` turns the
    row's times into the API's text (`formatted` for rows whose times the database
    formatted already)."""
    return {
        "id": row["id"],
        "from": sender,
        "to": recipient,
        "body": row["body"],
        "client_id": row["client_id"],
        "sent_at": show_time(row["sent_at"]),
        "status": STATUS_NAMES[row["status"]],
        "delivered_at": show_time(row["delivered_at"]),
        "read_at": show_time(row["read_at"]),
    }


def formatted(value: str | None) -> str | None:
    """A time the database gave as the API's text already (`store.api_time`)."""
    return value


def new_message_item(user_id: int, seq: int, message: dict[str, Any]) -> StreamItem:
    return StreamItem(user_id, seq, NEW_MESSAGE, {"cursor": seq, "message": message})


def receipt_payload(ids: list[int], status: int, by: str, at: datetime) -> dict[str, Any]:
    """What a receipt says, without its cursor (stored as the event's payload)."""
    return {"ids": ids, "status": STATUS_NAMES[status], "by": by, "at": format_time(at)}


def receipt_item(user_id: int, seq: int, payload: Mapping[str, Any]) -> StreamItem:
    return StreamItem(user_id, seq, RECEIPT, {"cursor": seq, **payload})


def seed_form(item: StreamItem) -> tuple[str, dict[str, Any]]:
    """The event as a seed-protocol connection gets it: `receivedMessage` for messages."""
    if item.event != NEW_MESSAGE:
        return item.event, item.data
    message = item.data["message"]
    return RECEIVED_MESSAGE, {
        "id": message["id"],
        "from": message["from"],
        "to": message["to"],
        "message": message["body"],
        "sent_at": message["sent_at"],
    }


def sync_entry(item: StreamItem) -> dict[str, Any]:
    """An element of the `sync` answer's `events` list."""
    return {"event": item.event, "data": item.data}
