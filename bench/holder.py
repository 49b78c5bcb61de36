"""A process that holds thousands of idle Socket.IO sockets on a few KB each.

`connections` weighs the server, so the load generator, which shares the two cores
with it, must cost little: python-socketio's client (a task, a queue and a
reconnection policy per socket) held 10,000 sockets with four processes and showed
up in the server's CPU figures. Here each socket is one `asyncio.Protocol` that
speaks just enough of the wire by hand:

- the HTTP/1.1 websocket upgrade (RFC 6455 section 4), with no extensions, so no
  compression;
- masked client frames, and the server's unmasked ones (RFC 6455 section 5);
- Engine.IO v4 (open `0{...}`, PING `2` answered with PONG `3`) and Socket.IO v5 on
  the default namespace (CONNECT `40{auth}`, its answer `40...` or `44...`, and
  messenger's `42["synced",{"cursor":N}]`).

The parent (bench/idle.py) runs `python -m bench.holder` and talks to it in JSON
lines: the spec first, then one command at a time, each answered by one line on
stdout. Every close is abortive (SO_LINGER 0: a reset, no TIME_WAIT), as a phone that
loses its network never says goodbye either.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import random
import resource
import socket
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import uvloop

# -- the wire: pure functions -----------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
SOCKET_PATH = "/socket.io/?EIO=4&transport=websocket"
# The server's Engine.IO PING, alone in a segment: the one frame an idle socket gets.
PING_FRAME = b"\x81\x012"


def upgrade_request(host: str, port: int, key: str, path: str = SOCKET_PATH) -> bytes:
    """The HTTP/1.1 GET that asks for a websocket (no Origin: not a browser)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")


def new_key() -> str:
    return base64.b64encode(random.randbytes(16)).decode("ascii")


