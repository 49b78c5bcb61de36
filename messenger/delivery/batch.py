"""What one write batch does inside its transaction: plain data in, plain data out.

The writer (`messenger.delivery.writer`) queues sends, status marks and presence touches as
*orders*, and runs a batch of them here, wherever the write connection lives (the
writer thread on SQLite, the event loop on PostgreSQL). Nothing here knows of futures
or the event loop: orders and outcomes are plain data, and answers name the order
they answer by its index in the batch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, RowMapping

from messenger.delivery.changes import (
    NO_WINDOWS,
    ChangeEvents,
    ChangeOrder,
    IndexedChange,
    Windows,
    apply_changes,
    render,
)
from messenger.errors import ErrorCode, MessengerError, forbidden, invalid, not_found
from messenger.protocol import STATUS_DELIVERED, STATUS_READ, STATUS_SENT
from messenger.store.accounts import removed_users
from messenger.store.attachments import link_attachments, pending_attachments
from messenger.store.blocks import blocking_pairs
from messenger.store.message_changes import lock_messages, private_readers, reply_targets
from messenger.store.message_views import extras_of
from messenger.store.messages import insert_messages, mark_status, messages_by_client_ids
from messenger.store.models import EVENT_NEW_MESSAGE, EVENT_RECEIPT
from messenger.store.search import index_documents
from messenger.store.streams import advance_stream_heads, insert_stream_events
from messenger.store.users import touch_last_seen
from messenger.wire import (
    Message,
    ReceiptPayload,
    StreamItem,
    UserRef,
    attachment_ref,
    message_dict,
    new_message_item,
    receipt_item,
    receipt_payload,
    to_compact_json,
)


@dataclass(frozen=True, slots=True)
class SendOrder:
    sender: UserRef
    recipient: UserRef
    body: str
    client_id: str
    reply_to: int | None = None
    attachments: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MarkOrder:
    """Raise the status of the user's messages among `ids`."""

    user: UserRef
    ids: list[int]
    status: int


@dataclass(frozen=True, slots=True)
class TouchOrder:
    """The user was seen at `at` (presence); answered by nothing."""

    user_id: int
    at: datetime


Order = SendOrder | MarkOrder | TouchOrder | ChangeOrder


@dataclass(frozen=True, slots=True)
class SendResult:
    message: Message
    # False when the (sender, client_id) was stored before: nothing new was pushed.
    created: bool


@dataclass
class Outcome:
    """What a committed batch answers and publishes. Answers name their order by its
    index in the batch."""

    answers: list[tuple[int, Any]] = field(default_factory=list)
    # (first, repeat): a send repeated within the batch is answered with the first's.
    repeats: list[tuple[int, int]] = field(default_factory=list)
    events: list[StreamItem] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    delivered: int = 0
    read: int = 0
    # Bodies wiped by deletes or replaced by edits (their text must leave the files).
    wiped: int = 0
    changes: list[str] = field(default_factory=list)


# A send or a mark with the index of its order in the batch (answers name it).
IndexedSend = tuple[int, SendOrder]
IndexedMark = tuple[int, MarkOrder]
# A receipt to write: the users whose streams get it, and what it says.
PendingReceipt = tuple[tuple[int, ...], ReceiptPayload]


# What a new message's row holds besides what is inserted, and its reply columns
# when it answers nothing (see `store.message_views`); by the id answered, those of
# the messages that the batch's sends answer.
_Replied = dict[int | None, dict[str, Any]]
# The attachments each new send carries, by its order's index.
_Files = dict[int, list[RowMapping]]
_FRESH = {"edited_at": None, "deleted_at": None, "read_private": False}
_NO_REPLY = {"reply_sender_id": None, "reply_excerpt": None, "reply_deleted_at": None}


