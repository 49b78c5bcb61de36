"""`apply_batch`, the inside of one write transaction, on a real SQLite file: stream
positions, repeated client ids (G2), blocks, status marks and their receipts, and what
a failed optimistic attempt leaves behind (nothing) for the writer's retry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from messenger.delivery.batch import MarkOrder, Order, Outcome, SendOrder, SendResult, apply_batch
from messenger.errors import ErrorCode, MessengerError
from messenger.protocol import RECEIPT, STATUS_DELIVERED, STATUS_READ, STATUS_SENT
from messenger.store.blocks import add_block
from messenger.store.models import EVENT_NEW_MESSAGE, EVENT_RECEIPT, messages, stream_events
from messenger.store.streams import stream_head, stream_heads
from messenger.store.users import insert_user
from messenger.wire import UserRef

NOW = datetime(2026, 12, 2, 10, 0, 0, 123000, tzinfo=UTC)


def make_users(engine: Engine, *names: str) -> list[UserRef]:
    with engine.begin() as conn:
        return [UserRef(insert_user(conn, name, "x", NOW), name) for name in names]


def run(
    engine: Engine, batch: Sequence[Order], look_up: bool = True, now: datetime = NOW
) -> Outcome:
    """One batch in a transaction of its own, as the writer runs it on SQLite."""
    with engine.begin() as conn:
        return apply_batch(conn, batch, now, lock_rows=False, look_up=look_up)


def send(sender: UserRef, recipient: UserRef, client_id: str, body: str = "") -> SendOrder:
    return SendOrder(sender, recipient, body or client_id, client_id)


def answers(outcome: Outcome) -> dict[int, Any]:
    return dict(outcome.answers)


def sent(outcome: Outcome, index: int) -> dict[str, Any]:
    answer = answers(outcome)[index]
    assert isinstance(answer, SendResult), answer
    return answer.message


def stream_of(conn: Connection, user: UserRef) -> list[tuple[int, int, int | None]]:
    """(seq, kind, message_id) of the user's stream, in cursor order."""
    result = conn.execute(
        select(stream_events.c.seq, stream_events.c.kind, stream_events.c.message_id)
        .where(stream_events.c.user_id == user.id)
        .order_by(stream_events.c.seq)
    )
    return [(seq, kind, message_id) for seq, kind, message_id in result]


def assert_streams_whole(engine: Engine, *people: UserRef) -> None:
    """Each stream is 1..head without a hole, and the head is `users.stream_seq`."""
    with engine.connect() as conn:
        for user in people:
            seqs = [seq for seq, _, _ in stream_of(conn, user)]
            assert seqs == list(range(1, len(seqs) + 1)), (user, seqs)
            assert stream_head(conn, user.id) == len(seqs), user


def count_messages(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())


def test_sends_take_the_next_stream_position_of_both_parties(engine: Engine) -> None:
    """Each send adds one event to the sender's and one to the recipient's stream, at
    the next cursor of each, in batch order; the message keeps its recipient's cursor;
    the outcome's events are the rows written."""
    ann, bob, carl = make_users(engine, "ann", "bob", "carl")
    first = run(engine, [send(ann, bob, "a1"), send(bob, ann, "b1"), send(ann, bob, "a2")])
    second = run(engine, [send(carl, ann, "c1"), send(ann, carl, "a3")])

    assert first.stored == 3 and second.stored == 2
    assert_streams_whole(engine, ann, bob, carl)
    a1, b1, a2 = (sent(first, i)["id"] for i in range(3))
    c1, a3 = (sent(second, i)["id"] for i in range(2))
    assert a1 < b1 < a2 < c1 < a3
    new = EVENT_NEW_MESSAGE
    with engine.connect() as conn:
        assert stream_of(conn, ann) == [
            (1, new, a1),
            (2, new, b1),
            (3, new, a2),
            (4, new, c1),
            (5, new, a3),
        ]
        assert stream_of(conn, bob) == [(1, new, a1), (2, new, b1), (3, new, a2)]
        assert stream_of(conn, carl) == [(1, new, c1), (2, new, a3)]
        stored = conn.execute(select(messages.c.id, messages.c.recipient_seq)).all()
    assert dict(stored) == {a1: 1, b1: 2, a2: 3, c1: 4, a3: 2}
    pushed = [(item.user_id, item.seq, item.data["message"]["id"]) for item in first.events]
    assert sorted(pushed) == sorted(
        [
            *((ann.id, 1, a1), (bob.id, 1, a1)),
            *((bob.id, 2, b1), (ann.id, 2, b1)),
            *((ann.id, 3, a2), (bob.id, 3, a2)),
        ]
    )
    message = sent(first, 0)
    assert (message["from"], message["to"], message["status"]) == ("ann", "bob", "sent")


