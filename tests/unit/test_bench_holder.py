"""bench/holder.py's wire by hand: the websocket upgrade, RFC 6455 frames both ways,
and the few Engine.IO / Socket.IO packets an idle socket sees."""

from __future__ import annotations

import json

import pytest

from bench.holder import (
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    PING_FRAME,
    PONG_FRAME,
    accept_token,
    client_text,
    connect_packet,
    encode_frame,
    mask,
    parse_upgrade_response,
    ping_interval,
    synced_cursor,
    take_frames,
    upgrade_request,
)

KEY = b"\x37\xfa\x21\x3d"


def test_accept_token_matches_the_rfc_example() -> None:
    assert accept_token("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_request_asks_for_a_websocket() -> None:
    request = upgrade_request("127.0.0.1", 8080, "abc==").decode()
    assert request.startswith("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n")
    assert "Host: 127.0.0.1:8080\r\n" in request
    assert "Upgrade: websocket\r\n" in request
    assert "Sec-WebSocket-Key: abc==\r\n" in request
    assert "Origin" not in request
    assert request.endswith("\r\n\r\n")


def test_upgrade_response_waits_for_the_whole_head() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x"
    assert parse_upgrade_response(head) is None
    frame = encode_frame(OP_TEXT, b'0{"sid":"a"}')
    full = head + b"\r\n\r\n" + frame
    status, headers, used = parse_upgrade_response(full) or (0, {}, 0)
    assert status == 101
    assert headers["sec-websocket-accept"] == "x"
    assert headers["upgrade"] == "websocket"
    assert full[used:] == frame


def test_upgrade_response_with_an_error_status() -> None:
    parsed = parse_upgrade_response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    assert parsed is not None and parsed[0] == 400


def test_mask_is_its_own_inverse() -> None:
    payload = bytes(range(256)) * 3
    assert mask(payload, KEY) != payload
    assert mask(mask(payload, KEY), KEY) == payload
    assert mask(b"", KEY) == b""
    # The RFC's definition, byte by byte.
    assert mask(b"Hello", KEY) == bytes(b ^ KEY[i % 4] for i, b in enumerate(b"Hello"))


def test_rfc_masked_hello() -> None:
    # RFC 6455 5.7: a masked text frame "Hello".
    frame = encode_frame(OP_TEXT, b"Hello", b"\x37\xfa\x21\x3d")
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize(
    ("size", "header"), [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)]
)
def test_length_encodings_round_trip(size: int, header: int) -> None:
    payload = b"x" * size
    unmasked = encode_frame(OP_TEXT, payload)
    assert len(unmasked) == header + size
    masked = encode_frame(OP_TEXT, payload, KEY)
    assert len(masked) == header + 4 + size
    assert masked[1] & 0x80 and not unmasked[1] & 0x80
    buf = bytearray(unmasked + masked)
    assert take_frames(buf) == [(OP_TEXT, payload), (OP_TEXT, payload)]
    assert buf == bytearray()


def test_partial_frames_wait_for_the_rest() -> None:
    stream = encode_frame(OP_TEXT, b"2") + encode_frame(OP_TEXT, b"a" * 300) + PING_FRAME
    buf = bytearray()
    got = []
    for i in range(len(stream)):  # one byte at a time: every split point
        buf.append(stream[i])
        got += take_frames(buf)
    assert got == [(OP_TEXT, b"2"), (OP_TEXT, b"a" * 300), (OP_TEXT, b"2")]
    assert not buf


def test_control_frames_keep_their_opcodes() -> None:
    buf = bytearray(encode_frame(OP_PING, b"hi") + encode_frame(OP_CLOSE, b"\x03\xe8"))
    assert take_frames(buf) == [(OP_PING, b"hi"), (OP_CLOSE, b"\x03\xe8")]


def test_fragmented_messages_are_refused() -> None:
    first = bytes([0x01, 0x01]) + b"a"  # text, FIN clear
    with pytest.raises(ValueError):
        take_frames(bytearray(first))


def test_client_frames_are_masked_text() -> None:
    frame = client_text("40{}")
    assert frame[0] == 0x81 and frame[1] & 0x80
    assert take_frames(bytearray(frame)) == [(OP_TEXT, b"40{}")]
    assert take_frames(bytearray(PONG_FRAME)) == [(OP_TEXT, b"3")]
    assert take_frames(bytearray(PING_FRAME)) == [(OP_TEXT, b"2")]


def test_engineio_open_packet_gives_the_ping_interval() -> None:
    packet = '0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
    assert ping_interval(packet) == 25.0
    assert ping_interval("0{}") is None
    assert ping_interval("0not json") is None


def test_connect_packet_carries_the_auth() -> None:
    packet = connect_packet({"token": "t", "cursor": 7})
    assert packet.startswith("40")
    assert json.loads(packet[2:]) == {"token": "t", "cursor": 7}


def test_synced_cursor() -> None:
    assert synced_cursor('42["synced",{"cursor":42}]') == 42
    assert synced_cursor('42["synced",{"cursor":0}]') == 0
    assert synced_cursor('42["new_message",{"cursor":3}]') is None
    assert synced_cursor('42["synced",{}]') is None
    assert synced_cursor('42["synced",{"cursor":"1"}]') is None
    assert synced_cursor("40") is None