def apply_batch(
    conn: Connection,
    batch: Sequence[Order],
    now: datetime,
    lock_rows: bool,
    look_up: bool,
    windows: Windows = NO_WINDOWS,
) -> Outcome:
    """Run one batch inside the caller's transaction, step by step. Without `look_up`,
    a send whose (sender, client_id) is stored already makes the insert fail
    (IntegrityError). Events take their stream positions in this order: new
    messages, receipts, then changes to messages (edits, deletes, reactions)."""
    outcome = Outcome()
    sends, marks, changes, touches = _by_kind(batch)
    if lock_rows and changes:
        # Marks and changes lock message rows: all of them first, in id order.
        lock_messages(conn, [*_ids_of(marks), *(o.command.message_id for _, o in changes)])
    new_sends = _settle_known_sends(conn, sends, outcome, look_up)
    new_sends, replied = _check_replies(conn, new_sends, outcome)
    new_sends, files = _check_attachments(conn, new_sends, outcome)
    receipts = _apply_marks(conn, marks, now, outcome)
    changed = apply_changes(conn, changes, now, windows, outcome.answers)
    outcome.wiped = changed.wiped
    outcome.changes = list(changed.changes())
    positions = _raise_stream_heads(conn, new_sends, receipts, changed, lock_rows)
    message_events = _insert_messages(conn, new_sends, replied, files, positions, now, outcome)
    receipt_events = _receipt_events(receipts, positions, outcome)
    change_items, change_events = render(conn, changed, positions, outcome.answers)
    outcome.events += change_items
    insert_stream_events(conn, message_events + receipt_events + change_events)
    touch_last_seen(conn, touches)
    return outcome


def _by_kind(
    batch: Sequence[Order],
) -> tuple[list[IndexedSend], list[IndexedMark], list[IndexedChange], dict[int, datetime]]:
    """The sends, the marks and the changes, each with its index and in queue order,
    and the last time each touched user was seen."""
    sends = [(i, order) for i, order in enumerate(batch) if isinstance(order, SendOrder)]
    marks = [(i, order) for i, order in enumerate(batch) if isinstance(order, MarkOrder)]
    changes = [(i, order) for i, order in enumerate(batch) if isinstance(order, ChangeOrder)]
    touches = {order.user_id: order.at for order in batch if isinstance(order, TouchOrder)}
    return sends, marks, changes, touches


def _ids_of(marks: list[IndexedMark]) -> list[int]:
    return [message_id for _, mark in marks for message_id in mark.ids]


class _Positions:
    """The stream positions taken for the batch, handed out in order per user."""

    __slots__ = ("_next",)

    def __init__(self, next_seq: dict[int, int]) -> None:
        self._next = next_seq

    def take(self, user_id: int) -> int:
        seq = self._next[user_id]
        self._next[user_id] = seq + 1
        return seq


def _raise_stream_heads(
    conn: Connection,
    new_sends: list[IndexedSend],
    receipts: list[PendingReceipt],
    changed: ChangeEvents,
    lock_rows: bool,
) -> _Positions:
    """Take the stream positions of every event of the batch, in one statement: two per
    new message (its sender's and its recipient's), one per receipt or change and
    user told."""
    counts: Counter[int] = Counter()
    for _, send in new_sends:
        counts[send.sender.id] += 1
        counts[send.recipient.id] += 1
    for audience, _ in receipts:
        counts.update(audience)
    counts.update(changed.counts())
    if not counts:
        return _Positions({})
    heads = advance_stream_heads(conn, counts, lock_first=lock_rows)
    return _Positions({uid: heads[uid] - counts[uid] + 1 for uid in counts})


def _insert_messages(
    conn: Connection,
    new_sends: list[IndexedSend],
    replied: _Replied,
    files: _Files,
    positions: _Positions,
    now: datetime,
    outcome: Outcome,
) -> list[dict[str, Any]]:
    """Store the new messages and answer their sends; return their stream events'
    rows (the sender's, then the recipient's, per message), which need their ids."""
    if not new_sends:
        return []
    seqs = [(positions.take(s.sender.id), positions.take(s.recipient.id)) for _, s in new_sends]
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
            "reply_to_id": s.reply_to,
        }
        for (_, s), (_, recipient_seq) in zip(new_sends, seqs, strict=True)
    ]
    ids = insert_messages(conn, rows)
    index_documents(conn, zip(ids, (send.body for _, send in new_sends), strict=True))
    link_attachments(
        conn,
        [
            (row["id"], message_id)
            for (index, _), message_id in zip(new_sends, ids, strict=True)
            for row in files.get(index, ())
        ],
    )
    event_rows: list[dict[str, Any]] = []
    for (index, send), row, message_id, (sender_seq, recipient_seq) in zip(
        new_sends, rows, ids, seqs, strict=True
    ):
        shown = {**row, **_FRESH, **replied.get(send.reply_to, _NO_REPLY), "id": message_id}
        carried = [attachment_ref(file) for file in files.get(index, ())]
        message = message_dict(
            shown, send.sender.username, send.recipient.username, attachments=carried
        )
        outcome.answers.append((index, SendResult(message, created=True)))
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
    return event_rows


