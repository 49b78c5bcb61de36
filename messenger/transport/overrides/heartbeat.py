"""Every session's next PING, due from one timer per engine server.

python-engineio gives each session a task that sleeps `ping_interval` and then sends
its PING, and a service task that passes over every session once per `ping_timeout`,
waking once per session (a task and a timer each time) to check its PONG. With many
idle sessions those wake-ups are most of what an idle node does, and the sleeping
task most of a session's own memory. Here a session's next PING waits in a slot of
`PingWheel` (whole ticks of loop time), and one timer sends the PINGs of every slot
that has come due. A missing PONG is noticed by each transport's own deadline (the
websocket's read deadline, the polling session's PONG timer: engine_socket), so the
service task is not started (`monitor_clients=False`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

# A PING goes out within this much after its session's `ping_interval` has run; the
# client's own deadline (interval + timeout) is many ticks away.
TICK_SECONDS = 1.0
# A loop may run a timer up to its clock's resolution early.
EARLY_SECONDS = 0.005


class PingDue(Protocol):
    def ping_due(self) -> None:
        """Send the PING now (or drop it, if the session has ended)."""


class PingWheel:
    """Sessions by the tick their PING is due in, fired by one loop timer."""

    def __init__(self, tick: float = TICK_SECONDS) -> None:
        self._tick = tick
        self._slots: dict[int, list[PingDue]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._slots.values())

    def add(self, session: PingDue, after: float) -> None:
        """Call `session.ping_due()` `after` seconds from now (up to a tick later)."""
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + after) / self._tick)
        sessions = self._slots.get(slot)
        if sessions is None:
            self._slots[slot] = [session]
        else:
            sessions.append(session)
        if self._armed_for is None or slot < self._armed_for:
            self._arm(loop, slot)

    def close(self) -> None:
        """Forget every session (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, None
        self._slots.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = slot
        self._timer = loop.call_at(slot * self._tick, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer, self._armed_for = None, None
        now = (loop.time() + EARLY_SECONDS) / self._tick
        for slot in sorted(s for s in self._slots if s <= now):
            for session in self._slots.pop(slot):
                session.ping_due()
        if self._slots:
            self._arm(loop, min(self._slots))
