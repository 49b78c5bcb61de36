"""The load generator: worker processes, each driving sender -> recipient client pairs.

Each worker runs its own event loop so the generator scales past one core, and its
clients are bare Socket.IO clients (bench.rawclient) so that it needs far less CPU
than the servers it drives. Senders keep a bounded window of unanswered sends;
recipients batch the ids they received into `delivered` events, which makes the
server send receipts back to the senders.
All workers start sending at one shared monotonic instant (CLOCK_MONOTONIC is
system-wide on Linux), so their measurement windows line up with the server's.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.dialects import DIALECTS, Dialect
from bench.rawclient import OnEvent, RawClient
from bench.stats import WorkerResult

CONNECT_CONCURRENCY = 32


@dataclass(frozen=True)
class Peer:
    """One client identity: its username and the Socket.IO auth it connects with.

    `url` pins the client to one server (several nodes in `cluster`); None means the
    run's own url.
    """

    username: str
    auth: dict[str, Any]
    url: str | None = None


@dataclass(frozen=True)
class LoadSpec:
    """What every worker of one run does; rates are per worker."""

    url: str
    dialect: str
    duration: float
    warmup: float
    window: int
    rate: float | None = None
    body_size: int = 64
    delivered_batch: int = 50
    delivered_interval: float = 0.005
    drain: float = 5.0
    connect_timeout: float = 60.0


@dataclass
class _Pair:
    """A sender, its recipient, and the bookkeeping that turns events into latencies."""

    index: int
    sender: Peer
    recipient: Peer
    sio_sender: RawClient
    sio_recipient: RawClient
    window: asyncio.Semaphore
    sent_at: dict[str, float] = field(default_factory=dict)
    id_sent_at: dict[int, float] = field(default_factory=dict)
    early_receipts: dict[int, float] = field(default_factory=dict)
    to_mark: list[int] = field(default_factory=list)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    outstanding: int = 0


class _Worker:
    """One process's share of the pairs and its counters."""

    def __init__(self, spec: LoadSpec, peers: list[tuple[Peer, Peer]], worker_id: int) -> None:
        self.spec = spec
        self.dialect: Dialect = DIALECTS[spec.dialect]
        self.peers = peers
        self.worker_id = worker_id
        self.tag = uuid.uuid4().hex[:8]
        self.result = WorkerResult()
        self.window_lo = 0.0
        self.window_hi = 0.0
        self.stop_at = 0.0
        self.pairs: list[_Pair] = []
        self.listeners: list[asyncio.Task[None]] = []

    def in_window(self, t: float) -> bool:
        return self.window_lo <= t < self.window_hi

    # -- wiring -----------------------------------------------------------------

    def _recipient_events(self, pair: _Pair) -> OnEvent:
        on_push = self._on_push(pair)
        push_event = self.dialect.push_event

        async def on_event(name: str, data: Any) -> None:
            if name == push_event:
                await on_push(data)
            elif name == "synced":
                pair.synced.set()

        if not self.dialect.waits_for_synced:
            pair.synced.set()
        return on_event

    def _sender_events(self, pair: _Pair) -> OnEvent:
        on_receipt = self._on_receipt(pair)

        async def on_event(name: str, data: Any) -> None:
            if name == "receipt":
                on_receipt(data)

        return on_event

    def _on_push(self, pair: _Pair) -> Callable[[Any], Awaitable[None]]:
        async def handler(data: Any) -> None:
            now = time.monotonic()
            pushed = self.dialect.pushed(data)
            if pushed is None:
                return
            message_id, body = pushed
            t0 = pair.sent_at.pop(body.split(" ", 1)[0], None)
            if t0 is None:
                self.result.duplicates += 1
                return
            self.result.received += 1
            if self.in_window(now):
                self.result.received_in_window += 1
            if self.in_window(t0):
                self.result.push_ms.append((now - t0) * 1000)
            pair.to_mark.append(message_id)
            if len(pair.to_mark) >= self.spec.delivered_batch:
                await self._flush(pair)

        return handler

    def _on_receipt(self, pair: _Pair) -> Callable[[Any], None]:
        def handler(data: Any) -> None:
            now = time.monotonic()
            ids = data.get("ids") if isinstance(data, dict) else None
            for message_id in ids or ():
                t0 = pair.id_sent_at.pop(message_id, None)
                if t0 is None:
                    pair.early_receipts[message_id] = now
                    continue
                self._count_receipt(t0, now)

        return handler

    def _count_receipt(self, t0: float, now: float) -> None:
        self.result.receipts += 1
        if self.in_window(t0):
            self.result.receipt_ms.append((now - t0) * 1000)

    async def _flush(self, pair: _Pair) -> None:
        if not pair.to_mark or not pair.sio_recipient.connected:
            return
        ids, pair.to_mark = pair.to_mark[:500], pair.to_mark[500:]
        await pair.sio_recipient.emit("delivered", {"ids": ids})

    async def _flusher(self) -> None:
        deadline = self.stop_at + self.spec.drain
        while time.monotonic() < deadline:
            await asyncio.sleep(self.spec.delivered_interval)
            for pair in self.pairs:
                await self._flush(pair)

    # -- sending ----------------------------------------------------------------

    def _on_ack(self, pair: _Pair, key: str, t0: float) -> Callable[[Any], None]:
        def callback(answer: Any) -> None:
            now = time.monotonic()
            pair.window.release()
            pair.outstanding -= 1
            if not isinstance(answer, dict) or not answer.get("ok"):
                self.result.errors += 1
                pair.sent_at.pop(key, None)
                return
            self.result.acked += 1
            if self.in_window(t0):
                self.result.ack_ms.append((now - t0) * 1000)
            message_id = answer.get("message", {}).get("id")
            if isinstance(message_id, int):
                early = pair.early_receipts.pop(message_id, None)
                if early is not None:
                    self._count_receipt(t0, early)
                else:
                    pair.id_sent_at[message_id] = t0

        return callback

    async def _sender(self, pair: _Pair, start: float) -> None:
        """Closed loop (window only) or open loop at a fixed rate, until stop_at."""
        pad = "x" * max(0, self.spec.body_size - 24)
        interval = len(self.pairs) / self.spec.rate if self.spec.rate else 0.0
        # Spread the open-loop senders' phases so they do not fire in bursts.
        scheduled = start + (interval * pair.index / max(1, len(self.pairs)))
        seq = 0
        while True:
            if interval:
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(
                    pair.window.acquire(), max(0.001, self.stop_at - time.monotonic())
                )
            except TimeoutError:
                return
            now = time.monotonic()
            if now >= self.stop_at or not pair.sio_sender.connected:
                pair.window.release()
                return
            t0 = scheduled if interval else now
            scheduled += interval
            seq += 1
            key = f"{self.tag}.{pair.index}.{seq}"
            pair.sent_at[key] = t0
            pair.outstanding += 1
            self.result.sent += 1
            payload = self.dialect.send_payload(
                pair.sender.username, pair.recipient.username, f"{key} {pad}", key
            )
            await pair.sio_sender.emit(
                self.dialect.send_event, payload, self._on_ack(pair, key, t0)
            )

    # -- lifecycle --------------------------------------------------------------

    async def connect(self, http: aiohttp.ClientSession) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(client: RawClient, peer: Peer, on_event: OnEvent) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(30):
                        await client.connect(peer.auth)
                except Exception:  # counted, the run goes on without it
                    self.result.connect_errors += 1
                    return
            self.listeners.append(asyncio.create_task(client.listen(on_event)))

        for index, (sender, recipient) in enumerate(self.peers):
            pair = _Pair(
                index,
                sender,
                recipient,
                RawClient(sender.url or self.spec.url, http),
                RawClient(recipient.url or self.spec.url, http),
                asyncio.Semaphore(self.spec.window),
            )
            self.pairs.append(pair)
        await asyncio.gather(
            *(one(p.sio_recipient, p.recipient, self._recipient_events(p)) for p in self.pairs)
        )
        await asyncio.gather(
            *(one(p.sio_sender, p.sender, self._sender_events(p)) for p in self.pairs)
        )
        waits = [
            asyncio.wait_for(p.synced.wait(), self.spec.connect_timeout)
            for p in self.pairs
            if p.sio_recipient.connected
        ]
        await asyncio.gather(*waits, return_exceptions=True)

    async def run(self, start: float) -> None:
        spec = self.spec
        self.window_lo, self.window_hi = start + spec.warmup, start + spec.duration
        self.stop_at = self.window_hi
        cpu_task = asyncio.create_task(self._sample_cpu())
        flusher = asyncio.create_task(self._flusher())
        senders = [asyncio.create_task(self._sender(p, start)) for p in self.pairs]
        await asyncio.gather(*senders)
        await self._drain()
        flusher.cancel()
        await cpu_task
        self.result.unanswered = sum(p.outstanding for p in self.pairs)
        self.result.lost = sum(len(p.sent_at) for p in self.pairs)

    async def _drain(self) -> None:
        """Give in-flight sends, pushes and receipts a bounded time to arrive."""
        deadline = self.stop_at + self.spec.drain
        while time.monotonic() < deadline:
            busy = any(p.outstanding or p.sent_at or p.id_sent_at for p in self.pairs)
            if not busy:
                return
            await asyncio.sleep(0.05)

    async def _sample_cpu(self) -> None:
        await asyncio.sleep(max(0.0, self.window_lo - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, self.window_hi - time.monotonic()))
        self.result.cpu_s = time.process_time() - cpu0

    async def close(self) -> None:
        clients = [c for p in self.pairs for c in (p.sio_sender, p.sio_recipient)]
        await asyncio.gather(
            *(asyncio.wait_for(c.close(), 5) for c in clients), return_exceptions=True
        )
        for listener in self.listeners:
            listener.cancel()
        await asyncio.gather(*self.listeners, return_exceptions=True)


