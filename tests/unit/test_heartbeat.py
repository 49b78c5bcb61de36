"""The ping wheel: every session's PING from one timer, each at its own time."""

from __future__ import annotations

import asyncio

import pytest

from messenger.transport.overrides.heartbeat import PingWheel

TICK = 0.02


class Session:
    def __init__(self, name: str, fired: list[tuple[str, float]]) -> None:
        self.name, self._fired = name, fired

    def ping_due(self) -> None:
        self._fired.append((self.name, asyncio.get_running_loop().time()))


async def test_each_session_pings_after_its_delay_within_a_tick() -> None:
    loop = asyncio.get_running_loop()
    wheel = PingWheel(TICK)
    fired: list[tuple[str, float]] = []
    start = loop.time()
    # Added out of order: a later-added, earlier-due session moves the timer forward.
    for name, after in (("late", 0.2), ("early", 0.05), ("middle", 0.1), ("early2", 0.05)):
        wheel.add(Session(name, fired), after)
    assert len(wheel) == 4
    await asyncio.sleep(0.35)
    assert [name for name, _ in fired] == ["early", "early2", "middle", "late"]
    delays = {name: at - start for name, at in fired}
    for name, after in (("early", 0.05), ("middle", 0.1), ("late", 0.2)):
        assert after - 0.006 <= delays[name] <= after + TICK + 0.05
    assert len(wheel) == 0


async def test_a_session_added_while_others_fire_waits_for_its_own_slot() -> None:
    wheel = PingWheel(TICK)
    fired: list[tuple[str, float]] = []

    class Again(Session):
        def ping_due(self) -> None:
            super().ping_due()
            if len(fired) == 1:  # as a PONG would: the next PING, an interval later
                wheel.add(self, 0.1)

    start = asyncio.get_running_loop().time()
    wheel.add(Again("again", fired), 0.05)
    await asyncio.sleep(0.3)
    assert len(fired) == 2
    assert fired[1][1] - start >= 0.15 - 0.006


async def test_close_forgets_every_session() -> None:
    wheel = PingWheel(TICK)
    fired: list[tuple[str, float]] = []
    wheel.add(Session("gone", fired), 0.05)
    wheel.close()
    await asyncio.sleep(0.15)
    assert fired == [] and len(wheel) == 0


@pytest.mark.parametrize("sessions", [1, 1000])
async def test_many_sessions_in_one_slot_fire_together(sessions: int) -> None:
    wheel = PingWheel(TICK)
    fired: list[tuple[str, float]] = []
    for i in range(sessions):
        wheel.add(Session(str(i), fired), 0.05)
    await asyncio.sleep(0.15)
    assert len(fired) == sessions
