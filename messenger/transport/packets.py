"""Socket.IO packets for a JSON-only protocol, encoded and decoded cheaply, and
decoded strictly.

python-socketio encodes with `json.dumps(data, separators=...)` and decodes with
python-engineio's `loads(..., parse_int=...)`: with those arguments the standard
library builds a new encoder or decoder on every call, which cost about as much as
the encoding itself, for every pushed message and every decoded event. The same
codec, built once, gives the same text.

Decoding also refuses what the Socket.IO v5 protocol calls a malformed packet and
python-socketio takes in: an EVENT whose payload is not a list starting with the
event's name (`42[]`, `42{}`, `42[{}]`), an ACK whose payload is not a list, and
JSON nested past what the parser can follow. python-socketio would fail on those
further in, with a traceback in the log and no answer to the client; a `ValueError`
here is a protocol error instead, and the server closes that connection, as the
reference server does (`TextOnlyServer._handle_eio_message`).

The packet class that uses both, `JsonPacket`, subclasses python-socketio's
`Packet`, so it lives in transport/overrides/packets.py.
"""

from __future__ import annotations

import json
from typing import Any

import socketio

from messenger.wire import to_compact_json

# Longer integers are refused, as python-engineio does: int() of a huge digit string
# is quadratic.
MAX_INT_DIGITS = 100


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError("integer is too large")
    return int(digits)


class PacketJson:
    """The `json` module python-socketio's packets call, with its codec built once."""

    _decoder = json.JSONDecoder(parse_int=_bounded_int)

    @classmethod
    def dumps(cls, data: Any, **_options: Any) -> str:
        # python-socketio always asks for compact separators.
        return to_compact_json(data)

    @classmethod
    def loads(cls, text: str | bytes, **_options: Any) -> Any:
        if isinstance(text, bytes):
            text = text.decode()
        try:
            return cls._decoder.decode(text)
        except RecursionError:
            # The C parser counts its depth against the recursion limit and stops
            # cleanly; to the server that is bad JSON like any other.
            raise ValueError("JSON nested too deeply") from None


def malformed(packet_type: Any, data: Any) -> str | None:
    """What is wrong with a decoded packet's payload, as the Socket.IO v5 protocol
    defines it (None when nothing is). CONNECT and DISCONNECT are left to the
    handshake, which answers a bad `auth` with `connect_error`."""
    if packet_type in (socketio.packet.EVENT, socketio.packet.BINARY_EVENT):
        if not isinstance(data, list) or not data:
            return "an event must be a list starting with its name"
        name = data[0]
        if not isinstance(name, str | int | float) or isinstance(name, bool):
            return "an event's name must be a string or a number"
    elif packet_type in (socketio.packet.ACK, socketio.packet.BINARY_ACK):
        if not isinstance(data, list):
            return "an acknowledgement must be a list"
    return None