def _receipt_events(
    receipts: list[PendingReceipt], positions: _Positions, outcome: Outcome
) -> list[dict[str, Any]]:
    """The stream events' rows of the receipts, one per receipt and user of its
    audience; the payload is stored as JSON, once per receipt."""
    event_rows: list[dict[str, Any]] = []
    for audience, payload in receipts:
        encoded = to_compact_json(payload)
        for user_id in audience:
            seq = positions.take(user_id)
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
    return event_rows


def _settle_known_sends(
    conn: Connection, sends: list[IndexedSend], outcome: Outcome, look_up: bool
) -> list[IndexedSend]:
    """Answer repeats, blocked sends and sends between removed accounts; return the
    sends that store a new message.

    A repeat of a stored (sender, client_id) gets the stored message (when `look_up`);
    a repeat within this batch gets the first one's answer (G2). A send to someone who
    blocks the sender fails `forbidden` and stores nothing, unless it repeats a stored
    one: a retry gets its message even after a block (G2), so the keys of blocked
    sends are always looked up (a rare path, unlike the lookup of every key). So are
    those of replies and of sends with attachments, whose checks a retry would fail
    (its uploads are taken, the replied-to message may be deleted since).

    A send to a removed account fails `not_found` (one read of the batch's users that
    were removed: the node's `Directory` keeps names, which never change, but not
    whether their account still exists), and one from a removed account
    `unauthorized`; a retry of a stored one still gets its message.
    """
    blocked = blocking_pairs(conn, ((s.recipient.id, s.sender.id) for _, s in sends))
    removed = removed_users(conn, [uid for _, s in sends for uid in (s.sender.id, s.recipient.id)])
    keys = [
        (s.sender.id, s.client_id)
        for _, s in sends
        if look_up
        or (s.recipient.id, s.sender.id) in blocked
        or s.recipient.id in removed
        or s.sender.id in removed
        or s.attachments
        or s.reply_to is not None
    ]
    stored = messages_by_client_ids(conn, keys) if keys else {}
    extras = extras_of(conn, [row["id"] for row in stored.values()])
    first_in_batch: dict[tuple[int, str], int] = {}
    new_sends: list[IndexedSend] = []
    for index, send in sends:
        key = (send.sender.id, send.client_id)
        if key in stored:
            row = stored[key]
            message = message_dict(
                row,
                send.sender.username,
                row["recipient_name"],
                viewer_id=send.sender.id,
                **extras.of(row["id"]),
            )
            outcome.answers.append((index, SendResult(message, created=False)))
            outcome.duplicates += 1
        elif key in first_in_batch:
            outcome.repeats.append((first_in_batch[key], index))
            outcome.duplicates += 1
        elif send.sender.id in removed:
            gone = MessengerError(ErrorCode.UNAUTHORIZED, "this account was removed")
            outcome.answers.append((index, gone))
        elif send.recipient.id in removed:
            outcome.answers.append((index, not_found(f"no user {send.recipient.username!r}")))
        elif (send.recipient.id, send.sender.id) in blocked:
            outcome.answers.append(
                (index, forbidden(f"{send.recipient.username} does not accept your messages"))
            )
        else:
            first_in_batch[key] = index
            new_sends.append((index, send))
    return new_sends


def _check_attachments(
    conn: Connection, sends: list[IndexedSend], outcome: Outcome
) -> tuple[list[IndexedSend], _Files]:
    """Answer `not_found` the sends that name attachments which are not their
    sender's uploads waiting for a send (or that an earlier send of this batch takes);
    return the others, and the attachments of each by its order's index."""
    if not any(send.attachments for _, send in sends):
        return sends, {}
    kept: list[IndexedSend] = []
    files: _Files = {}
    taken: set[int] = set()
    for index, send in sends:
        if not send.attachments:
            kept.append((index, send))
            continue
        pending = pending_attachments(conn, send.sender.id, send.attachments)
        if any(aid not in pending or aid in taken for aid in send.attachments):
            outcome.answers.append((index, not_found("no such upload waiting to be sent")))
            continue
        taken.update(send.attachments)
        files[index] = [pending[aid] for aid in send.attachments]
        kept.append((index, send))
    return kept, files