def test_a_repeated_client_id_is_answered_with_the_first_message(engine: Engine) -> None:
    """G2: a (sender, client_id) repeated within a batch is answered with the first
    send's message, and across batches with the stored one; neither stores anything
    or takes a stream position. The key is the sender's: another sender's same
    client_id is a message of its own."""
    ann, bob = make_users(engine, "ann", "bob")
    first = run(
        engine,
        [send(ann, bob, "k", "first"), send(ann, bob, "k", "again"), send(bob, ann, "k", "bob's")],
    )
    assert first.repeats == [(0, 1)]
    assert 1 not in answers(first)
    assert first.stored == 2 and first.duplicates == 1
    assert sent(first, 0)["body"] == "first" and sent(first, 2)["body"] == "bob's"

    later = run(engine, [send(ann, bob, "k", "third"), send(ann, bob, "k", "fourth")])
    for index in (0, 1):
        answer = answers(later)[index]
        assert isinstance(answer, SendResult) and answer.created is False
        assert answer.message == sent(first, 0)
    assert later.stored == 0 and later.duplicates == 2 and later.events == []
    assert count_messages(engine) == 2
    assert_streams_whole(engine, ann, bob)
    with engine.connect() as conn:
        assert stream_heads(conn, [ann.id, bob.id]) == {ann.id: 2, bob.id: 2}


@pytest.mark.parametrize("look_up", [False, True], ids=["optimistic", "looking-up"])
def test_a_blocked_send_stores_nothing_but_a_retry_of_a_stored_one_gets_its_message(
    engine: Engine, look_up: bool
) -> None:
    """A send to someone who blocks the sender is `forbidden` and takes nothing; a
    retry of a message stored before the block still gets that message (G2), even on
    the writer's optimistic first attempt, which looks up no other key."""
    ann, bob, carl = make_users(engine, "ann", "bob", "carl")
    before = sent(run(engine, [send(ann, bob, "old")]), 0)
    with engine.begin() as conn:
        add_block(conn, bob.id, ann.id, NOW)

    outcome = run(
        engine,
        [send(ann, bob, "old", "retried"), send(ann, bob, "new"), send(carl, bob, "fine")],
        look_up=look_up,
    )
    retry = answers(outcome)[0]
    assert isinstance(retry, SendResult) and retry.created is False
    assert retry.message == before
    refused = answers(outcome)[1]
    assert isinstance(refused, MessengerError) and refused.code == ErrorCode.FORBIDDEN
    assert sent(outcome, 2)["from"] == "carl"
    assert outcome.stored == 1
    with engine.connect() as conn:
        bodies = set(conn.execute(select(messages.c.body)).scalars())
        heads = stream_heads(conn, [ann.id, bob.id, carl.id])
    assert bodies == {"old", "fine"}
    assert heads == {ann.id: 1, bob.id: 2, carl.id: 1}
    assert_streams_whole(engine, ann, bob, carl)


def _status_of(engine: Engine, *ids: int) -> list[tuple[int, bool, bool]]:
    """(status, delivered_at set, read_at set) of each message."""
    with engine.connect() as conn:
        rows = {
            row.id: (row.status, row.delivered_at is not None, row.read_at is not None)
            for row in conn.execute(select(messages).where(messages.c.id.in_(ids)))
        }
    return [rows[message_id] for message_id in ids]


