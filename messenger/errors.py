"""The error codes of the protocol, and the one exception that carries them.

Business logic raises `MessengerError`; the transports turn it into an acknowledgement
`{"ok": false, "error": {...}}` or an HTTP error body. Nothing below the transports
knows about HTTP statuses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    USERNAME_TAKEN = "username_taken"
    BAD_CREDENTIALS = "bad_credentials"


class MessengerError(Exception):
    """A failure the client is told about, with a stable code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}

    def answer(self) -> dict[str, Any]:
        """The Socket.IO acknowledgement for this failure."""
        return {"ok": False, "error": self.as_dict()}


def invalid(message: str) -> MessengerError:
    return MessengerError(ErrorCode.INVALID, message)


def not_found(message: str) -> MessengerError:
    return MessengerError(ErrorCode.NOT_FOUND, message)


def forbidden(message: str) -> MessengerError:
    return MessengerError(ErrorCode.FORBIDDEN, message)


def too_large(message: str) -> MessengerError:
    return MessengerError(ErrorCode.TOO_LARGE, message)
