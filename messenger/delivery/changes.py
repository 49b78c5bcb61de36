"""Edits, deletes and reactions inside a write batch: checked against the messages'
state, applied in SQL, and turned into `message_updated` events (docs/protocol.md 3.6).

The batch (`delivery.batch`) runs two steps of this module around the taking of
stream positions: `apply_changes` checks every change in queue order against the
state it loads once (so a batch may hold several changes of one message) and writes
the result; `ChangeEvents.render` then reads each changed message back as it is now,
inside the same transaction, for the events and the answers. Nothing here knows of
futures or the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, RowMapping

from messenger.errors import MessengerError, forbidden, not_found, too_large
from messenger.protocol import (
    DELETED,
    EDITED,
    HIDDEN,
    REACTED,
    REACTIONS_PER_USER_MAX,
    Change,
    ChangeCommand,
    DeleteCommand,
    EditCommand,
    ReactCommand,
)
from messenger.store.message_changes import (
    add_edit_keys,
    add_reactions,
    apply_edits,
    change_targets,
    hidden_pairs,
    hide_messages,
    known_edit_keys,
    reaction_keys,
    remove_reactions,
    wipe_messages,
)
from messenger.store.message_views import extras_of, message_rows
from messenger.store.models import EVENT_MESSAGE_UPDATED
from messenger.store.search import change_documents
from messenger.store.users import usernames
from messenger.wire import Message, StreamItem, UserRef, message_dict, message_updated_item


@dataclass(frozen=True, slots=True)
class ChangeOrder:
    """An edit, a delete or a reaction of `user`'s."""

    user: UserRef
    command: ChangeCommand


@dataclass(frozen=True, slots=True)
class Windows:
    """How long after its send a message may be edited, or deleted for everyone
    (seconds; 0: no limit)."""

    edit: float
    delete: float


NO_WINDOWS = Windows(edit=0, delete=0)

IndexedChange = tuple[int, ChangeOrder]


class Positions(Protocol):
    """The batch's stream positions, handed out in order per user."""

    def take(self, user_id: int) -> int: ...


@dataclass(slots=True)
class _Target:
    """A message's state as the batch's changes see it, changed in memory in order."""

    row: RowMapping
    body: str
    deleted: bool
    hidden_for: set[int]
    reactions: set[tuple[int, str]]
    edited: bool = False

    def party(self, user_id: int) -> bool:
        return user_id in (self.row["sender_id"], self.row["recipient_id"])

    def audience(self) -> tuple[int, ...]:
        """Who hears of a change: both users, less one who deleted it for themselves."""
        users = (self.row["sender_id"], self.row["recipient_id"])
        return tuple(user for user in users if user not in self.hidden_for)


@dataclass(slots=True)
class ChangeEvents:
    """What the changes of a batch produce: events to position, then to render."""

    # (message_id, audience, change) in queue order.
    updates: list[tuple[int, tuple[int, ...], Change]] = field(default_factory=list)
    # (order index, message_id, viewer) of the answers that carry the message;
    # answers that carry nothing are given directly.
    answers: list[tuple[int, int, int]] = field(default_factory=list)
    # Bodies wiped or replaced: the text must leave the files (G10).
    wiped: int = 0

    def changes(self) -> list[Change]:
        """The change of each event told (once per change, whatever its audience)."""
        return [change for _, _, change in self.updates]

    def counts(self) -> list[int]:
        """The users of every event, once per event (for the stream positions)."""
        return [user for _, audience, _ in self.updates for user in audience]

    def message_ids(self) -> set[int]:
        return {mid for mid, _, _ in self.updates} | {mid for _, mid, _ in self.answers}


