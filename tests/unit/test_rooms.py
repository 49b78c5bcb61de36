"""IndexedManager leaves the rooms python-socketio's manager leaves, without searching
every room: the same operations on both end in the same tables."""

from __future__ import annotations

from typing import Any

import socketio
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger.transport.overrides.rooms import IndexedManager

SIDS = ("a", "b", "c", "d")
NAMESPACES = ("/", "/x")
ROOMS = ("r1", "r2", "a")  # "a" is also a sid: its room is the sid's own

op = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(SIDS), st.sampled_from(NAMESPACES)),
    st.tuples(
        st.just("enter"),
        st.sampled_from(SIDS),
        st.sampled_from(NAMESPACES),
        st.sampled_from(ROOMS),
    ),
    st.tuples(
        st.just("leave"),
        st.sampled_from(SIDS),
        st.sampled_from(NAMESPACES),
        st.sampled_from(ROOMS),
    ),
    st.tuples(st.just("disconnect"), st.sampled_from(SIDS), st.sampled_from(NAMESPACES)),
    st.tuples(st.just("callback"), st.sampled_from(SIDS)),
    st.tuples(st.just("pending"), st.sampled_from(SIDS), st.sampled_from(NAMESPACES)),
)


def apply(manager: Any, step: tuple[Any, ...]) -> str:
    """One step on a manager; what came of it (an error's type, or "ok")."""
    kind, *args = step
    try:
        if kind == "connect":
            sid, namespace = args
            manager.basic_enter_room(sid, namespace, None, eio_sid="e" + sid)
            manager.basic_enter_room(sid, namespace, sid, eio_sid="e" + sid)
        elif kind == "enter":
            manager.basic_enter_room(*args)
        elif kind == "leave":
            manager.basic_leave_room(*args)
        elif kind == "disconnect":
            manager.basic_disconnect(*args)
        elif kind == "callback":
            manager.callbacks.setdefault(args[0], {})[1] = print
        elif kind == "pending":
            sid, namespace = args
            manager.pending_connect.setdefault(namespace, []).append(sid)
            manager.pending_disconnect.setdefault(namespace, []).append(sid)
    except Exception as exc:  # the library raises for some steps: ours must too
        return type(exc).__name__
    return "ok"


def tables(manager: Any) -> tuple[Any, ...]:
    rooms = {
        ns: {room: dict(members) for room, members in r.items()} for ns, r in manager.rooms.items()
    }
    return rooms, set(manager.callbacks), manager.pending_connect, manager.pending_disconnect


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_the_same_steps_leave_the_same_tables(steps: list[tuple[Any, ...]]) -> None:
    library, ours = socketio.AsyncManager(), IndexedManager()
    for step in steps:
        assert apply(library, step) == apply(ours, step), step
        assert tables(library) == tables(ours), step


class Unsearchable(dict[Any, Any]):
    """A namespace's room table that refuses to be walked or copied."""

    def copy(self) -> Any:
        raise AssertionError("the room table was copied")

    def items(self) -> Any:
        raise AssertionError("every room was searched")

    def __iter__(self) -> Any:
        raise AssertionError("every room was searched")


def test_a_disconnect_looks_only_at_the_sessions_own_rooms() -> None:
    """python-socketio copies and searches the namespace's whole room table on each
    disconnect (a cost that grows with the sessions held); ours must not touch it."""
    manager = IndexedManager()
    for i in range(100):
        apply(manager, ("connect", f"s{i}", "/"))
    apply(manager, ("enter", "s1", "/", "r1"))
    manager.rooms["/"] = Unsearchable(manager.rooms["/"])
    manager.basic_disconnect("s1", "/")
    assert "s1" not in manager.rooms["/"] and "s1" not in manager.rooms["/"][None]
    assert "r1" not in manager.rooms["/"]
