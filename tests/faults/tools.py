"""Tools of the fault-injection suite (its `messenger serve` processes are
`tests.processes.ServeProcess`): a TCP proxy that can cut or drop traffic, fast
account seeding, a minimal raw Socket.IO client that can stop reading, and the worker
of the reconnect storm.

Everything listens on and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.processes import HOST, free_port
from tests.support import PASSWORD, WS_PATH, Account

TCP_ESTABLISHED = 1  # tcpi_state, linux/tcp_states.h
# Quick mode fits the whole directory in about three minutes on a slow 2-core box;
# MESSENGER_SOAK=1 runs the chaos loop (and the storm) much longer.
SOAK = os.environ.get("MESSENGER_SOAK") == "1"


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process (by default this one, where in-process test
    servers run), from /proc/PID/status (kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def parse_time(value: str) -> float:
    """A contract time (ISO-8601, ms, Z) as a POSIX timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# Lines a healthy server never logs, even while being killed and restarted.
SERVER_LOG_ALARMS = re.compile(
    r"database is locked|SQLITE_BUSY|Traceback|write batch of \d+ failed|event failed"
)


# -- a TCP proxy ------------------------------------------------------------------------


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()  # RST now, no lingering close


class TcpProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target, byte for byte.

    `cut()` aborts every connection and stops listening (new ones are refused);
    `restore()` listens again on the same port. With `drop_reply` armed, the first
    target->client chunk matching the pattern is swallowed and that connection is cut
    at once: the client never sees that reply.
    """

    def __init__(self, target_port: int, drop_reply: re.Pattern[bytes] | None = None) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.drop_reply = drop_reply
        self.armed = False
        self.dropped = asyncio.Event()
        self.dropped_bytes: bytes | None = None
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        return self

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for pair in list(self._pairs):
            pair.close()
        self._pairs.clear()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    @property
    def connections(self) -> int:
        return len(self._pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._pump(pair, reader, up_writer, inspect=False)),
            asyncio.create_task(self._pump(pair, up_reader, writer, inspect=True)),
        ]

    async def _pump(
        self,
        pair: _Pair,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        inspect: bool,
    ) -> None:
        tail = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if inspect and self.armed and self.drop_reply is not None:
                    if self.drop_reply.search(tail + chunk):
                        self.armed = False
                        self.dropped_bytes = tail + chunk
                        self.dropped.set()
                        break  # the reply dies with the connection
                    tail = chunk[-64:]
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            pair.close()
            self._pairs.discard(pair)


# -- accounts ---------------------------------------------------------------------------


_password_hash: str | None = None


def _hash_of_password() -> str:
    global _password_hash
    if _password_hash is None:
        from argon2 import PasswordHasher

        _password_hash = PasswordHasher().hash(PASSWORD)
    return _password_hash


async def seed_accounts(database_url: str, prefix: str, count: int) -> list[Account]:
    """`count` users with one live token each, written straight into the database.

    Registering over HTTP costs one argon2 hash per user and logins are throttled per
    address (bursts of 50); the storm needs a thousand accounts. The rows are the ones
    the server writes itself (the password works for a real login too)."""
    from sqlalchemy import insert, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from messenger.auth import hash_token
    from messenger.store.models import tokens, users

    tag = secrets.token_hex(3)
    names = [f"{prefix}{i}-{tag}@example.com" for i in range(count)]
    secrets_by_name = {name: secrets.token_urlsafe(32) for name in names}
    now = datetime.now(UTC)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for start in range(0, count, 500):
                chunk = names[start : start + 500]
                await conn.execute(
                    insert(users),
                    [
                        {
                            "username": name,
                            "password_hash": _hash_of_password(),
                            "created_at": now,
                            "stream_seq": 0,
                        }
                        for name in chunk
                    ],
                )
            rows = await conn.execute(
                select(users.c.id, users.c.username).where(users.c.username.in_(names))
            )
            ids = {row.username: row.id for row in rows}
            await conn.execute(
                insert(tokens),
                [
                    {
                        "user_id": ids[name],
                        "token_hash": hash_token(secrets_by_name[name]),
                        "created_at": now,
                        "expires_at": now + timedelta(days=1),
                    }
                    for name in names
                ],
            )
    finally:
        await engine.dispose()
    return [Account(name, secrets_by_name[name]) for name in names]


async def stream_consistency(database_url: str) -> list[str]:
    """Problems in the stored streams: every user's `stream_seq` must equal the number
    of its stream events, whose seqs are exactly 1..stream_seq (nothing half-written)."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from messenger.store.models import messages, stream_events, users

    engine = create_async_engine(database_url)
    problems: list[str] = []
    try:
        async with engine.connect() as conn:
            heads = {row.id: row.stream_seq for row in await conn.execute(select(users))}
            stats = {
                row.user_id: (row.n, row.lo, row.hi)
                for row in await conn.execute(
                    select(
                        stream_events.c.user_id,
                        func.count().label("n"),
                        func.min(stream_events.c.seq).label("lo"),
                        func.max(stream_events.c.seq).label("hi"),
                    ).group_by(stream_events.c.user_id)
                )
            }
            message_count = (
                await conn.execute(select(func.count()).select_from(messages))
            ).scalar()
            orphans = (
                await conn.execute(
                    select(func.count())
                    .select_from(messages)
                    .where(
                        ~select(stream_events.c.seq)
                        .where(stream_events.c.message_id == messages.c.id)
                        .exists()
                    )
                )
            ).scalar()
    finally:
        await engine.dispose()
    for user_id, head in heads.items():
        n, lo, hi = stats.get(user_id, (0, None, None))
        if n != head or (n and (lo, hi) != (1, head)):
            problems.append(f"user {user_id}: stream_seq {head}, {n} events, seqs {lo}..{hi}")
    if orphans:
        problems.append(f"{orphans} of {message_count} messages have no stream event")
    return problems