def apply_changes(
    conn: Connection,
    changes: list[IndexedChange],
    now: datetime,
    windows: Windows,
    direct_answers: list[tuple[int, Any]],
) -> ChangeEvents:
    """Check and apply the changes in queue order; failures and answers without a
    message go to `direct_answers`."""
    events = ChangeEvents()
    if not changes:
        return events
    targets = _load(conn, changes)
    initial = {
        mid: (set(target.reactions), target.hidden_for.copy()) for mid, target in targets.items()
    }
    keys = _edit_keys_seen(conn, changes, targets)
    new_keys: list[tuple[int, str]] = []
    for index, order in changes:
        target = targets.get(order.command.message_id)
        try:
            outcome = _check_and_apply(order, target, now, windows, keys, new_keys)
        except MessengerError as error:
            direct_answers.append((index, error))
            continue
        mid = order.command.message_id
        change, answered = outcome
        if change is not None and target is not None:
            audience = (order.user.id,) if change == HIDDEN else target.audience()
            events.updates.append((mid, audience, change))
        if answered:
            events.answers.append((index, mid, order.user.id))
        else:
            direct_answers.append((index, {}))
    _write(conn, targets, initial, new_keys, now, events)
    return events


def _load(conn: Connection, changes: list[IndexedChange]) -> dict[int, _Target]:
    ids = sorted({order.command.message_id for _, order in changes})
    rows = change_targets(conn, ids)
    hidden = hidden_pairs(conn, ids)
    reactions = reaction_keys(conn, ids)
    return {
        mid: _Target(
            row=row,
            body=row["body"],
            deleted=row["deleted_at"] is not None,
            hidden_for={user for user, hid in hidden if hid == mid},
            reactions={(user, emoji) for rmid, user, emoji in reactions if rmid == mid},
        )
        for mid, row in rows.items()
    }


def _edit_keys_seen(
    conn: Connection, changes: list[IndexedChange], targets: dict[int, _Target]
) -> set[tuple[int, str]]:
    edits = [order.command for _, order in changes if isinstance(order.command, EditCommand)]
    if not edits:
        return set()
    ids = sorted({edit.message_id for edit in edits if edit.message_id in targets})
    return known_edit_keys(conn, ids, [edit.client_id for edit in edits]) if ids else set()


def _check_and_apply(
    order: ChangeOrder,
    target: _Target | None,
    now: datetime,
    windows: Windows,
    keys: set[tuple[int, str]],
    new_keys: list[tuple[int, str]],
) -> tuple[Change | None, bool]:
    """One change against the message's state: (the change to tell, or None when it
    changed nothing; whether the answer carries the message). Raises the refusal, in
    the order docs/protocol.md 3.6 gives."""
    user = order.user.id
    command = order.command
    if target is None or not target.party(user):
        raise not_found("no such message")
    if user in target.hidden_for:
        if isinstance(command, DeleteCommand) and not command.for_everyone:
            return None, False
        raise not_found("you deleted that message")
    if isinstance(command, DeleteCommand):
        return _delete(command, user, target, now, windows)
    if target.deleted:
        raise not_found("that message was deleted")
    if isinstance(command, EditCommand):
        return _edit(command, user, target, now, windows, keys, new_keys)
    return _react(command, user, target)


def _delete(
    command: DeleteCommand, user: int, target: _Target, now: datetime, windows: Windows
) -> tuple[Change | None, bool]:
    if not command.for_everyone:
        target.hidden_for.add(user)
        return HIDDEN, False
    if user != target.row["sender_id"]:
        raise forbidden("only its sender can delete a message for everyone")
    if target.deleted:
        return None, True
    _within(windows.delete, target, now, "delete")
    target.deleted, target.body, target.edited = True, "", False
    target.reactions.clear()
    return DELETED, True


def _edit(
    command: EditCommand,
    user: int,
    target: _Target,
    now: datetime,
    windows: Windows,
    keys: set[tuple[int, str]],
    new_keys: list[tuple[int, str]],
) -> tuple[Change | None, bool]:
    if user != target.row["sender_id"]:
        raise forbidden("only its sender can edit a message")
    key = (command.message_id, command.client_id)
    if key in keys:
        return None, True  # a repeat: answered as the message is now
    _within(windows.edit, target, now, "edit")
    keys.add(key)
    new_keys.append(key)
    if command.body == target.body:
        return None, True
    target.body, target.edited = command.body, True
    return EDITED, True