def _receipts(engine: Engine, user: UserRef) -> list[tuple[int, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(stream_events.c.seq, stream_events.c.payload)
            .where(stream_events.c.user_id == user.id, stream_events.c.kind == EVENT_RECEIPT)
            .order_by(stream_events.c.seq)
        )
        return [(seq, json.loads(payload)) for seq, payload in rows]


def test_marks_raise_only_the_callers_incoming_messages_and_write_receipts(
    engine: Engine,
) -> None:
    """A mark changes only messages addressed to its user, only upwards; each change
    is a receipt event: `delivered` in the sender's stream, `read` in the sender's and
    the reader's. Within a batch marks apply in queue order, so a `delivered` after a
    `read` of the same message changes nothing."""
    ann, bob, carl = make_users(engine, "ann", "bob", "carl")
    out = run(engine, [send(ann, bob, "m1"), send(ann, bob, "m2"), send(bob, ann, "m3")])
    m1, m2, m3 = (sent(out, i)["id"] for i in range(3))
    later = NOW + timedelta(seconds=1)

    marked = run(
        engine,
        [
            MarkOrder(bob, [m1, m2, m3], STATUS_DELIVERED),  # m3 is bob's own
            MarkOrder(carl, [m1], STATUS_READ),  # not carl's
        ],
        now=later,
    )
    assert answers(marked) == {0: 2, 1: 0}
    assert marked.delivered == 2 and marked.read == 0
    assert _status_of(engine, m1, m2, m3) == [(STATUS_DELIVERED, True, False)] * 2 + [
        (STATUS_SENT, False, False)
    ]
    (receipt,) = marked.events
    assert (receipt.user_id, receipt.seq, receipt.event) == (ann.id, 4, RECEIPT)
    assert _receipts(engine, ann) == [
        (4, {"ids": [m1, m2], "status": "delivered", "by": "bob", "at": "2026-12-02T10:00:01.123Z"})
    ]
    assert _receipts(engine, bob) == []

    read = run(
        engine,
        [MarkOrder(bob, [m1], STATUS_READ), MarkOrder(bob, [m1, m2], STATUS_DELIVERED)],
    )
    assert answers(read) == {0: 1, 1: 0}  # m2 was delivered already: nothing goes back
    assert _status_of(engine, m1, m2) == [
        (STATUS_READ, True, True),
        (STATUS_DELIVERED, True, False),
    ]
    assert [seq for seq, _ in _receipts(engine, ann)] == [4, 5]
    assert [(seq, body["status"], body["ids"]) for seq, body in _receipts(engine, bob)] == [
        (4, "read", [m1])
    ]

    again = run(
        engine, [MarkOrder(bob, [m1], STATUS_READ), MarkOrder(bob, [m1, m2], STATUS_DELIVERED)]
    )
    assert answers(again) == {0: 0, 1: 0}
    assert again.events == []
    assert_streams_whole(engine, ann, bob, carl)


def test_a_failed_optimistic_batch_leaves_nothing_and_its_retry_keeps_every_item(
    engine: Engine,
) -> None:
    """The writer's first attempt takes every send for new: a repeat of a stored key
    fails the whole transaction (IntegrityError) and it must leave nothing behind, no
    message, event or stream position. The retry that looks keys up then answers the
    repeat and stores every other item, the streams still without holes."""
    ann, bob = make_users(engine, "ann", "bob")
    stored = sent(run(engine, [send(ann, bob, "dup")]), 0)
    batch: list[Order] = [
        send(ann, bob, "fresh-1"),
        send(ann, bob, "dup", "retried"),
        MarkOrder(bob, [stored["id"]], STATUS_DELIVERED),
        send(bob, ann, "fresh-2"),
    ]
    with pytest.raises(IntegrityError):
        run(engine, batch, look_up=False)
    assert count_messages(engine) == 1
    assert _status_of(engine, stored["id"]) == [(STATUS_SENT, False, False)]
    assert_streams_whole(engine, ann, bob)
    with engine.connect() as conn:
        assert stream_heads(conn, [ann.id, bob.id]) == {ann.id: 1, bob.id: 1}

    retried = run(engine, batch, look_up=True)
    assert sent(retried, 0)["body"] == "fresh-1"
    answer = answers(retried)[1]
    assert isinstance(answer, SendResult) and answer.created is False
    assert answer.message == stored
    assert answers(retried)[2] == 1
    assert sent(retried, 3)["body"] == "fresh-2"
    assert count_messages(engine) == 3
    assert_streams_whole(engine, ann, bob)
    with engine.connect() as conn:
        # ann: dup, fresh-1, the receipt, fresh-2; bob: dup, fresh-1, fresh-2.
        assert stream_heads(conn, [ann.id, bob.id]) == {ann.id: 4, bob.id: 3}
