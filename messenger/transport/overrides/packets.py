"""`JsonPacket`: python-socketio's packet class with the codec of
messenger/transport/packets.py and its strict decoding (the module docstring there
says why), and `event_packet`, an EVENT encoded with it.

It replaces `Packet.json` (a class attribute) and overrides `data_is_binary` and
`decode`; this package's `__init__` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import socketio

from messenger.transport.packets import PacketJson, malformed


class JsonPacket(socketio.packet.Packet):  # type: ignore[misc]
    """Socket.IO packets that never carry binary attachments, decoded strictly.

    python-socketio walks every outgoing payload looking for bytes, recursively, on
    each emit: a measurable share of the server's CPU at load. This protocol is JSON
    only (binary packets are refused inbound, and nothing emits bytes), so the walk
    can only ever answer no.
    """

    json = PacketJson

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return False

    def decode(self, encoded_packet: Any) -> int:
        attachments: int = super().decode(encoded_packet)
        problem = malformed(self.packet_type, self.data)
        if problem is not None:
            raise ValueError(problem)
        return attachments


def event_packet(event: str, data: Mapping[str, Any]) -> str:
    """The encoded Socket.IO EVENT packet of `event` with `data`, default namespace."""
    return str(JsonPacket(socketio.packet.EVENT, data=[event, data]).encode())
