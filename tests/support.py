"""Test helpers: a real server on a loopback port, real clients over HTTP and Socket.IO."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import socketio
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from messenger.config import Settings
from messenger.node import Node
from messenger.transport.listener import Listener

PASSWORD = "correct horse battery"
# An Engine.IO session opened straight on a websocket, without long polling first.
WS_PATH = "/socket.io/?EIO=4&transport=websocket"
# The keys of a message object (docs: the contract's Message).
MESSAGE_KEYS = {
    "id",
    "from",
    "to",
    "body",
    "client_id",
    "sent_at",
    "status",
    "delivered_at",
    "read_at",
    "reply_to",
    "edited_at",
    "deleted",
    "reactions",
    "attachments",
}
# The events of a user's stream: what cursors count.
STREAM_EVENTS = ("new_message", "receipt", "message_updated")
_names = itertools.count(1)


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_names)}@example.com"


@dataclass
class RunningServer:
    node: Node
    runner: web.AppRunner
    url: str
    settings: Settings

    async def stop(self) -> None:
        await self.node.stop()
        await self.runner.cleanup()


async def start_server(
    settings: Settings, port: int = 0, shutdown_timeout: float = 5
) -> RunningServer:
    """A node in this process on a loopback port (`port` 0: any free one)."""
    node = Node(settings)
    # The listener `messenger serve` runs: its deadlines and connection caps included.
    listener = Listener(node.app, settings, node.metrics, shutdown_timeout=shutdown_timeout)
    await listener.setup()
    await node.start()
    await listener.listen("127.0.0.1", port)
    return RunningServer(node, listener.runner, f"http://127.0.0.1:{listener.port}", settings)


def websocket_url(url: str) -> str:
    """The websocket address of a server's Engine.IO sessions, from its http:// URL."""
    return url.replace("http://", "ws://") + WS_PATH


