"""Garbage collection of attachments, read from SQL: uploads no send took within
`MESSENGER_UPLOAD_TTL`, blobs no attachment names any more (their message deleted for
everyone, their uploads expired), and what uploads cut by a crash left behind.

A blob is removed only after it was unused for `GRACE`, and under the placement
lock of uploads: an upload of the same bytes that touches it meanwhile keeps it.
"""

from __future__ import annotations

from datetime import timedelta

from messenger.attachments.blobs import BlobStore
from messenger.attachments.service import Attachments
from messenger.metrics import Metrics
from messenger.periodic import Periodic
from messenger.store.attachments import expire_pending, recorded_blobs, take_unreferenced
from messenger.store.db import Database
from messenger.wire import utc_now

INTERVAL = 60.0
GRACE = timedelta(hours=1)
BLOBS_PER_ROUND = 500
# Rounds between walks of the store for blobs SQL does not record (a walk reads every
# name in the store: hourly).
STRAYS_EVERY = 60


class Collector:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        attachments: Attachments,
        upload_ttl: timedelta,
        metrics: Metrics,
        grace: timedelta = GRACE,
    ) -> None:
        self._db = db
        self._store = store
        self._attachments = attachments
        self._ttl = upload_ttl
        self._metrics = metrics
        self._grace = grace
        self._rounds = 0
        self._periodic = Periodic("attachment-collector", self._round, INTERVAL, first_wait=True)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _round(self) -> None:
        await self.collect()

    async def _remove_strays(self, grace: timedelta | None) -> int:
        """Blobs the store holds that SQL does not record (a crash after the file was
        placed, before its row): removed under the placement lock."""
        age = (self._grace if grace is None else grace).total_seconds()
        removed = 0
        async with self._attachments.placement:
            held = await self._store.stored(age)
            for start in range(0, len(held), BLOBS_PER_ROUND):
                chunk = held[start : start + BLOBS_PER_ROUND]
                known = await self._db.read(recorded_blobs, chunk)
                for sha in chunk:
                    if sha not in known:
                        await self._store.delete(sha)
                        removed += 1
        return removed

    async def collect(
        self, grace: timedelta | None = None, ttl: timedelta | None = None
    ) -> tuple[int, int]:
        """One round: (uploads expired, blobs removed). `grace` and `ttl` override how
        long a blob must have been unused and an upload waited (tests)."""
        now = utc_now()
        unused_since = now - (self._grace if grace is None else grace)
        expired = await self._db.write(expire_pending, now - (self._ttl if ttl is None else ttl))
        removed = 0
        async with self._attachments.placement:
            while True:
                shas = await self._db.write(
                    take_unreferenced, unused_since, BLOBS_PER_ROUND, self._store.forget
                )
                for sha in shas:
                    await self._store.delete(sha)
                removed += len(shas)
                if len(shas) < BLOBS_PER_ROUND:
                    break
        await self._store.sweep_unfinished(self._grace.total_seconds())
        self._rounds += 1
        if grace is not None or self._rounds % STRAYS_EVERY == 0:
            removed += await self._remove_strays(grace)
        self._metrics.attachments_expired.inc(expired)
        self._metrics.blobs_collected.inc(removed)
        return expired, removed
