"""Token buckets: a steady rate with bursts, per key (a user, a username, an address),
and the refusal that tells a client when to try again."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from messenger.errors import ErrorCode, MessengerError


class Throttled(MessengerError):
    """A refusal worth retrying later (`rate_limited`, `unavailable`): `retry_after`
    is the seconds to wait, which HTTP answers as a `Retry-After` header."""

    def __init__(self, code: ErrorCode, message: str, retry_after: float) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class RateLimiter:
    """Allows `rate` events per second per key, and bursts of `burst`; rate 0 is off.

    Idle buckets are forgotten once full again, so memory follows the active keys.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        if self.rate <= 0:
            return True
        now = self._clock()
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._forget_full(now)
        return allowed

    def wait(self, key: Hashable, cost: float = 1.0) -> float:
        """Seconds until `key` may spend `cost` again (0 if it may now)."""
        if self.rate <= 0 or key not in self._buckets:
            return 0.0
        tokens, stamp = self._buckets[key]
        tokens = min(self.burst, tokens + (self._clock() - stamp) * self.rate)
        return max(0.0, (cost - tokens) / self.rate)

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
