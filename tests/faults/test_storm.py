"""Reconnect storm: a thousand users with a few messages waiting each connect at the
same moment, as after a network outage or a server restart. Every backlog must come in
full with its `synced`, without a single error and without the database refusing work
(no `database is locked`, no `unavailable`); the p99 time to `synced` is printed."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.faults.tools import (
    SERVER_LOG_ALARMS,
    SOAK,
    percentile,
    seed_accounts,
    storm_worker,
    summary,
)
from tests.processes import ServeGroup
from tests.support import Device

CLIENTS = 1000
BACKLOG = 3  # messages waiting for each client
SENDERS = 10
PER_ADDRESS_CAPS_OFF = {
    "MESSENGER_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "MESSENGER_MAX_PENDING_SESSIONS_PER_ADDRESS": "0",
}
WORKERS = 4  # client processes: one event loop cannot open a thousand sockets quickly
SYNCED_TIMEOUT = 60.0
P99_BOUND = 30.0


async def send_backlogs(
    url: str, senders: list[Any], recipients: list[Any]
) -> dict[str, list[int]]:
    """Every recipient gets BACKLOG messages while offline, through the server."""
    expected: dict[str, list[int]] = defaultdict(list)
    share = len(recipients) // len(senders)

    async def one(index: int) -> None:
        device = await Device(url).connect(senders[index].token)
        window = asyncio.Semaphore(64)

        async def send(to: str, n: int) -> None:
            async with window:
                answer = await device.send(to, f"waiting {n}", f"{to}-{n}")
                assert answer["ok"], answer
                expected[to].append(answer["message"]["id"])

        mine = recipients[index * share : (index + 1) * share]
        await asyncio.gather(*(send(r.username, n) for r in mine for n in range(BACKLOG)))
        await device.disconnect()

    await asyncio.gather(*(one(i) for i in range(len(senders))))
    return expected


@pytest.mark.timeout(600 if SOAK else 170)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"] if SOAK else ["sqlite"])
async def test_reconnect_storm(processes: ServeGroup, database_url: str, backend: str) -> None:
    accounts = await seed_accounts(database_url, "storm", CLIENTS + SENDERS)
    senders, recipients = accounts[:SENDERS], accounts[SENDERS:]
    # A thousand clients, all from loopback: the per-address caps would be the storm's
    # limit, not the server's (they have tests of their own, in test_hostile_*).
    server = processes(database_url, env=PER_ADDRESS_CAPS_OFF)
    await server.start()
    started = time.monotonic()
    expected = await send_backlogs(server.url, senders, recipients)
    assert sum(map(len, expected.values())) == CLIENTS * BACKLOG
    seeded_in = time.monotonic() - started

    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    clients = [(a.username, a.token, expected[a.username]) for a in recipients]
    workers = [
        context.Process(
            target=storm_worker,
            args=(server.url, clients[i::WORKERS], ready, go, SYNCED_TIMEOUT, results),
            daemon=True,
        )
        for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        loop = asyncio.get_running_loop()
        for _ in workers:
            await loop.run_in_executor(None, ready.get, True, 60)
        go.set()
        storm_started = time.monotonic()
        outcome: list[tuple[str, float, list[int], str]] = []
        for _ in workers:
            outcome.extend(await loop.run_in_executor(None, results.get, True, 150))
        storm_seconds = time.monotonic() - storm_started
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()

    times = [elapsed for _, elapsed, _, _ in outcome if elapsed >= 0]
    failed = [(name, errors) for name, elapsed, _, errors in outcome if elapsed < 0 or errors]
    incomplete = [(name, missing) for name, _, missing, _ in outcome if missing]
    print(
        f"\n[storm {backend}] {len(outcome)} clients x {BACKLOG} messages "
        f"(backlogs sent in {seeded_in:.1f}s), {WORKERS} client processes: "
        f"all synced in {storm_seconds:.1f}s; time to synced {summary(times) if times else '-'}; "
        f"failed {len(failed)}, incomplete backlogs {len(incomplete)}"
    )
    assert len(outcome) == CLIENTS
    assert not failed, failed[:10]
    assert not incomplete, incomplete[:10]
    assert percentile(times, 0.99) < P99_BOUND
    log = server.all_output()
    alarms = SERVER_LOG_ALARMS.findall(log) + [
        line for line in log.splitlines() if "unavailable" in line or "internal" in line
    ]
    assert not alarms, alarms[:10]
