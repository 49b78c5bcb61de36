"""Helpers for the multi-node tests: real `messenger serve` processes sharing one
PostgreSQL database, each test with a Redis server of its own that it may kill and
start again, and clients that keep sends in flight across them.

Nothing here is shared with other test modules' Redis (127.0.0.1:6379): the nodes'
presence keys and pub/sub channel would mix with theirs, and a test that restarts Redis
must not take down anybody else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from messenger.auth import Accounts, password_hasher
from messenger.store.db import open_database
from tests.processes import ServeGroup, ServeProcess, free_port
from tests.support import PASSWORD, STREAM_EVENTS, Account, Device, connect_synced, unique_name

CHEAP_HASHER = password_hasher(time_cost=1, memory_kib=1024)


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float, interval: float = 0.05
) -> float:
    """Poll until `condition()` holds; returns the seconds it took, fails after `timeout`."""
    started = time.monotonic()

    async def holds() -> bool:
        value = condition()
        return bool(await value) if inspect.isawaitable(value) else bool(value)

    while not await holds():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


# -- Redis ------------------------------------------------------------------------------


class RedisServer:
    """A redis-server of the test's own, on a free port, without persistence. Plain
    `subprocess`, so a module-scoped fixture can own one outside any event loop."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> str | None:
        return shutil.which("redis-server")

    def start(self) -> None:
        binary = self.available()
        assert binary is not None
        with self.log.open("ab") as out:
            options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), *options, "--daemonize", "no"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                if self.process.poll() is not None:
                    raise OSError(f"redis-server exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return
                except (OSError, redis.RedisError):
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)
        finally:
            client.close()

    def subscribers(self, channel: str) -> int:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
        except (OSError, redis.RedisError):
            return 0
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: connections drop at once and every key is gone (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# -- nodes ------------------------------------------------------------------------------


class Nodes(ServeGroup):
    """`python -m messenger serve` nodes on one (migrated) database; `close` kills
    whatever is still running."""

    def __init__(self, database_url: str, logs: Path) -> None:
        super().__init__(logs, migrate=False, name="node")
        self.database_url = database_url

    def node(self, redis_url: str | None, resync_interval: float = 0.5) -> ServeProcess:
        env = {"MESSENGER_RESYNC_INTERVAL": str(resync_interval)}
        return self(self.database_url, redis_url=redis_url, env=env)

    def start_sync(self, redis_url: str | None, resync_interval: float = 0.5) -> ServeProcess:
        return self.node(redis_url, resync_interval).start_sync()

    async def start(self, redis_url: str | None, resync_interval: float = 0.5) -> ServeProcess:
        return await self.node(redis_url, resync_interval).start()

    async def start_many(
        self, count: int, redis_url: str | None, resync_interval: float = 0.5
    ) -> list[ServeProcess]:
        return list(
            await asyncio.gather(*(self.start(redis_url, resync_interval) for _ in range(count)))
        )


# -- clients ----------------------------------------------------------------------------


async def accounts(database_url: str, *prefixes: str) -> list[Account]:
    """Users with a session each, made in-process like `messenger user add` does, with
    a cheap argon2 setting: the servers' own hashing would cost about a second of CPU
    per account (tests of the HTTP API cover registration and login)."""
    db = open_database(database_url)
    made = Accounts(db, timedelta(days=1), CHEAP_HASHER)
    try:
        result = []
        for prefix in prefixes:
            name = unique_name(prefix)
            await made.register(name, PASSWORD)
            session = await made.login(name, PASSWORD)
            result.append(Account(name, session.token))
        return result
    finally:
        await db.dispose()


async def connect(url: str, account: Account, **auth: Any) -> tuple[Device, int]:
    """A device that has finished its backlog; returns it with its `synced` cursor."""
    return await connect_synced(url, account, timeout=20, **auth)


def stream(device: Device) -> list[tuple[str, dict[str, Any]]]:
    return [(name, data) for name, data in device.events if name in STREAM_EVENTS]


async def sync_all(device: Device, limit: int = 100) -> list[dict[str, Any]]:
    """The user's whole stream, paged through `sync` from cursor 0 to the head."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = await device.call("sync", {"after": after, "limit": limit})
        assert answer["ok"], answer
        events.extend(answer["events"])
        if answer["events"]:
            assert answer["cursor"] == answer["events"][-1]["data"]["cursor"]
        after = answer["cursor"]
        if not answer["has_more"]:
            return events


@dataclass
class Sender:
    """One device sending to one peer, keeping `window` sends in flight, recording each
    answer by client_id. Cancel `run` to abandon the sends still unanswered."""

    device: Device
    to: str
    client_ids: list[str]
    window: int = 8
    # Seconds between two sends (0: as fast as the window allows).
    pace: float = 0.0
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[tuple[str, Any]] = field(default_factory=list)
    on_ack: Callable[[], None] | None = None

    async def run(self) -> None:
        window = asyncio.Semaphore(self.window)
        for client_id in self.client_ids:
            await window.acquire()

            def record(answer: dict[str, Any], client_id: str = client_id) -> None:
                window.release()
                if answer.get("ok"):
                    self.acks[client_id] = answer["message"]
                    if self.on_ack is not None:
                        self.on_ack()
                else:
                    self.errors.append((client_id, answer))

            payload = {"to": self.to, "body": body_of(client_id), "client_id": client_id}
            await self.device.sio.emit("send", payload, callback=record)
            if self.pace:
                await asyncio.sleep(self.pace)
        for _ in range(self.window):
            await window.acquire()

    def unacked(self) -> list[str]:
        return [client_id for client_id in self.client_ids if client_id not in self.acks]


def body_of(client_id: str) -> str:
    return f"body of {client_id}"


def ids_of(messages: Iterable[dict[str, Any]]) -> list[int]:
    return [message["id"] for message in messages]


async def close_all(*devices: Device) -> None:
    for device in devices:
        if device.sio.connected:
            with contextlib.suppress(Exception):
                await device.disconnect()