def _check_replies(
    conn: Connection, sends: list[IndexedSend], outcome: Outcome
) -> tuple[list[IndexedSend], _Replied]:
    """Answer `invalid` the sends whose `reply_to` is not a message of their own
    conversation that still has its body; return the others, and the reply columns
    of the messages they answer."""
    wanted = sorted({send.reply_to for _, send in sends if send.reply_to is not None})
    if not wanted:
        return sends, {}
    targets = reply_targets(conn, wanted)
    kept: list[IndexedSend] = []
    for index, send in sends:
        target = targets.get(send.reply_to) if send.reply_to is not None else None
        pair = {send.sender.id, send.recipient.id}
        if send.reply_to is not None and (
            target is None
            or {target["sender_id"], target["recipient_id"]} != pair
            or target["deleted_at"] is not None
        ):
            outcome.answers.append(
                (index, invalid("reply_to is not a message of this conversation"))
            )
        else:
            kept.append((index, send))
    replied: _Replied = {
        mid: {
            "reply_sender_id": row["sender_id"],
            "reply_excerpt": row["excerpt"],
            "reply_deleted_at": row["deleted_at"],
        }
        for mid, row in targets.items()
    }
    return kept, replied


def _apply_marks(
    conn: Connection, marks: list[IndexedMark], now: datetime, outcome: Outcome
) -> list[PendingReceipt]:
    """Raise statuses; return one receipt (the users whose streams get it, payload)
    per item and sender. Consecutive items of one status share a statement; runs keep
    queue order, so a `delivered` queued after a `read` of the same message still
    changes nothing. A reader whose receipts are off (3.8) reads privately: the
    sender is told only that the message arrived, if that is news."""
    receipts: list[PendingReceipt] = []
    for status, run in groupby(marks, key=lambda indexed: indexed[1].status):
        items = list(run)
        # Each changed message counts for the first item of its recipient naming it.
        claims: dict[tuple[int, int], int] = {}
        for index, mark in items:
            for message_id in mark.ids:
                claims.setdefault((mark.user.id, message_id), index)
        private: set[int] = set()
        if status == STATUS_READ:
            private = private_readers(conn, {mark.user.id for _, mark in items})
        public_claims = [claim for claim in claims if claim[0] not in private]
        private_claims = [claim for claim in claims if claim[0] in private]
        if private_claims:
            arrived = _mark(conn, claims, private_claims, STATUS_DELIVERED, now)
            outcome.delivered += _add_receipts(receipts, items, arrived, STATUS_DELIVERED, now)
        changed = _mark(conn, claims, public_claims, status, now)
        changed.update(_mark(conn, claims, private_claims, status, now, private=True))
        counts = _add_receipts(receipts, items, changed, status, now, private)
        for index, _ in items:
            outcome.answers.append((index, _count(changed.get(index, {}))))
        if status == STATUS_READ:
            outcome.read += counts
        else:
            outcome.delivered += counts
    return receipts


# What changed, per item (its index) and sender: the ids of the messages.
_Changed = dict[int, dict[int, list[int]]]


def _mark(
    conn: Connection,
    claims: dict[tuple[int, int], int],
    wanted: list[tuple[int, int]],
    status: int,
    now: datetime,
    *,
    private: bool = False,
) -> _Changed:
    """Raise the `wanted` (recipient, message) pairs to `status`; what changed, by
    the item that claimed it and sender."""
    by_item: _Changed = defaultdict(lambda: defaultdict(list))
    if wanted:
        for message_id, sender_id, recipient_id in mark_status(
            conn, wanted, status, now, private=private
        ):
            by_item[claims[(recipient_id, message_id)]][sender_id].append(message_id)
    return by_item


def _count(by_sender: dict[int, list[int]]) -> int:
    return sum(len(ids) for ids in by_sender.values())


def _add_receipts(
    receipts: list[PendingReceipt],
    items: list[IndexedMark],
    changed: _Changed,
    status: int,
    now: datetime,
    private: set[int] | None = None,
) -> int:
    """One receipt per item and sender whose messages changed; how many changed.

    The sender learns of delivery and reading; the reader's devices only of reading
    (3.3): that a device of theirs got a message tells the others nothing, and would
    cost every delivery an event more in the reader's stream. A private reader's
    reading is told to them alone."""
    total = 0
    for index, mark in items:
        by_sender = changed.get(index, {})
        total += _count(by_sender)
        for sender_id, ids in sorted(by_sender.items()):
            payload = receipt_payload(sorted(ids), status, mark.user.username, now)
            if status != STATUS_READ:
                audience: tuple[int, ...] = (sender_id,)
            elif private and mark.user.id in private:
                audience = (mark.user.id,)
            else:
                audience = (sender_id, mark.user.id)
            receipts.append((audience, payload))
    return total
