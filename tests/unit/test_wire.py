"""The outbound shapes of `messenger.wire` against what the server really builds: a
message sent through `apply_batch`, its stream events, their `sync` entries and seed
forms, and a history page's message, each with exactly its TypedDict's keys."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from messenger.delivery.batch import MarkOrder, SendOrder, SendResult, apply_batch
from messenger.protocol import NEW_MESSAGE, RECEIPT, RECEIVED_MESSAGE, STATUS_READ
from messenger.store.message_reads import conversation_page
from messenger.store.users import insert_user
from messenger.wire import (
    Message,
    NewMessageEvent,
    ReceiptEvent,
    ReceivedMessage,
    SyncedEvent,
    SyncEntry,
    UserRef,
    formatted,
    message_dict,
    seed_form,
    sync_entry,
    synced_event,
)

NOW = datetime(2026, 12, 2, 10, 0, 0, 123000, tzinfo=UTC)


def assert_shape(value: Mapping[str, Any], shape: Any) -> None:
    """`value` has every required key of the TypedDict `shape` and no key it lacks."""
    keys = set(value)
    assert shape.__required_keys__ <= keys, (shape.__name__, keys)
    assert keys <= shape.__required_keys__ | shape.__optional_keys__, (shape.__name__, keys)


def test_what_a_send_and_a_read_build_has_exactly_the_typed_keys(engine: Engine) -> None:
    with engine.begin() as conn:
        ann, bob = (UserRef(insert_user(conn, n, "x", NOW), n) for n in ("ann", "bob"))
        sent = apply_batch(conn, [SendOrder(ann, bob, "hi", "c-1")], NOW, False, look_up=True)
    [(_, answer)] = sent.answers
    assert isinstance(answer, SendResult)
    assert_shape(answer.message, Message)
    message_id = answer.message["id"]

    with engine.begin() as conn:
        read = apply_batch(conn, [MarkOrder(bob, [message_id], STATUS_READ)], NOW, False, True)
        page = conversation_page(conn, bob.id, ann.id, None, None, 10)
    assert_shape(message_dict(page[0], "ann", "bob", formatted), Message)

    items = sent.events + read.events
    assert {item.event for item in items} == {NEW_MESSAGE, RECEIPT}
    for item in items:
        assert_shape(item.data, NewMessageEvent if item.event == NEW_MESSAGE else ReceiptEvent)
        entry = sync_entry(item)
        assert_shape(entry, SyncEntry)
        event, data = seed_form(item)
        if event == RECEIVED_MESSAGE:
            assert_shape(data, ReceivedMessage)
        else:
            assert (event, data) == (item.event, item.data)
    assert_shape(synced_event(3), SyncedEvent)
