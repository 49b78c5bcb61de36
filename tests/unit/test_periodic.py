"""`Periodic`: rounds again and again, a failing one logged and followed by the next,
the wait each round asks for, and a stop that ends it."""

from __future__ import annotations

import asyncio

import pytest

from messenger.periodic import Periodic


async def test_a_failed_round_is_logged_and_the_next_runs(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[float] = []

    async def run_round() -> float | None:
        rounds.append(asyncio.get_running_loop().time())
        if len(rounds) == 2:
            raise RuntimeError("the database is away")
        return None if len(rounds) == 3 else 0.0

    periodic = Periodic("test", run_round, interval=0.2, first_wait=False)
    periodic.start()
    for _ in range(200):
        if len(rounds) >= 5:
            break
        await asyncio.sleep(0.01)
    await periodic.stop()
    assert len(rounds) >= 5, rounds
    assert "test round failed" in caplog.text
    # After the failure (and after a round that asked for nothing) the interval
    # applied; after the others, the wait they asked for.
    assert rounds[2] - rounds[1] >= 0.19 and rounds[3] - rounds[2] >= 0.19
    assert rounds[1] - rounds[0] < 0.15


async def test_the_first_round_may_wait_an_interval() -> None:
    rounds: list[int] = []

    async def run_round() -> None:
        rounds.append(1)

    periodic = Periodic("test", run_round, interval=3600.0, first_wait=True)
    periodic.start()
    await asyncio.sleep(0.05)
    await periodic.stop()
    assert rounds == []
