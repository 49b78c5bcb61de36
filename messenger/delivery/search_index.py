"""The SQLite search indexer: moves documents into FTS5 and removes changed text from it
(see `store.search` for why FTS5 is fed here and not in the writer's batch).

Every round, in this order: take retired texts out of FTS5 (their messages were edited
or deleted), index the documents past the watermark, and, if something was taken out,
merge each FTS5 table in small steps until no merge is left, then checkpoint and
truncate the WAL (G10). Every step is a short write transaction of its own, so the
writer's batches run between them, and commits without an fsync of its own (the index
is derived: `Database.write_derived`); nothing else writes FTS5 while a merge runs, which
is what lets it finish.

On PostgreSQL there is nothing to do: its GIN indexes follow the table.
"""

from __future__ import annotations

import logging
from typing import Final

from messenger.metrics import Metrics
from messenger.periodic import Periodic
from messenger.store.db import Database
from messenger.store.search import (
    CATCH_UP_CHUNK,
    IndexWork,
    catch_up,
    index_work,
    merge_step,
    take_out_retired,
)

log = logging.getLogger(__name__)

# Pages of each FTS5 table a merge step may write: a step is then a few milliseconds
# of the writer's thread.
MERGE_PAGES: Final = 64
# Catch-up chunks per round: the rest waits a round (the scan covers it meanwhile).
CATCH_UP_ROUNDS: Final = 200
NOTHING_TO_DO: Final = IndexWork(retired=0, unindexed=0, purge_pending=False)


class SearchIndexer:
    def __init__(self, db: Database, interval: float, metrics: Metrics) -> None:
        self._db = db
        self._metrics = metrics
        self._periodic = Periodic("search index", self.run, interval, first_wait=False)
        # A checkpoint after a merge found a reader in the way: try again next round.
        self._checkpoint_owed = False

    def start(self) -> None:
        if self._db.is_sqlite:
            self._periodic.start()

    async def stop(self) -> None:
        """Stop the rounds, then run one more to the end: removed text leaves the
        files at a graceful stop (run after the writer's last batch)."""
        if not self._db.is_sqlite:
            return
        await self._periodic.stop()
        await self.run()

    async def run(self) -> None:
        """One round (see the module's docstring); a read alone when nothing waits."""
        work = await self._db.read(index_work)
        if work != NOTHING_TO_DO:
            await self._index()
            work = await self._db.read(index_work)
        self._metrics.search_unindexed.set(work.unindexed)
        if self._checkpoint_owed:
            self._checkpoint_owed = not await self._db.erase_freed_text()

    async def _index(self) -> None:
        removed = 0
        while taken := await self._db.write_derived(take_out_retired):
            removed += taken
        for _ in range(CATCH_UP_ROUNDS):
            if await self._db.write_derived(catch_up) < CATCH_UP_CHUNK:
                break
        steps = 0
        while not await self._db.write_derived(merge_step, MERGE_PAGES):
            steps += 1
        if removed or steps:
            log.info("search index: %d texts removed, merged in %d steps", removed, steps)
            self._metrics.search_removed.inc(removed)
            self._metrics.search_merge_steps.inc(steps)
            self._checkpoint_owed = True
