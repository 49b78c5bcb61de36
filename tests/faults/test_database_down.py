"""The database goes away and comes back, the server staying up: PostgreSQL is reached
through a TCP proxy that is cut (every connection reset, new ones refused) and later
restored. While it is away every `send` is answered with an error within a bound (never
ok, never a hang) and /healthz says 503; afterwards the same process serves again, and
nothing was half-written: every user's stream counter equals its number of events."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from messenger.store.models import messages
from tests.faults.tools import TcpProxy, seed_accounts, stream_consistency
from tests.processes import ServeGroup
from tests.support import Device

ANSWER_BOUND = 10.0  # seconds a send may take to fail while the database is away
RECOVERY_BOUND = 30.0  # seconds until the server serves again after it is back


def through(proxy: TcpProxy, database_url: str) -> str:
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0] + "@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


async def health(url: str) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ANSWER_BOUND)) as s:
        async with s.get(url + "/healthz") as response:
            return response.status


async def stored_client_ids(database_url: str) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(messages.c.client_id))).scalars())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_database_cut_and_restored(processes: ServeGroup, database_url: str) -> None:
    ann, bob = await seed_accounts(database_url, "down", 2)
    port = urlsplit(database_url).port or 5432
    proxy = await TcpProxy(port).start()
    server = processes(through(proxy, database_url))
    try:
        await server.start()
        sender = await Device(server.url).connect(ann.token)
        receiver = await Device(server.url).connect(bob.token)
        await sender.wait_synced()
        await receiver.wait_synced()
        for i in range(3):
            answer = await sender.send(bob.username, f"before {i}", f"before-{i}")
            assert answer["ok"], answer

        await proxy.cut()
        failures = []
        for i in range(3):
            started = time.monotonic()
            try:
                answer = await sender.call(
                    "send",
                    {"to": bob.username, "body": f"during {i}", "client_id": f"during-{i}"},
                    timeout=ANSWER_BOUND,
                )
            except TimeoutError:
                pytest.fail(f"send {i} hung for {ANSWER_BOUND}s with the database away")
            elapsed = time.monotonic() - started
            assert not answer["ok"], answer
            assert answer["error"]["code"] in ("unavailable", "internal"), answer
            failures.append((answer["error"]["code"], round(elapsed, 2)))
        history = await sender.call("history", {"with": bob.username}, timeout=ANSWER_BOUND)
        assert not history["ok"] and history["error"]["code"] in ("unavailable", "internal")
        assert await health(server.url) == 503

        await proxy.restore()
        started = time.monotonic()
        answer: dict[str, object] = {"ok": False}
        attempts = 0
        while not answer["ok"]:
            assert time.monotonic() - started < RECOVERY_BOUND, f"no recovery: {answer}"
            attempts += 1
            answer = await sender.call(
                "send",
                {"to": bob.username, "body": "after", "client_id": "after-0"},
                timeout=ANSWER_BOUND,
            )
            if not answer["ok"]:
                await asyncio.sleep(0.2)
        recovered_in = time.monotonic() - started
        assert await health(server.url) == 200
        assert server.running()
        print(
            f"\n[database down] failures while away {failures}; "
            f"recovered in {recovered_in:.2f}s after {attempts} attempt(s)"
        )
        # The connections lived through it: the receiver is pushed the new message.
        await receiver.wait_for(
            lambda: "after-0" in [m["client_id"] for m in receiver.messages()], timeout=10
        )
        await sender.disconnect()
        await receiver.disconnect()
    finally:
        await proxy.close()

    stored = await stored_client_ids(database_url)
    assert sorted(stored) == ["after-0", "before-0", "before-1", "before-2"]
    assert await stream_consistency(database_url) == []
