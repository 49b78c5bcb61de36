"""The group-commit writer: one task per node that owns every write of the hot path.

Sends and status marks wait in one queue. The writer takes whatever has gathered
(up to `batch_max` items) and commits it in a single transaction: one fsync for the
whole batch instead of one per message. While a batch commits, the next one gathers,
so batches grow with the load and a lone message waits for no timer.

Each `send` is answered only after its batch commits (G1), and the batch's stream
events are handed to the notifier (`notifier.AfterCommit`) only then. Per-sender
order is the queue's order: handlers run as concurrent tasks, but they enqueue in the
order their events arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from messenger.delivery.batch import (
    MarkOrder,
    Order,
    Outcome,
    SendOrder,
    SendResult,
    TouchOrder,
    apply_batch,
)
from messenger.delivery.changes import NO_WINDOWS, ChangeOrder, Windows
from messenger.delivery.notifier import AfterCommit
from messenger.errors import ErrorCode, MessengerError
from messenger.metrics import Metrics
from messenger.protocol import ChangeCommand
from messenger.store.db import Database, classify_failure
from messenger.store.writer_statements import compile_writer_statements
from messenger.wire import UserRef, utc_now

log = logging.getLogger(__name__)

# One optimistic attempt, then up to three that look keys up (a race with another
# node's writer costs one of those).
WRITE_ATTEMPTS = 4


@dataclass(slots=True)
class _Queued:
    order: Order
    # None for a touch: nobody waits for one.
    future: asyncio.Future[Any] | None
    queued_at: float = field(default_factory=time.perf_counter)


class Writer:
    def __init__(
        self,
        db: Database,
        notifier: AfterCommit,
        metrics: Metrics,
        batch_max: int = 256,
        windows: Windows = NO_WINDOWS,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._metrics = metrics
        self._batch_max = batch_max
        self._windows = windows
        # Bodies were wiped or replaced since the database last dropped freed text
        # from its files (`erase_freed_text`, G10).
        self.text_freed = False
        self._queue: asyncio.Queue[_Queued | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Compile the batches' statements, then take work (see
        `compile_writer_statements`: compiled in a batch, they held it up)."""
        await self._db.read(compile_writer_statements)
        self._task = asyncio.create_task(self._run(), name="messenger-writer")

    async def stop(self) -> None:
        """Refuse new work, commit and answer everything already queued, then end."""
        self._closed = True
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None

    async def erase_freed_text(self) -> None:
        """If bodies were wiped or replaced since the last time, have the database
        drop their text from its files (G10); run by the maintenance tick and at stop."""
        if not self.text_freed:
            return
        self.text_freed = False
        try:
            done = await self._db.erase_freed_text()
        except Exception:
            self.text_freed = True
            raise
        if not done:
            self.text_freed = True  # a reader held on: the next tick tries again

    def submit_send(
        self,
        sender: UserRef,
        recipient: UserRef,
        body: str,
        client_id: str,
        reply_to: int | None = None,
        attachments: tuple[int, ...] = (),
    ) -> asyncio.Future[SendResult]:
        """Queue a send; the future resolves once its batch has committed.

        Queueing is synchronous, so callers that queue in order are stored in order.
        """
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        order = SendOrder(sender, recipient, body, client_id, reply_to, attachments)
        self._enqueue(order, future)
        return future

    def submit_change(
        self, user: UserRef, command: ChangeCommand
    ) -> asyncio.Future[dict[str, Any]]:
        """Queue an edit, a delete or a reaction; resolves after the commit to the
        answer (`{"message": ...}`, or `{}` for a delete for me)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._enqueue(ChangeOrder(user, command), future)
        return future

    def submit_mark(self, user: UserRef, ids: list[int], status: int) -> asyncio.Future[int]:
        """Queue a status mark of the user's messages among `ids`; resolves to how many
        changed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._enqueue(MarkOrder(user, ids, status), future)
        return future

    def touch(self, user_id: int, at: datetime) -> None:
        """Record that the user was seen (presence), batched with the next writes."""
        if not self._closed:
            self._queue.put_nowait(_Queued(TouchOrder(user_id, at), None))

    def _enqueue(self, order: Order, future: asyncio.Future[Any]) -> None:
        if self._closed:
            raise MessengerError(ErrorCode.UNAVAILABLE, "the server is shutting down")
        self._queue.put_nowait(_Queued(order, future))

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch: list[_Queued] = [first]
            while len(batch) < self._batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True  # commit what came before the stop, then end
                    break
                batch.append(item)
            await self._commit(batch)
            if stopping:
                # Everything enqueued before stop() is answered, never dropped.
                rest = [item for item in _drain(self._queue) if item is not None]
                for start in range(0, len(rest), self._batch_max):
                    await self._commit(rest[start : start + self._batch_max])
        try:
            await self.erase_freed_text()  # a graceful stop leaves no removed text
        except Exception:
            log.exception("erasing removed text at stop failed")

    async def _commit(self, batch: list[_Queued]) -> None:
        started = time.perf_counter()
        # The queue is first in, first out: the first item waited longest.
        self._metrics.write_wait_seconds.observe(started - batch[0].queued_at)
        try:
            outcome = await self._apply_with_retry(batch)
        except Exception as exc:  # every waiting item must hear of it
            error = classify_failure(exc)
            # An unexpected failure (internal) comes with its traceback; an expected
            # one (the database away) is one line per batch.
            log.error(
                "write batch of %d failed: %s (%s)",
                len(batch),
                error.code,
                exc,
                exc_info=error.code == ErrorCode.INTERNAL,
            )
            self._metrics.write_failures.labels(error.code.value).inc()
            if error.code == ErrorCode.INTERNAL and len(batch) > 1:
                # Not the database being away but something in the batch: run each
                # item alone, so one bad item fails only itself.
                for item in batch:
                    await self._commit([item])
                return
            for item in batch:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(error)
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.write_batch_size.observe(len(batch))
        self._metrics.messages_stored.inc(outcome.stored)
        self._metrics.duplicate_sends.inc(outcome.duplicates)
        self._metrics.messages_delivered.inc(outcome.delivered)
        self._metrics.messages_read.inc(outcome.read)
        for change in outcome.changes:
            self._metrics.message_changes.labels(change).inc()
        if outcome.wiped:
            self.text_freed = True
        for first, repeat in outcome.repeats:
            _chain(_future_of(batch[first]), _future_of(batch[repeat]))
        for index, answer in outcome.answers:
            future = _future_of(batch[index])
            if not future.done():
                if isinstance(answer, MessengerError):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        if outcome.events:
            try:
                await self._notifier.committed(outcome.events)
            except Exception:
                # Committed is committed: a lost push is repaired from SQL (G9).
                log.exception("notifying %d events failed", len(outcome.events))

    async def _apply_with_retry(self, batch: list[_Queued]) -> Outcome:
        # The first attempt takes every send for a new one: a repeated (sender,
        # client_id) is rare, and the unique index catches it (the lookup was a
        # noticeable share of every batch's work). Only then does the batch run
        # again, looking each key up first; and again, twice at most, if another
        # node's writer stored one of the keys between our lookup and our insert.
        orders = [item.order for item in batch]
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return await self._db.write_batch(
                    apply_batch,
                    orders,
                    utc_now(),
                    self._db.is_postgresql,
                    look_up=attempt > 0,
                    windows=self._windows,
                )
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                if attempt > 0:
                    log.info("write batch raced another writer; retrying")
        raise AssertionError("unreachable")


def _future_of(item: _Queued) -> asyncio.Future[Any]:
    """The future of an answered order (touches are never answered)."""
    assert item.future is not None
    return item.future


def _drain(queue: asyncio.Queue[_Queued | None]) -> list[_Queued | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _chain(first: asyncio.Future[SendResult], repeat: asyncio.Future[SendResult]) -> None:
    """Answer `repeat` with `first`'s message, marked as not newly created."""

    def copy(done: asyncio.Future[SendResult]) -> None:
        if repeat.done():
            return
        if done.cancelled() or done.exception() is not None:
            repeat.set_exception(done.exception() or asyncio.CancelledError())
        else:
            repeat.set_result(SendResult(done.result().message, created=False))

    first.add_done_callback(copy)
