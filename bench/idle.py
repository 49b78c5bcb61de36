"""Many idle sockets, held open by several processes, to weigh a connection's memory.

Each process raises its RLIMIT_NOFILE to the hard limit, connects its share of
sockets (websocket only), reports how many it holds, and closes them all when the
parent says so (or when its time runs out).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import resource
import time
from typing import Any

import aiohttp
import socketio

from bench.dialects import quiet_clients

CONNECT_CONCURRENCY = 64
# messenger's connect rate falls as sockets pile up: 10,000 can take minutes on a
# shared machine.
CONNECT_BUDGET = 600.0


async def _hold(
    url: str, auths: list[dict[str, Any]], ready: Any, release: Any, hold_for: float
) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        clients = [
            socketio.AsyncClient(reconnection=False, handle_sigint=False, http_session=http)
            for _ in auths
        ]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(client: socketio.AsyncClient, auth: dict[str, Any]) -> bool:
            async with gate:
                try:
                    await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=60)
                    return True
                except Exception:  # a refused socket is counted, not fatal
                    return False

        try:
            done = await asyncio.gather(*(one(c, a) for c, a in zip(clients, auths, strict=True)))
            ready.put(sum(done))
            await asyncio.to_thread(release.wait, hold_for)
        finally:
            await asyncio.gather(
                *(asyncio.wait_for(c.disconnect(), 10) for c in clients if c.connected),
                return_exceptions=True,
            )


def _holder(
    url: str, auths: list[dict[str, Any]], ready: Any, release: Any, hold_for: float
) -> None:
    quiet_clients()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(_hold(url, auths, ready, release, hold_for))
    except BaseException:  # the parent sees a short count instead
        ready.put(0)


class IdleSockets:
    """Context manager: `count` sockets held open by `procs` processes."""

    def __init__(
        self, url: str, auths: list[dict[str, Any]], procs: int, hold_for: float = 900.0
    ) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.release = ctx.Queue(), ctx.Event()
        self.procs = [
            ctx.Process(
                target=_holder,
                daemon=True,
                args=(url, auths[i::procs], self.ready, self.release, hold_for),
            )
            for i in range(procs)
        ]
        self.connected = 0
        self.seconds = 0.0

    def __enter__(self) -> IdleSockets:
        t0 = time.monotonic()
        deadline = t0 + CONNECT_BUDGET
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            try:
                self.connected += self.ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
        self.seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        for proc in self.procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
