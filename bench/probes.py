"""Single-client measurements: draining an offline backlog and paging through history.

One client at a time is the point here (how fast one device catches up, how long one
page takes), so these run in the parent process, with no worker pool.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from bench.rawclient import RawClient
from bench.servers import Server
from bench.stats import summarize


class RssSampler:
    """Peak resident memory of the server, sampled from a thread while a probe runs."""

    def __init__(self, server: Server, interval: float = 0.02) -> None:
        self.server, self.interval = server, interval
        self.peak = server.rss()
        self.samples = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.server.rss())
            self.samples += 1

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


NEW_MESSAGE_FRAME = '2["new_message",'
SYNCED_FRAME = '2["synced",'


async def _drain(url: str, auth: dict[str, Any], timeout: float) -> tuple[int, float, bool]:
    client = RawClient(url)
    count = 0

    async def until_synced() -> None:
        nonlocal count
        async for frame in client.frames():
            if frame.startswith(NEW_MESSAGE_FRAME):
                count += 1
            elif frame.startswith(SYNCED_FRAME):
                return

    t0 = time.monotonic()
    try:
        await client.connect(auth)
        await asyncio.wait_for(until_synced(), timeout)
        return count, time.monotonic() - t0, True
    except TimeoutError:
        return count, time.monotonic() - t0, False
    finally:
        await client.close()


def offline_drain(
    server: Server, auth: dict[str, Any], expected: int, timeout: float = 300.0
) -> dict[str, Any]:
    """Connect one device with `expected` queued messages; time it until `synced`."""
    rss0 = server.rss()
    cpu0 = time.process_time()
    with RssSampler(server) as sampler:
        count, seconds, synced = asyncio.run(_drain(server.url, auth, timeout))
    client_cpu = time.process_time() - cpu0
    return {
        "queued": expected,
        "received": count,
        "synced": synced,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_peak_mb": round(sampler.peak / 2**20, 1),
        # The probe's own CPU in percent of one core: near 100 it limits the drain.
        "client_cpu_pct": round(100 * client_cpu / seconds, 1) if seconds > 0 else 0.0,
    }


async def _history(
    url: str, auth: dict[str, Any], peer: str, pages: int, id_range: range, budget: float
) -> tuple[list[float], int]:
    client = RawClient(url)
    rng = random.Random(7)
    samples: list[float] = []
    errors = 0
    await client.connect(auth)
    deadline = time.monotonic() + budget
    try:
        for i in range(pages):
            if time.monotonic() > deadline:
                break
            query: dict[str, Any] = {"with": peer, "limit": 50}
            if i % 10:  # one page in ten is the newest, the rest anywhere in the past
                query["before"] = rng.randrange(id_range.start + 50, id_range.stop)
            t0 = time.monotonic()
            answer = await asyncio.wait_for(client.call("history", query), 30)
            samples.append((time.monotonic() - t0) * 1000)
            if not (
                isinstance(answer, dict)
                and answer.get("ok")
                and len(answer.get("messages", ())) == 50
            ):
                errors += 1
    finally:
        await client.close()
    return samples, errors


def history_pages(
    server: Server,
    auth: dict[str, Any],
    peer: str,
    pages: int,
    id_range: range,
    budget: float = 120.0,
) -> dict[str, Any]:
    """p50/p99 of `history` pages of 50 over a conversation with ids in `id_range`."""
    samples, errors = asyncio.run(_history(server.url, auth, peer, pages, id_range, budget))
    return {"pages": len(samples), "short_or_failed": errors, **summarize(samples)}
