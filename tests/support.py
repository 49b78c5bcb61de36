"""Test helpers: a real server on a loopback port, real clients over HTTP and Socket.IO."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio
from aiohttp import web

from messenger.app import Node
from messenger.config import Settings

PASSWORD = "correct horse battery"
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


async def start_server(settings: Settings) -> RunningServer:
    node = Node(settings)
    runner = web.AppRunner(node.app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await node.start()
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return RunningServer(node, runner, f"http://127.0.0.1:{port}", settings)


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
        return [data["cursor"] for name, data in self.events if name in ("new_message", "receipt")]

    async def wait_synced(self, timeout: float = 10) -> int:
        await self.wait_for(lambda: bool(self.of("synced")), timeout)
        return int(self.of("synced")[-1]["cursor"])

    async def disconnect(self) -> None:
        await self.sio.disconnect()
