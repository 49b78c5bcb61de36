"""`Maintenance`: a failing tick is logged with its traceback and the loop goes on;
sockets whose token is no longer valid are dropped, the others kept."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from messenger.delivery.live import LiveHub
from messenger.delivery.maintenance import Maintenance


@dataclass
class Conn:
    sid: str
    token_id: int


@dataclass
class FlakyHub:
    """A hub double whose first resync fails (the database is away)."""

    conns: list[Conn]
    resyncs: int = 0

    async def resync(self) -> None:
        self.resyncs += 1
        if self.resyncs == 1:
            raise RuntimeError("database away")

    def token_ids(self) -> list[int]:
        return sorted({conn.token_id for conn in self.conns})

    def connections_of_token(self, token_id: int) -> list[Conn]:
        return [conn for conn in self.conns if conn.token_id == token_id]


@dataclass
class Pusher:
    disconnected: list[str] = field(default_factory=list)

    async def disconnect(self, sid: str, abort: bool = False) -> None:
        self.disconnected.append(sid)


class Tokens:
    async def live_tokens(self, token_ids: list[int]) -> set[int]:
        return {tid for tid in token_ids if tid % 2 == 0}


async def test_a_failing_tick_is_logged_with_its_traceback_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = FlakyHub([Conn("a", 2), Conn("b", 3)])
    pusher = Pusher()
    maintenance = Maintenance(cast(LiveHub, hub), cast(Any, pusher), Tokens(), interval=0.01)
    with caplog.at_level(logging.INFO, logger="messenger.delivery.maintenance"):
        maintenance.start()
        for _ in range(200):
            if hub.resyncs >= 3:
                break
            await asyncio.sleep(0.01)
        await maintenance.stop()
    assert hub.resyncs >= 3
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.exc_info is not None and "database away" in str(failure.exc_info[1])
    # Only the socket of the dead token (odd ids here), once per passing tick.
    assert set(pusher.disconnected) == {"b"}