async def _worker_main(
    spec: LoadSpec,
    peers: list[tuple[Peer, Peer]],
    worker_id: int,
    ready: Any,
    go: Any,
    start_at: Any,
) -> WorkerResult:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        worker = _Worker(spec, peers, worker_id)
        try:
            await worker.connect(http)
            worker.result.connected = sum(
                p.sio_sender.connected + p.sio_recipient.connected for p in worker.pairs
            )
            ready.put(worker_id)
            started = await asyncio.to_thread(go.wait, spec.connect_timeout + 30)
            if started and start_at.value > 0:
                limit = start_at.value - time.monotonic() + spec.duration + spec.drain + 30
                await asyncio.wait_for(worker.run(start_at.value), max(1.0, limit))
        finally:
            await worker.close()
        return worker.result


def worker_process(
    spec: LoadSpec,
    peers: list[tuple[Peer, Peer]],
    worker_id: int,
    ready: Any,
    go: Any,
    start_at: Any,
    results: Any,
    cpus: frozenset[int] | None = None,
) -> None:
    """Entry point of one load-generator process; puts its WorkerResult on `results`.
    With `cpus`, the process (and the threads it starts) runs on those cores only."""
    try:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        result = asyncio.run(_worker_main(spec, peers, worker_id, ready, go, start_at))
    except BaseException as exc:  # reported to the parent, not lost
        result = WorkerResult(failure=f"{type(exc).__name__}: {exc}")
        ready.put(worker_id)
    result.worker_id = worker_id
    result.pid = os.getpid()
    results.put(result)


@dataclass
class Run:
    """A started set of worker processes and the handles to drive them."""

    procs: list[Any]
    ready: Any
    go: Any
    start_at: Any
    results: Any


def launch(
    spec: LoadSpec,
    peers: list[tuple[Peer, Peer]],
    workers: int,
    cpus: frozenset[int] | None = None,
) -> Run:
    """Start `workers` processes with the pairs dealt round-robin among them, on the
    cores in `cpus` if given (`--pin`)."""
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go, start_at = ctx.Event(), ctx.Value("d", 0.0)
    procs = []
    for worker_id in range(workers):
        share = peers[worker_id::workers]
        proc = ctx.Process(
            target=worker_process,
            daemon=True,
            args=(spec, share, worker_id, ready, go, start_at, results, cpus),
        )
        proc.start()
        procs.append(proc)
    return Run(procs, ready, go, start_at, results)


def stop(run: Run) -> None:
    """Kill any worker that is still alive (after an error or Ctrl-C)."""
    run.go.set()
    for proc in run.procs:
        proc.join(timeout=2)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=2)