def accept_token(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_upgrade_response(buf: bytes | bytearray) -> tuple[int, dict[str, str], int] | None:
    """(status, lower-cased headers, bytes used) of a complete response head, or None
    while the head is still incomplete. Frames may follow it in the same buffer."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, end + 4


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the 4-byte `key` repeated (masking and unmasking alike)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final frame; a client passes a 4-byte masking `key` (RFC 6455 5.3)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if key is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    return head + key + mask(payload, key)


def client_text(text: str) -> bytes:
    """A masked text frame, as a client must send it."""
    return encode_frame(OP_TEXT, text.encode(), random.randbytes(4))


def take_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove the complete frames at the start of `buf`; return (opcode, payload) of
    each, unmasked. A partial frame stays in `buf` for the next read. Fragmented
    messages are refused: neither server under test sends them."""
    frames = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n, at = b1 & 0x7F, pos + 2
        if n == 126:
            if size - at < 2:
                break
            n, at = struct.unpack_from("!H", buf, at)[0], at + 2
        elif n == 127:
            if size - at < 8:
                break
            n, at = struct.unpack_from("!Q", buf, at)[0], at + 8
        key = None
        if b1 & 0x80:
            if size - at < 4:
                break
            key, at = bytes(buf[at : at + 4]), at + 4
        if size - at < n:
            break
        if not b0 & 0x80 or b0 & 0x0F == OP_CONT:
            raise ValueError("fragmented websocket message")
        payload = bytes(buf[at : at + n])
        frames.append((b0 & 0x0F, mask(payload, key) if key else payload))
        pos = at + n
    del buf[:pos]
    return frames


def ping_interval(open_packet: str) -> float | None:
    """Seconds between the server's PINGs, from the Engine.IO open packet `0{...}`."""
    try:
        value = json.loads(open_packet[1:]).get("pingInterval")
    except (ValueError, AttributeError):
        return None
    return value / 1000 if isinstance(value, int | float) else None


def connect_packet(auth: dict[str, Any]) -> str:
    """Socket.IO CONNECT on the default namespace, inside an Engine.IO MESSAGE."""
    return "40" + json.dumps(auth, separators=(",", ":"))


def synced_cursor(packet: str) -> int | None:
    """N of `42["synced",{"cursor":N}]`; None for any other packet."""
    if not packet.startswith('42["synced"'):
        return None
    try:
        _name, data = json.loads(packet[2:])
        cursor = data["cursor"]
    except (ValueError, TypeError, KeyError):
        return None
    return cursor if isinstance(cursor, int) else None


PONG_FRAME = encode_frame(OP_TEXT, b"3", random.randbytes(4))

# -- one socket --------------------------------------------------------------------

UPGRADING, OPENING, CONNECTING, SYNCING, HELD, CLOSED = range(6)
OK, REFUSED, REJECTED, FAILED, TIMEOUT = "ok", "refused", "rejected", "failed", "timeout"
SO_LINGER_RESET = struct.pack("ii", 1, 0)


class Link(asyncio.Protocol):
    """One socket from the upgrade to `synced` (or CONNECT's answer), then held.

    `done` gets (outcome, loop time) once the socket is ready or has failed; a socket
    closed before the upgrade's answer was refused (a node over its cap resets it)."""

    __slots__ = ("auth", "buf", "cursor", "done", "holder", "key", "phase", "transport")

    def __init__(self, holder: Holder, auth: dict[str, Any]) -> None:
        self.holder = holder
        self.auth = auth
        self.buf = bytearray()
        self.cursor: int | None = None
        self.done: asyncio.Future[tuple[str, float]] | None = holder.loop.create_future()
        self.key = new_key()
        self.phase = UPGRADING
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(upgrade_request(self.holder.host, self.holder.port, self.key))

    def data_received(self, data: bytes) -> None:
        if data == PING_FRAME and self.phase == HELD and not self.buf:
            self._pong()  # the idle path: nothing to parse
            return
        self.buf += data
        if self.phase == UPGRADING:
            head = parse_upgrade_response(self.buf)
            if head is None:
                return
            status, headers, used = head
            if status != 101 or headers.get("sec-websocket-accept") != accept_token(self.key):
                self._finish(REJECTED if status else FAILED)
                return
            del self.buf[:used]
            self.key = ""
            self.phase = OPENING
        try:
            frames = take_frames(self.buf)
        except ValueError:
            self._finish(FAILED)
            return
        for opcode, payload in frames:
            if opcode == OP_TEXT:
                self._packet(payload.decode())
            elif opcode == OP_PING:
                self._write(encode_frame(OP_PONG, payload, random.randbytes(4)))
            elif opcode == OP_CLOSE:
                self._finish(FAILED)
            if self.phase == CLOSED:
                return

    def _packet(self, text: str) -> None:
        if text == "2":
            self._pong()
        elif self.phase == OPENING and text.startswith("0"):
            if self.holder.ping_interval is None:
                self.holder.ping_interval = ping_interval(text)
            self._write(client_text(connect_packet(self.auth)))
            self.phase = CONNECTING
        elif self.phase == CONNECTING and text.startswith("40"):
            if self.holder.waits_for_synced:
                self.phase = SYNCING
            else:
                self._ready()
        elif self.phase == CONNECTING and text.startswith("44"):
            self._finish(REJECTED)
        elif self.phase == SYNCING:
            cursor = synced_cursor(text)
            if cursor is not None:
                self.cursor = cursor
                self._ready()
        elif text.startswith("1"):
            self._finish(FAILED)  # Engine.IO CLOSE

    def _pong(self) -> None:
        self.holder.pings += 1
        self._write(PONG_FRAME)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _ready(self) -> None:
        self.phase = HELD
        if self.done is not None and not self.done.done():
            self.done.set_result((OK, self.holder.loop.time()))

    def _finish(self, outcome: str) -> None:
        """Fail the attempt (if still pending) and reset the connection."""
        if self.done is not None and not self.done.done():
            self.done.set_result((outcome, self.holder.loop.time()))
        self.abort()

    def abort(self) -> None:
        self.phase = CLOSED
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            outcome = REFUSED if self.phase == UPGRADING else FAILED
            self.done.set_result((outcome, self.holder.loop.time()))
        self.phase = CLOSED
        self.transport = None
        if self in self.holder.held:  # not one the parent asked to drop
            self.holder.held.discard(self)
            self.holder.dropped += 1


# -- the process ---------------------------------------------------------------------


class Holder:
    """The sockets of one process, to one server, from one source address."""

    def __init__(self, spec: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.source: str = spec["source"]
        self.auths: list[dict[str, Any]] = spec["auths"]
        self.waits_for_synced: bool = spec["waits_for_synced"]
        self.concurrency: int = spec["concurrency"]
        self.timeout: float = spec["timeout"]
        self.held: set[Link] = set()
        self.pings = 0
        self.dropped = 0
        self.ping_interval: float | None = None
        self.rejoin: list[dict[str, Any]] = []

    async def fill(self, auths: list[dict[str, Any]]) -> dict[str, Any]:
        """Open a socket per auth, `concurrency` at a time; each one tried once."""
        outcomes: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        ms: list[float] = []
        pending: Iterator[dict[str, Any]] = iter(auths)
        t0 = self.loop.time()

        async def worker() -> None:
            for auth in pending:
                outcome, took = await self._attempt(auth, errors)
                outcomes[outcome] += 1
                if outcome == OK:
                    ms.append(round(took * 1000, 2))

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(auths)))))
        return {
            **{k: outcomes[k] for k in (OK, REFUSED, REJECTED, FAILED, TIMEOUT)},
            "seconds": self.loop.time() - t0,
            "ms": ms,
            "errors": dict(errors.most_common(5)),
            "ping_interval": self.ping_interval,
        }

    async def _attempt(self, auth: dict[str, Any], errors: Counter[str]) -> tuple[str, float]:
        """(outcome, seconds from the TCP connect to ready or failure)."""
        t0 = self.loop.time()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        link: Link | None = None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, SO_LINGER_RESET)
            # The port is picked at connect(), by the whole 4-tuple, not at bind().
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source, 0))
            async with asyncio.timeout(self.timeout):
                await self.loop.sock_connect(sock, (self.host, self.port))
                _transport, link = await self.loop.create_connection(
                    lambda: Link(self, auth), sock=sock
                )
                assert link.done is not None
                outcome, at = await link.done
        except TimeoutError:
            outcome, at = TIMEOUT, self.loop.time()
        except ConnectionRefusedError:
            outcome, at = REFUSED, self.loop.time()
        except OSError as exc:
            errors[f"{type(exc).__name__}: {exc}"] += 1
            outcome, at = REFUSED if link is None else FAILED, self.loop.time()
        if outcome == OK and link is not None:
            link.done = None
            self.held.add(link)
        elif link is not None:
            link.abort()
        else:
            sock.close()
        return outcome, at - t0

    def abort(self, count: int) -> int:
        """Reset `count` held sockets at once; remember them (with their cursors) to
        `reconnect`."""
        chosen = list(itertools.islice(self.held, count))
        self.rejoin = []
        for link in chosen:
            self.held.discard(link)
            auth = link.auth if link.cursor is None else {**link.auth, "cursor": link.cursor}
            self.rejoin.append(auth)
            link.abort()
        return len(chosen)

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        do = request["do"]
        if do == "connect":
            return await self.fill(self.auths)
        if do == "count":
            return {"held": len(self.held), "pings": self.pings, "dropped": self.dropped}
        if do == "abort":
            return {"aborted": self.abort(int(request["count"]))}
        if do == "reconnect":
            return await self.fill(self.rejoin)
        if do == "close":
            return {"closed": self.abort(len(self.held))}
        raise ValueError(f"unknown command {do!r}")


# Linux's IP_BIND_ADDRESS_NO_PORT (the socket module names it from Python 3.12).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
    sys.stdout.buffer.flush()


async def _serve() -> None:
    """Read the spec, then commands, one JSON line each, until `close` or EOF."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    pending = bytearray()

    def readable() -> None:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            loop.remove_reader(0)
            lines.put_nowait(b'{"do": "close"}')
            return
        pending.extend(chunk)
        while (end := pending.find(b"\n")) >= 0:
            lines.put_nowait(bytes(pending[:end]))
            del pending[: end + 1]

    loop.add_reader(0, readable)
    holder = Holder(json.loads(await lines.get()), loop)
    _reply({"ready": True})
    while True:
        request = json.loads(await lines.get())
        _reply(await holder.command(request))
        if request["do"] == "close":
            await asyncio.sleep(0.1)  # let the resets go out
            return


def main() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve())


if __name__ == "__main__":
    main()
