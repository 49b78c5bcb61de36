"""The push worker: one task per node that claims push work from SQL (`work.claim`), sends
it (Web Push or a webhook), and records what happened.

Nothing of it is in memory only: a push due is found again from SQL after a crash or
a restart, and on PostgreSQL several nodes' pushers share the work without doubles
(the claim skips rows another one holds, and leases what it takes). Encryption and
signing run on a thread; the HTTP requests on the event loop, at most `CONCURRENCY`
at once, each bounded by `TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp

from messenger.metrics import Metrics
from messenger.periodic import Periodic
from messenger.push.addresses import PublicResolver, literal_refused
from messenger.push.keys import VapidKeys
from messenger.push.payloads import Request, webhook_request, webpush_request
from messenger.push.work import Job, claim, failed, postponed, sent
from messenger.store.db import Database
from messenger.store.push import (
    delete_subscriptions,
    pending_summary,
    prune_dead_sessions,
    update_subscriptions,
)
from messenger.wire import utc_now

log = logging.getLogger(__name__)

CONCURRENCY = 16
TIMEOUT = 10.0
# Seconds between looks at SQL when there was nothing to do, and between prunes of
# the subscriptions of ended sessions and refreshes of the pending gauges.
TICK = 1.0
PRUNE_EVERY = 60.0
GAUGES_EVERY = 5.0


class Presence(Protocol):
    async def online(self, user_ids: list[int]) -> set[int]: ...


@dataclass(frozen=True)
class PushSettings:
    delay: timedelta
    allowed_hosts: tuple[str, ...]
    contact: str


@dataclass(frozen=True)
class Result:
    """How one push went: `sent`, `retry` (with the server's Retry-After, if any) or
    `gone` (the subscription is to be removed); `reason` labels the metric."""

    outcome: str
    reason: str
    retry_after: float | None = None


class PushWorker:
    def __init__(
        self,
        db: Database,
        presence: Presence,
        keys: VapidKeys,
        settings: PushSettings,
        metrics: Metrics,
    ) -> None:
        self._db = db
        self._presence = presence
        self._keys = keys
        self._vapid = keys.private_key()
        self._settings = settings
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._periodic = Periodic("push-worker", self._round, TICK, first_wait=False)
        self._pruned_at = 0.0
        self._gauged_at = 0.0

    def start(self) -> None:
        if self._settings.contact.endswith("@localhost"):
            log.warning(
                "MESSENGER_PUSH_CONTACT is %s: some push services (Apple's) refuse a"
                " contact they cannot reach; set it to a real mailto: or https:// URI",
                self._settings.contact,
            )
        connector = aiohttp.TCPConnector(
            resolver=PublicResolver(self._settings.allowed_hosts), limit=CONCURRENCY
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        )
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _round(self) -> float:
        """A tick; with more work waiting, the next comes soon, but leaves the writer
        (SQLite's one connection) to the sends in between."""
        return TICK / 10 if await self.tick() else TICK

    async def tick(self) -> bool:
        """Claim, send and record one round; whether more work may be waiting."""
        now = utc_now()
        await self._housekeeping()
        claimed = await self._db.write(
            claim, now, self._settings.delay, skip_locked=self._db.is_postgresql
        )
        jobs = claimed.jobs
        if not jobs:
            return claimed.more
        online = await self._online([job.user_id for job in jobs if not job.clearing])
        changes: list[tuple[int, dict[str, Any]]] = []
        due: list[Job] = []
        for job in jobs:
            if job.user_id in online and not job.clearing:
                changes.append((job.sub_id, postponed(job, now, self._settings.delay)))
            else:
                due.append(job)
        limit = asyncio.Semaphore(CONCURRENCY)
        results = await asyncio.gather(*(self._send(job, limit) for job in due))
        gone: list[int] = []
        done = utc_now()
        for job, result in zip(due, results, strict=True):
            self._count(job, result)
            if result.outcome == "sent":
                changes.append((job.sub_id, sent(job)))
                continue
            later = failed(job, done, result.retry_after) if result.outcome == "retry" else None
            if later is None:
                gone.append(job.sub_id)
            else:
                changes.append((job.sub_id, later))
        await self._db.write(_record, changes, gone)
        return True

    async def _online(self, user_ids: list[int]) -> set[int]:
        """Who is connected somewhere; with presence unknown (Redis away), nobody:
        a push to someone online is better than none to someone offline."""
        if not user_ids:
            return set()
        try:
            return await self._presence.online(sorted(set(user_ids)))
        except Exception as exc:
            log.warning("presence unknown, pushing to all: %s", exc)
            return set()

    async def _send(self, job: Job, limit: asyncio.Semaphore) -> Result:
        async with limit:
            try:
                request = await asyncio.to_thread(self._request, job)
                return await self._post(request)
            except TimeoutError:
                return Result("retry", "timeout")
            except (aiohttp.ClientError, OSError) as exc:
                log.info("push to subscription %d failed: %s", job.sub_id, exc)
                return Result("retry", "connection")

    def _request(self, job: Job) -> Request:
        if job.kind == "webhook":
            assert job.secret is not None
            return webhook_request(job.url, job.secret, job.payload)
        assert job.p256dh is not None and job.auth is not None
        return webpush_request(
            job.url, job.p256dh, job.auth, job.payload, self._vapid, self._settings.contact
        )

    async def _post(self, request: Request) -> Result:
        if literal_refused(request.url, self._settings.allowed_hosts):
            return Result("gone", "refused")
        assert self._session is not None
        async with self._session.post(
            request.url, data=request.body, headers=request.headers, allow_redirects=False
        ) as response:
            status = response.status
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if 200 <= status < 300:
            return Result("sent", "ok")
        if status in (404, 410):
            return Result("gone", "gone")
        if status == 429:
            return Result("retry", "rate_limited", retry_after)
        if status >= 500:
            return Result("retry", "server_error", retry_after)
        return Result("retry", "refused_by_receiver")

    def _count(self, job: Job, result: Result) -> None:
        if result.outcome == "sent":
            self._metrics.pushes_sent.labels(job.kind).inc()
        else:
            self._metrics.pushes_failed.labels(job.kind, result.reason).inc()

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self._db.write(prune_dead_sessions, utc_now())
        if now - self._gauged_at >= GAUGES_EVERY:
            self._gauged_at = now
            at = utc_now()
            count, oldest = await self._db.read(pending_summary, at)
            self._metrics.pushes_pending.set(count)
            age = (at - oldest).total_seconds() if oldest is not None else 0.0
            self._metrics.push_oldest_pending_seconds.set(max(0.0, age))


def _record(conn: Any, changes: list[tuple[int, dict[str, Any]]], gone: list[int]) -> None:
    update_subscriptions(conn, changes)
    delete_subscriptions(conn, gone)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` in seconds, given as seconds or as an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - utc_now()).total_seconds())
