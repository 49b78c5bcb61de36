"""What the SDK hands to applications: typed messages and events, and its one error.

The wire shapes are PROTOCOL.md 3.1 and 3.3; these dataclasses give them names and
types so that applications (and mypy) do not dig through dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messenger import protocol
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
class Message:
    """A stored message (PROTOCOL.md 3.1); `status` is as of when it was sent to us."""

    id: int
    sender: str
    recipient: str
    body: str
    client_id: str
    sent_at: str
    status: str
    delivered_at: str | None
    read_at: str | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=int(data["id"]),
            sender=str(data["from"]),
            recipient=str(data["to"]),
            body=str(data["body"]),
            client_id=str(data["client_id"]),
            sent_at=str(data["sent_at"]),
            status=str(data["status"]),
            delivered_at=data.get("delivered_at"),
            read_at=data.get("read_at"),
        )


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


Event = NewMessage | Receipt


def parse_event(name: str, data: Any) -> Event | None:
    """A stream event from the wire, or None for anything this SDK does not know."""
    if not isinstance(data, dict) or not isinstance(data.get("cursor"), int):
        return None
    if name == protocol.NEW_MESSAGE and isinstance(data.get("message"), dict):
        return NewMessage(data["cursor"], Message.from_dict(data["message"]))
    if name == protocol.RECEIPT:
        return Receipt(
            cursor=data["cursor"],
            ids=tuple(int(i) for i in data.get("ids", [])),
            status=str(data.get("status")),
            by=str(data.get("by")),
            at=str(data.get("at")),
        )
    return None
