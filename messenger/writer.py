"""The group-commit writer: one task per node that owns every write of the hot path.

Sends and status marks wait in one queue. The writer takes whatever has gathered
(up to `batch_max` items) and commits it in a single transaction: one fsync for the
whole batch instead of one per message. While a batch commits, the next one gathers,
so batches grow with the load and a lone message waits for no timer.

Each `send` is answered only after its batch commits (G1), and the batch's stream
events are published only then. Per-sender order is the queue's order: handlers run
as concurrent tasks, but they enqueue in the order their events arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from messenger.errors import ErrorCode, MessengerError, forbidden
from messenger.events import (
    StreamItem,
    UserRef,
    message_dict,
    new_message_item,
    receipt_item,
    receipt_payload,
    to_compact_json,
    utc_now,
)
from messenger.metrics import Metrics
from messenger.protocol import STATUS_READ, STATUS_SENT
from messenger.store import queries
from messenger.store.db import Database, classify_failure
from messenger.store.models import EVENT_NEW_MESSAGE, EVENT_RECEIPT

log = logging.getLogger(__name__)

Publish = Callable[[list[StreamItem]], Awaitable[None]]

# One optimistic attempt, then up to three that look keys up (a race with another
# node's writer costs one of those).
WRITE_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class SendResult:
    message: dict[str, Any]
    # False when the (sender, client_id) was stored before: nothing new was pushed.
    created: bool


@dataclass(slots=True)
class _Send:
    sender: UserRef
    recipient: UserRef
    body: str
    client_id: str
    future: asyncio.Future[SendResult]
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Mark:
    user: UserRef
    ids: list[int]
    status: int
    future: asyncio.Future[int]
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Touch:
    user_id: int
    at: datetime
    queued_at: float = field(default_factory=time.perf_counter)


_Item = _Send | _Mark | _Touch


@dataclass
class _Outcome:
    """What a committed batch answers and publishes."""

    answers: list[tuple[asyncio.Future[Any], Any]] = field(default_factory=list)
    # (first, repeat): a send repeated within the batch is answered with the first's.
    repeats: list[tuple[asyncio.Future[SendResult], asyncio.Future[SendResult]]] = field(
        default_factory=list
    )
    events: list[StreamItem] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    delivered: int = 0
    read: int = 0


class _RetryBatch(Exception):
    """Another writer stored one of our (sender, client_id) keys first: run again."""


class Writer:
    def __init__(
        self, db: Database, publish: Publish, metrics: Metrics, batch_max: int = 256
    ) -> None:
        self._db = db
        self._publish = publish
        self._metrics = metrics
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="messenger-writer")

    async def stop(self) -> None:
        """Refuse new work, commit and answer everything already queued, then end."""
        self._closed = True
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None

    def submit_send(
        self, sender: UserRef, recipient: UserRef, body: str, client_id: str
    ) -> asyncio.Future[SendResult]:
        """Queue a send; the future resolves once its batch has committed.

        Queueing is synchronous, so callers that queue in order are stored in order.
        """
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        self._enqueue(_Send(sender, recipient, body, client_id, future))
        return future

    def submit_mark(self, user: UserRef, ids: list[int], status: int) -> asyncio.Future[int]:
        """Queue a status mark of the user's messages among `ids`; resolves to how many
        changed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._enqueue(_Mark(user, ids, status, future))
        return future

    def touch(self, user_id: int, at: datetime) -> None:
        """Record that the user was seen (presence), batched with the next writes."""
        if not self._closed:
            self._queue.put_nowait(_Touch(user_id, at))

    def _enqueue(self, item: _Send | _Mark) -> None:
        if self._closed:
            raise MessengerError(ErrorCode.UNAVAILABLE, "the server is shutting down")
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch: list[_Item] = [first]
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

    async def _commit(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        # The queue is first in, first out: the first item waited longest.
        self._metrics.write_wait_seconds.observe(started - batch[0].queued_at)
        try:
            outcome = await self._apply_with_retry(batch)
        except Exception as exc:  # every waiting item must hear of it
            error = classify_failure(exc)
            log.error("write batch of %d failed: %s (%s)", len(batch), error.code, exc)
            self._metrics.write_failures.labels(error.code.value).inc()
            if error.code == ErrorCode.INTERNAL and len(batch) > 1:
                # Not the database being away but something in the batch: run each
                # item alone, so one bad item fails only itself.
                for item in batch:
                    await self._commit([item])
                return
            for item in batch:
                if not isinstance(item, _Touch) and not item.future.done():
                    item.future.set_exception(error)
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.write_batch_size.observe(len(batch))
        self._metrics.messages_stored.inc(outcome.stored)
        self._metrics.duplicate_sends.inc(outcome.duplicates)
        self._metrics.messages_delivered.inc(outcome.delivered)
        self._metrics.messages_read.inc(outcome.read)
        for first, repeat in outcome.repeats:
            _chain(first, repeat)
        for future, answer in outcome.answers:
            if not future.done():
                if isinstance(answer, MessengerError):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        if outcome.events:
            try:
                await self._publish(outcome.events)
            except Exception:
                # Committed is committed: a lost push is repaired from SQL (G9).
                log.exception("publishing %d events failed", len(outcome.events))

    async def _apply_with_retry(self, batch: list[_Item]) -> _Outcome:
        # The first attempt takes every send for a new one: a repeated (sender,
        # client_id) is rare, and the unique index catches it (the lookup was a tenth
        # of a batch's instructions, by callgrind). Only then does the batch run
        # again, looking each key up first; and again, twice at most, if another
        # node's writer stored one of the keys between our lookup and our insert.
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return await self._db.write_batch(
                    _apply, batch, utc_now(), self._db.is_postgresql, look_up=attempt > 0
                )
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                if attempt > 0:
                    log.info("write batch raced another writer; retrying")
        raise AssertionError("unreachable")


def _drain(queue: asyncio.Queue[_Item | None]) -> list[_Item | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _apply(
    conn: Connection, batch: Sequence[_Item], now: datetime, lock_rows: bool, look_up: bool
) -> _Outcome:
    """Run one batch inside the caller's transaction. Without `look_up`, a send whose
    (sender, client_id) is stored already makes the insert fail (IntegrityError).

    Runs on the database's writer thread with SQLite: it reads and builds, and leaves
    every future and metric to the event loop (`Writer._commit`)."""
    outcome = _Outcome()
    sends = [item for item in batch if isinstance(item, _Send)]
    marks = [item for item in batch if isinstance(item, _Mark)]
    touches = {item.user_id: item.at for item in batch if isinstance(item, _Touch)}

    new_sends = _settle_known_sends(conn, sends, outcome, look_up)
    receipts = _apply_marks(conn, marks, now, outcome)

    # Stream positions for every event of the batch, taken in one statement.
    counts: Counter[int] = Counter()
    for send in new_sends:
        counts[send.sender.id] += 1
        counts[send.recipient.id] += 1
    for audience, _ in receipts:
        counts.update(audience)
    next_seq: dict[int, int] = {}
    if counts:
        heads = queries.advance_stream_heads(conn, counts, lock_first=lock_rows)
        next_seq = {uid: heads[uid] - counts[uid] + 1 for uid in counts}

    def take(user_id: int) -> int:
        seq = next_seq[user_id]
        next_seq[user_id] = seq + 1
        return seq

    event_rows: list[dict[str, Any]] = []
    if new_sends:
        seqs = [(take(s.sender.id), take(s.recipient.id)) for s in new_sends]
        rows = [
            {
                "sender_id": s.sender.id,
                "recipient_id": s.recipient.id,
                "body": s.body,
                "client_id": s.client_id,
                "sent_at": now,
                "status": STATUS_SENT,
                "delivered_at": None,
                "read_at": None,
                "recipient_seq": recipient_seq,
            }
            for s, (_, recipient_seq) in zip(new_sends, seqs, strict=True)
        ]
        ids = queries.insert_messages(conn, rows)
        for send, row, message_id, (sender_seq, recipient_seq) in zip(
            new_sends, rows, ids, seqs, strict=True
        ):
            message = message_dict(
                {**row, "id": message_id}, send.sender.username, send.recipient.username
            )
            outcome.answers.append((send.future, SendResult(message, created=True)))
            for user_id, seq in ((send.sender.id, sender_seq), (send.recipient.id, recipient_seq)):
                event_rows.append(
                    {
                        "user_id": user_id,
                        "seq": seq,
                        "kind": EVENT_NEW_MESSAGE,
                        "message_id": message_id,
                        "payload": None,
                    }
                )
                outcome.events.append(new_message_item(user_id, seq, message))
        outcome.stored = len(new_sends)

    for audience, payload in receipts:
        encoded = to_compact_json(payload)
        for user_id in audience:
            seq = take(user_id)
            event_rows.append(
                {
                    "user_id": user_id,
                    "seq": seq,
                    "kind": EVENT_RECEIPT,
                    "message_id": None,
                    "payload": encoded,
                }
            )
            outcome.events.append(receipt_item(user_id, seq, payload))

    queries.insert_stream_events(conn, event_rows)
    queries.touch_last_seen(conn, touches)
    return outcome


def _settle_known_sends(
    conn: Connection, sends: list[_Send], outcome: _Outcome, look_up: bool
) -> list[_Send]:
    """Answer repeats and blocked sends; return the sends that store a new message.

    A repeat of a stored (sender, client_id) gets the stored message (when `look_up`);
    a repeat within this batch gets the first one's answer (G2). A send to someone who
    blocks the sender fails `forbidden` and stores nothing.
    """
    stored = (
        queries.messages_by_client_ids(conn, ((s.sender.id, s.client_id) for s in sends))
        if look_up
        else {}
    )
    blocked = queries.blocking_pairs(conn, ((s.recipient.id, s.sender.id) for s in sends))
    first_in_batch: dict[tuple[int, str], _Send] = {}
    new_sends: list[_Send] = []
    for send in sends:
        key = (send.sender.id, send.client_id)
        if key in stored:
            row = stored[key]
            message = message_dict(row, send.sender.username, row["recipient_name"])
            outcome.answers.append((send.future, SendResult(message, created=False)))
            outcome.duplicates += 1
        elif key in first_in_batch:
            outcome.repeats.append((first_in_batch[key].future, send.future))
            outcome.duplicates += 1
        elif (send.recipient.id, send.sender.id) in blocked:
            outcome.answers.append(
                (send.future, forbidden(f"{send.recipient.username} does not accept your messages"))
            )
        else:
            first_in_batch[key] = send
            new_sends.append(send)
    return new_sends


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


def _apply_marks(
    conn: Connection, marks: list[_Mark], now: datetime, outcome: _Outcome
) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """Raise statuses; return one receipt (the users whose streams get it, payload)
    per item and sender. Consecutive items of one status share a statement; runs keep queue order,
    so a `delivered` queued after a `read` of the same message still changes nothing.
    """
    receipts: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    for status, run in groupby(marks, key=lambda mark: mark.status):
        items = list(run)
        # Each changed message counts for the first item of its recipient naming it.
        claims: dict[tuple[int, int], _Mark] = {}
        for mark in items:
            for message_id in mark.ids:
                claims.setdefault((mark.user.id, message_id), mark)
        changed = queries.mark_status(conn, list(claims), status, now)
        by_item: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for message_id, sender_id, recipient_id in changed:
            mark = claims[(recipient_id, message_id)]
            by_item[id(mark)][sender_id].append(message_id)
        for mark in items:
            by_sender = by_item.get(id(mark), {})
            updated = sum(len(ids) for ids in by_sender.values())
            outcome.answers.append((mark.future, updated))
            if status == STATUS_READ:
                outcome.read += updated
            else:
                outcome.delivered += updated
            for sender_id, ids in sorted(by_sender.items()):
                payload = receipt_payload(ids, status, mark.user.username, now)
                # The sender learns of delivery and reading; the reader's devices
                # only of reading (PROTOCOL.md 3.3): that a device of theirs got a
                # message tells the others nothing, and would cost every delivery
                # an event more in the reader's stream.
                audience = (sender_id, mark.user.id) if status == STATUS_READ else (sender_id,)
                receipts.append((audience, payload))
    return receipts
