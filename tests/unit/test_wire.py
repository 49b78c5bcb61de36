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
    format_time,
    formatted,
    message_dict,
    message_updated_item,
    new_message_item,
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


# -- how a message shows after its send (docs/protocol.md 3.1, 3.8) ---------------------

ROW: dict[str, Any] = {
    "id": 7,
    "sender_id": 1,
    "recipient_id": 2,
    "body": "hello",
    "client_id": "c-7",
    "sent_at": NOW,
    "status": STATUS_READ,
    "delivered_at": NOW,
    "read_at": NOW,
    "reply_to_id": 5,
    "reply_sender_id": 2,
    "reply_excerpt": "earlier",
    "reply_deleted_at": None,
    "edited_at": None,
    "deleted_at": None,
    "read_private": False,
}


def test_a_private_read_shows_delivered_to_the_sender_only() -> None:
    row = {**ROW, "read_private": True}
    as_sender = message_dict(row, "ann", "bob", viewer_id=1)
    as_reader = message_dict(row, "ann", "bob", viewer_id=2)
    assert (as_sender["status"], as_sender["read_at"]) == ("delivered", None)
    assert (as_reader["status"], as_reader["read_at"]) == ("read", format_time(NOW))
    public = message_dict(ROW, "ann", "bob", viewer_id=1)
    assert public["status"] == "read"


def test_a_reply_names_its_author_and_goes_with_a_delete() -> None:
    shown = message_dict(ROW, "ann", "bob", reactions={"👍": ["bob"]})
    assert shown["reply_to"] == {"id": 5, "from": "bob", "excerpt": "earlier"}
    assert shown["reactions"] == {"👍": ["bob"]}
    original_gone = message_dict({**ROW, "reply_deleted_at": NOW}, "ann", "bob")
    assert original_gone["reply_to"] == {"id": 5, "deleted": True}
    deleted = message_dict({**ROW, "deleted_at": NOW}, "ann", "bob", reactions={"👍": ["bob"]})
    assert (deleted["body"], deleted["deleted"], deleted["reply_to"], deleted["reactions"]) == (
        None,
        True,
        None,
        {},
    )
    assert "hidden" not in deleted
    assert_shape(deleted, Message)


def test_a_hidden_message_shows_nothing_of_its_content() -> None:
    hidden = message_dict({**ROW, "hidden": True}, "ann", "bob", reactions={"👍": ["bob"]})
    assert hidden["hidden"] is True and hidden["deleted"] is True
    assert (hidden["body"], hidden["reply_to"], hidden["reactions"]) == (None, None, {})
    assert_shape(hidden, Message)


def test_the_seed_protocol_skips_what_it_has_no_event_for() -> None:
    deleted = message_dict({**ROW, "deleted_at": NOW}, "ann", "bob")
    assert seed_form(new_message_item(2, 3, deleted)) is None
    assert seed_form(message_updated_item(2, 4, deleted, "deleted")) is None
    kept = seed_form(new_message_item(2, 3, message_dict(ROW, "ann", "bob")))
    assert kept is not None and kept[0] == RECEIVED_MESSAGE
