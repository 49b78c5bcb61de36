"""How each server under test spells the same conversation on the wire.

The load generator is written once against this small table, so the relay and
messenger are driven by identical client code and measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dialect:
    """Event names and payload shapes of one server."""

    kind: str
    send_event: str
    push_event: str
    waits_for_synced: bool

    def send_payload(self, sender: str, to: str, body: str, client_id: str) -> dict[str, Any]:
        if self.kind == "relay":
            return {"to": to, "from": sender, "message": body}
        return {"to": to, "body": body, "client_id": client_id}

    def pushed(self, data: Any) -> tuple[int, str] | None:
        """(message id, body) of a pushed message, or None if it is not one."""
        if not isinstance(data, dict):
            return None
        message = data if self.kind == "relay" else data.get("message")
        if not isinstance(message, dict):
            return None
        body = message.get("message") if self.kind == "relay" else message.get("body")
        if not isinstance(body, str) or not isinstance(message.get("id"), int):
            return None
        return message["id"], body


RELAY = Dialect("relay", "privateMessage", "receivedMessage", waits_for_synced=False)
MESSENGER = Dialect("messenger", "send", "new_message", waits_for_synced=True)
DIALECTS = {d.kind: d for d in (RELAY, MESSENGER)}