def _react(command: ReactCommand, user: int, target: _Target) -> tuple[Change | None, bool]:
    key = (user, command.emoji)
    if command.add:
        if key in target.reactions:
            return None, True
        mine = sum(1 for who, _ in target.reactions if who == user)
        if mine >= REACTIONS_PER_USER_MAX:
            raise too_large(f"at most {REACTIONS_PER_USER_MAX} reactions per message")
        target.reactions.add(key)
    else:
        if key not in target.reactions:
            return None, True
        target.reactions.discard(key)
    return REACTED, True


def _within(window: float, target: _Target, now: datetime, what: str) -> None:
    if window and now - target.row["sent_at"] > timedelta(seconds=window):
        raise forbidden(f"too late to {what} that message")


def _write(
    conn: Connection,
    targets: dict[int, _Target],
    initial: dict[int, tuple[set[tuple[int, str]], set[int]]],
    new_keys: list[tuple[int, str]],
    now: datetime,
    events: ChangeEvents,
) -> None:
    """Write the difference between each message's state before and after."""
    wiped = [mid for mid, t in targets.items() if t.deleted and t.row["deleted_at"] is None]
    edited = {mid: t.body for mid, t in targets.items() if t.edited and not t.deleted}
    added: list[tuple[int, int, str]] = []
    removed: list[tuple[int, int, str]] = []
    hidden: list[tuple[int, int]] = []
    for mid, target in targets.items():
        reactions_before, hidden_before = initial[mid]
        if mid not in wiped:  # a wipe removes them all
            added += [(mid, user, emoji) for user, emoji in target.reactions - reactions_before]
            removed += [(mid, user, emoji) for user, emoji in reactions_before - target.reactions]
        hidden += [(user, mid) for user in sorted(target.hidden_for - hidden_before)]
    change_documents(conn, edited, wiped)
    apply_edits(conn, edited, now)
    wipe_messages(conn, wiped, now)
    remove_reactions(conn, removed)
    add_reactions(conn, sorted(added), now)
    hide_messages(conn, hidden, now)
    add_edit_keys(conn, new_keys)
    events.wiped = len(wiped) + len(edited)


def render(
    conn: Connection, events: ChangeEvents, positions: Positions, answers: list[tuple[int, Any]]
) -> tuple[list[StreamItem], list[dict[str, Any]]]:
    """The batch's `message_updated` events and their rows, at the positions taken
    (`positions.take(user)`), and the answers that carry a message: each message as it
    is now, as its viewer sees it."""
    ids = events.message_ids()
    if not ids:
        return [], []
    rows = message_rows(conn, ids)
    extras = extras_of(conn, sorted(ids))
    people = {row[key] for row in rows.values() for key in ("sender_id", "recipient_id")}
    names = usernames(conn, people)

    def shown(mid: int, viewer: int, hidden: bool = False) -> Message:
        row = rows[mid]
        view = {**row, "hidden": True} if hidden else row
        return message_dict(
            view,
            names[row["sender_id"]],
            names[row["recipient_id"]],
            viewer_id=viewer,
            **extras.of(mid),
        )

    items: list[StreamItem] = []
    event_rows: list[dict[str, Any]] = []
    for mid, audience, change in events.updates:
        for user in audience:
            seq = positions.take(user)
            message = shown(mid, user, hidden=change == HIDDEN)
            items.append(message_updated_item(user, seq, message, change))
            event_rows.append(
                {
                    "user_id": user,
                    "seq": seq,
                    "kind": EVENT_MESSAGE_UPDATED,
                    "message_id": mid,
                    "payload": change,
                }
            )
    for index, mid, viewer in events.answers:
        answers.append((index, {"message": shown(mid, viewer)}))
    return items, event_rows
