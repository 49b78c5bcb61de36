"""A round of work run again and again in the background until stopped: the node's
maintenance, its push worker and its attachment collector are each one.

A round that fails is logged with its traceback and the next runs as usual: the work
is read from SQL, so a missed round only delays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# A round; returns how long to wait before the next (None: the usual interval).
Round = Callable[[], Awaitable[float | None]]


class Periodic:
    def __init__(self, name: str, run_round: Round, interval: float, first_wait: bool) -> None:
        self._name = name
        self._round = run_round
        self._interval = interval
        # Whether the first round waits an interval (work that needs no round at start).
        self._first_wait = first_wait
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"messenger-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        wait: float | None = self._interval if self._first_wait else 0.0
        while True:
            await asyncio.sleep(self._interval if wait is None else wait)
            try:
                wait = await self._round()
            except Exception:
                log.exception("%s round failed", self._name)
                wait = None