@contextlib.asynccontextmanager
async def raw_engineio_session(url: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """An Engine.IO session opened straight on a websocket, its OPEN packet read:
    for tests of what the transport does below Socket.IO."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(websocket_url(url))
        opened = await ws.receive(timeout=5)
        assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{"), opened
        yield ws
        await ws.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class Servers:
    """In-process servers a test starts and stops itself; a restart on the port of a
    stopped one keeps the URL its clients know. `close` stops whatever still runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: list[RunningServer] = []

    async def start(self, port: int = 0) -> RunningServer:
        # aiohttp's own shutdown timeout (60 s), as these tests always had.
        server = await start_server(self.settings, port, shutdown_timeout=60)
        self.running.append(server)
        return server

    async def stop(self, server: RunningServer) -> None:
        self.running.remove(server)
        await server.stop()

    async def close(self) -> None:
        for server in list(self.running):
            await self.stop(server)


@dataclass
class Account:
    username: str
    token: str


class Http:
    """A thin JSON client for the REST API."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as session:
            async with session.request(
                method, self.url + path, json=json, data=data, headers=all_headers
            ) as response:
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.text()

    async def register(self, username: str, password: str = PASSWORD) -> tuple[int, Any]:
        return await self.request(
            "POST", "/api/v1/users", {"username": username, "password": password}
        )

    async def login(self, username: str, password: str = PASSWORD) -> tuple[int, Any]:
        return await self.request(
            "POST", "/api/v1/sessions", {"username": username, "password": password}
        )

    async def account(self, prefix: str = "user") -> Account:
        name = unique_name(prefix)
        status, body = await self.register(name)
        assert status == 201, body
        status, body = await self.login(name)
        assert status == 201, body
        return Account(name, body["token"])


class Device:
    """One Socket.IO connection of a user, recording every event it receives."""

    def __init__(self, url: str, transports: list[str] | None = None) -> None:
        self.url = url
        self.transports = transports or ["websocket"]
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self._changed = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._on_connect_error)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))
        self._changed.set()

    async def _on_connect_error(self, data: Any) -> None:
        self.connect_error = data
        self._changed.set()

    async def connect(self, token: str | None, **auth: Any) -> Device:
        payload = dict(auth)
        if token is not None:
            payload["token"] = token
        await self.sio.connect(self.url, auth=payload, transports=self.transports, wait_timeout=10)
        return self

    async def call(self, event: str, payload: Any = None, timeout: float = 15) -> Any:
        if payload is None:
            return await self.sio.call(event, timeout=timeout)
        return await self.sio.call(event, payload, timeout=timeout)

    async def send(self, to: str, body: str, client_id: str) -> Any:
        return await self.call("send", {"to": to, "body": body, "client_id": client_id})

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    def messages(self) -> list[dict[str, Any]]:
        return [data["message"] for data in self.of("new_message")]

    def cursors(self) -> list[int]:
        return [data["cursor"] for name, data in self.events if name in STREAM_EVENTS]

    async def wait_synced(self, timeout: float = 10) -> int:
        await self.wait_for(lambda: bool(self.of("synced")), timeout)
        return int(self.of("synced")[-1]["cursor"])

    async def disconnect(self) -> None:
        await self.sio.disconnect()


# -- helpers over Http and Device ---------------------------------------------------


async def accounts(http: Http, *prefixes: str) -> list[Account]:
    """Several accounts at once: password hashing is slow, so overlap it."""
    return list(await asyncio.gather(*(http.account(prefix) for prefix in prefixes)))


async def connect_synced(
    url: str, account: Account, timeout: float = 10, **auth: Any
) -> tuple[Device, int]:
    """A device that has finished its backlog; returns it with its `synced` cursor."""
    device = await Device(url).connect(account.token, **auth)
    return device, await device.wait_synced(timeout)


def assert_contiguous(device: Device, synced: int) -> None:
    """Stream cursors after `synced` grow by exactly one: no hole, no repeat."""
    cursors = device.cursors()
    assert cursors == list(range(synced + 1, synced + 1 + len(cursors))), cursors


async def stored_conversation(url: str, reader: Account, peer: str) -> list[dict[str, Any]]:
    """Every stored message between `reader` and `peer`, oldest first, paged backwards
    through the REST history."""
    http = Http(url)
    found: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        query = "limit=100" + (f"&before={before}" if before is not None else "")
        status, body = await http.request(
            "GET", f"/api/v1/conversations/{quote(peer)}/messages?{query}", token=reader.token
        )
        assert status == 200, body
        found = body["messages"] + found
        if not body["has_more"]:
            return found
        before = body["messages"][0]["id"]


@dataclass
class Scene:
    """Ann and bob, each with a synced device, and one message stored each way."""

    server: RunningServer
    ann: Account
    bob: Account
    a: Device
    b: Device
    to_bob: int  # id of ann's message to bob
    to_ann: int

    @property
    def ids(self) -> list[int]:
        return [self.to_bob, self.to_ann]

    async def close(self) -> None:
        for device in (self.a, self.b):
            if device.sio.connected:
                await device.disconnect()


async def two_way_scene(server: RunningServer, http: Http) -> Scene:
    ann, bob = await asyncio.gather(http.account("ann"), http.account("bob"))
    a = await Device(server.url).connect(ann.token)
    b = await Device(server.url).connect(bob.token)
    await asyncio.gather(a.wait_synced(), b.wait_synced())
    to_bob = await a.send(bob.username, "hello bob", "a-1")
    to_ann = await b.send(ann.username, "hello ann", "b-1")
    assert to_bob["ok"] and to_ann["ok"], (to_bob, to_ann)
    return Scene(server, ann, bob, a, b, to_bob["message"]["id"], to_ann["message"]["id"])


# -- the database underneath --------------------------------------------------------

Snapshot = dict[str, list[tuple[Any, ...]]]
# Stored facts that bad input must leave alone, as queries for `read_tables` (modules
# add their own view of `messages`); users.last_seen moves with connects.
STREAM_QUERIES = {
    "users": "SELECT id, username, stream_seq FROM users ORDER BY id",
    "stream_events": "SELECT user_id, seq, kind, message_id, payload FROM stream_events"
    " ORDER BY user_id, seq",
    "blocks": "SELECT blocker_id, blocked_id FROM blocks ORDER BY blocker_id, blocked_id",
}


def database_files(database_url: str) -> list[Path]:
    """A SQLite database's file and its WAL, those that exist (G10 tests grep them)."""
    path = Path(make_url(database_url).database or "")
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


async def sql(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run raw statements in one transaction; the rows of those that return any."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                result = await conn.execute(text(statement))
                if result.returns_rows:
                    rows.extend(tuple(row) for row in result)
            return rows
    finally:
        await engine.dispose()


async def read_tables(database: str | AsyncEngine, queries: dict[str, str]) -> Snapshot:
    """The rows of each named query, read through an engine of the test's own (given a
    URL, one made for this read)."""
    if isinstance(database, str):
        engine = create_async_engine(database)
        try:
            return await read_tables(engine, queries)
        finally:
            await engine.dispose()
    async with database.connect() as conn:
        return {
            name: [tuple(row) for row in (await conn.execute(text(query))).all()]
            for name, query in queries.items()
        }


async def poison_messages(url: str, condition: str) -> None:
    """A trigger that makes the database refuse (raise on) every insert into `messages`
    whose new row meets `condition`, an SQL expression on NEW (SQLite and PostgreSQL)."""
    if url.startswith("postgresql"):
        await sql(
            url,
            f"""
            CREATE FUNCTION poison() RETURNS trigger AS $$
            BEGIN
              IF {condition} THEN RAISE EXCEPTION 'poisoned message'; END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql
            """,
            "CREATE TRIGGER poison BEFORE INSERT ON messages"
            " FOR EACH ROW EXECUTE FUNCTION poison()",
        )
    else:
        await sql(
            url,
            f"CREATE TRIGGER poison BEFORE INSERT ON messages WHEN {condition}"
            " BEGIN SELECT RAISE(ABORT, 'poisoned message'); END",
        )
