"""Client identities: plain usernames for the relay, real accounts on messenger.

messenger hashes passwords slowly on purpose, so accounts are made once per server
(over its public HTTP API, a few at a time) and reused by every run against it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.loadgen import Peer

PASSWORD = "bench-password-123"
HTTP_CONCURRENCY = 8
LOGIN_PATIENCE = 300.0


def relay_peers(count: int, prefix: str = "u") -> list[Peer]:
    return [Peer(f"{prefix}{i:05d}", {"username": f"{prefix}{i:05d}"}) for i in range(count)]


def pairs_of(peers: list[Peer]) -> list[tuple[Peer, Peer]]:
    """Even-indexed peers send to the odd-indexed peer after them."""
    return [(peers[i], peers[i + 1]) for i in range(0, len(peers) - 1, 2)]


async def _account(http: aiohttp.ClientSession, base: str, username: str) -> Peer:
    creds = {"username": username, "password": PASSWORD}
    async with http.post(f"{base}/api/v1/users", json=creds) as resp:
        if resp.status not in (201, 409):
            raise RuntimeError(f"POST /api/v1/users -> {resp.status}: {await resp.text()}")
    # Logins are throttled per address (a burst, then about one a second), so a
    # benchmark with many accounts waits its turn instead of failing.
    deadline = time.monotonic() + LOGIN_PATIENCE
    while True:
        async with http.post(f"{base}/api/v1/sessions", json=creds) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status == 201:
                return Peer(username, {"token": body["token"]})
            if resp.status != 429 or time.monotonic() > deadline:
                raise RuntimeError(f"POST /api/v1/sessions -> {resp.status}: {body}")
        await asyncio.sleep(1.0)


async def _accounts(base: str, usernames: list[str]) -> list[Peer]:
    gate = asyncio.Semaphore(HTTP_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(name: str) -> Peer:
            async with gate:
                return await _account(http, base, name)

        return list(await asyncio.gather(*(one(n) for n in usernames)))


def named_peers(base: str, usernames: list[str]) -> list[Peer]:
    """Create (or log in to) these accounts and return them with fresh tokens."""
    return asyncio.run(_accounts(base, usernames))


def messenger_peers(base: str, count: int, prefix: str = "u") -> list[Peer]:
    """`count` numbered accounts, as `named_peers` makes them."""
    return named_peers(base, [f"{prefix}{i:05d}" for i in range(count)])
