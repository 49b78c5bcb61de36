"""The password-hashing pool: every argon2 hash and verify of the node runs here.

Each argon2 call holds `argon2_memory_kib` and a core for its whole run, so the
number running at once is the node's memory and CPU bound for passwords: a fixed
number of threads (argon2-cffi releases the GIL while it works), and a bounded
number of calls waiting for one. Past that a caller is refused at once with
`unavailable` and a time to retry, instead of queueing without end; the event loop
never runs a hash itself.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from messenger.errors import ErrorCode
from messenger.ratelimit import Throttled

T = TypeVar("T")
# Weight of the newest call in the running estimate of a call's duration.
ESTIMATE_WEIGHT = 0.2


class HashPool:
    """Runs password hashing on `workers` threads with at most `queue` calls waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.queue = queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        # Counted from the worker threads' side: a call leaves only once it has run
        # (or was dropped unstarted), even if the request that made it went away.
        self._lock = threading.Lock()
        self._admitted = 0
        self._closed = False
        self._seconds = 0.0  # running estimate of one call, for Retry-After
        # Counters for tests and operators: calls run to the end, and calls refused.
        self.completed = 0
        self.refused = 0

    @property
    def in_flight(self) -> int:
        """Calls running or waiting for a worker."""
        return self._admitted

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on a worker thread; `unavailable` at once when the pool and
        its queue are full."""
        with self._lock:
            if self._closed or self._admitted >= self.workers + self.queue:
                self.refused += 1
                raise Throttled(
                    ErrorCode.UNAVAILABLE,
                    "the server is busy checking passwords; try again shortly",
                    self._wait_seconds(),
                )
            self._admitted += 1
        try:
            future = self._executor.submit(self._timed, work, *args)
        except RuntimeError:  # shut down meanwhile
            self._leave()
            raise Throttled(ErrorCode.UNAVAILABLE, "the server is stopping", 1.0) from None
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Refuse new calls; the ones admitted finish on their threads."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False)

    def _timed(self, work: Callable[..., T], *args: object) -> T:
        started = time.perf_counter()
        try:
            return work(*args)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.completed += 1
                if self._seconds == 0.0:
                    self._seconds = elapsed
                else:
                    self._seconds += ESTIMATE_WEIGHT * (elapsed - self._seconds)

    def _done(self, _future: Future[Any]) -> None:
        self._leave()

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    def _wait_seconds(self) -> float:
        """About how long until the calls ahead have run (Retry-After), at least 1 s."""
        return max(1.0, math.ceil(self._admitted * self._seconds / self.workers))