# -- a raw Socket.IO client -------------------------------------------------------------


class RawSocket:
    """Engine.IO 4 / Socket.IO 5 over a hand-made websocket, on a socket whose receive
    buffer is small: once the handshake is done it can simply stop reading, which
    python-socketio's client (reading in a background task) cannot."""

    def __init__(self, port: int, rcvbuf: int = 4096) -> None:
        self.port = port
        self.rcvbuf = rcvbuf
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.sock: socket.socket | None = None

    async def open(self, sid: str | None = None) -> str:
        """The websocket handshake, then the OPEN packet (a new session) or the
        upgrade's probe and UPGRADE (of the polling session `sid`); returns the sid."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        self.sock = sock
        await asyncio.get_running_loop().sock_connect(sock, (HOST, self.port))
        # A tiny stream buffer too: asyncio must not read ahead for us.
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        path = WS_PATH if sid is None else f"{WS_PATH}&sid={sid}"
        self.writer.write(
            (
                f"GET {path} HTTP/1.1\r\n"
                f"Host: {HOST}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await self.reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        if sid is not None:
            await self.send_text("2probe")
            assert await self.receive() == "3probe"
            await self.send_text("5")
            return sid
        opened = await self.receive()
        assert opened.startswith("0{"), opened
        return str(json.loads(opened[1:])["sid"])

    async def connect(self, token: str) -> dict[str, Any]:
        """Open, authenticate, read until `synced`; returns the synced payload."""
        await self.open()
        await self.send_text("40" + json.dumps({"token": token}))
        while True:
            text = await self.receive()
            if text.startswith("44"):
                raise AssertionError(f"connect refused: {text}")
            if text.startswith("42"):
                name, data = json.loads(text[2:])
                if name == "synced":
                    return dict(data)

    async def send_text(self, text: str) -> None:
        assert self.writer is not None
        payload = text.encode()
        mask = secrets.token_bytes(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def receive(self) -> str:
        """The next text frame (answering Engine.IO pings while reading)."""
        assert self.reader is not None
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            data = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the server")
            if opcode != 0x1:
                continue
            text = data.decode()
            if text == "2":
                await self.send_text("3")
                continue
            return text

    def closed_by_peer(self) -> bool:
        """True once the server has closed or reset the TCP connection (read from the
        kernel's TCP state: unread data would hide a FIN from a peeking recv)."""
        assert self.sock is not None
        try:
            state = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except OSError:
            return True
        return state != TCP_ESTABLISHED

    async def keep_alive(self, every: float = 5.0) -> None:
        """Send Engine.IO pongs without reading anything: a client whose app is stuck but
        whose connection stays alive, so only the server's backlog bound can catch it."""
        while True:
            await asyncio.sleep(every)
            await self.send_text("3")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


# -- the reconnect storm's client processes ---------------------------------------------


def storm_worker(
    url: str,
    clients: list[tuple[str, str, list[int]]],
    ready: Any,
    go: Any,
    timeout: float,
    results: Any,
) -> None:
    """One process of the storm: once `go` is set, connects all its clients at once and
    reports per client (name, seconds to `synced` or -1, ids missing, errors)."""
    raise_fd_limit()
    import socketio  # noqa: F401  (imported before the start, not during the storm)

    ready.put(len(clients))
    go.wait(120)
    results.put(asyncio.run(_storm(url, clients, timeout)))


async def _storm(
    url: str, clients: list[tuple[str, str, list[int]]], timeout: float
) -> list[tuple[str, float, list[int], str]]:
    import socketio

    async def one(name: str, token: str, expected: list[int]) -> tuple[str, float, list[int], str]:
        sio = socketio.AsyncClient(reconnection=False)
        got: set[int] = set()
        synced = asyncio.Event()
        errors: list[str] = []

        async def on_message(data: dict[str, Any]) -> None:
            got.add(int(data["message"]["id"]))

        async def on_synced(data: dict[str, Any]) -> None:
            synced.set()

        async def on_error(data: Any) -> None:
            errors.append(repr(data))

        sio.on("new_message", on_message)
        sio.on("synced", on_synced)
        sio.on("error", on_error)
        sio.on("connect_error", on_error)
        started = time.monotonic()
        elapsed = -1.0
        try:
            await sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=30)
            await asyncio.wait_for(synced.wait(), timeout)
            elapsed = time.monotonic() - started
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                await sio.disconnect()
        missing = sorted(set(expected) - got)
        return name, elapsed, missing, "; ".join(errors)

    return list(await asyncio.gather(*(one(*client) for client in clients)))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):.2f}s p99 {percentile(values, 0.99):.2f}s "
        f"max {max(values):.2f}s"
    )
