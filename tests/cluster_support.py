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
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from messenger.auth import Accounts, password_hasher
from messenger.store.db import open_database
from tests.support import PASSWORD, Account, Device, Http, unique_name

CHEAP_HASHER = password_hasher(time_cost=1, memory_kib=1024)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@dataclass
class NodeProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(10) == -signal.SIGKILL

    async def metric(self, name: str) -> float:
        """One unlabelled sample of the node's /metrics."""
        status, text = await Http(self.url).request("GET", "/metrics")
        assert status == 200, text
        for line in str(text).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")


def wait_healthy(node: NodeProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise AssertionError(f"node exited with {node.process.returncode}\n{node.output()}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(node.url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.05)
    raise AssertionError(f"node did not become healthy\n{node.output()}")


class Nodes:
    """Starts `python -m messenger serve` processes on loopback ports; `close` kills
    whatever is still running."""

    def __init__(self, database_url: str, logs: Path) -> None:
        self.database_url = database_url
        self.logs = logs
        self.started: list[NodeProcess] = []

    def start_sync(self, redis_url: str | None, resync_interval: float = 0.5) -> NodeProcess:
        port = free_port()
        log = self.logs / f"node-{len(self.started)}-{port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_")}
        env.update(MESSENGER_RATE_LIMIT="0", MESSENGER_RESYNC_INTERVAL=str(resync_interval))
        args = ["serve", "--port", str(port), "--database-url", self.database_url]
        args.append("--no-migrate")  # the database is a copy of the migrated template
        if redis_url is not None:
            args += ["--redis-url", redis_url]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "messenger", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = NodeProcess(process, f"http://127.0.0.1:{port}", log)
        self.started.append(node)
        wait_healthy(node)
        return node

    async def start(self, redis_url: str | None, resync_interval: float = 0.5) -> NodeProcess:
        return await asyncio.to_thread(self.start_sync, redis_url, resync_interval)

    async def start_many(
        self, count: int, redis_url: str | None, resync_interval: float = 0.5
    ) -> list[NodeProcess]:
        return list(
            await asyncio.gather(*(self.start(redis_url, resync_interval) for _ in range(count)))
        )

    def close(self) -> None:
        for node in self.started:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait(10)

    def report(self) -> str:
        return "\n".join(f"--- {node.log.name}\n{node.output()}" for node in self.started)


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
    device = await Device(url).connect(account.token, **auth)
    return device, await device.wait_synced(timeout=20)


def stream(device: Device) -> list[tuple[str, dict[str, Any]]]:
    return [(name, data) for name, data in device.events if name in ("new_message", "receipt")]


def assert_contiguous(device: Device, synced: int) -> None:
    """Stream cursors after `synced` grow by exactly one: no hole, no repeat."""
    cursors = device.cursors()
    assert cursors == list(range(synced + 1, synced + 1 + len(cursors))), cursors


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
