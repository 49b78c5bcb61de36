"""Leaving a namespace in time that does not grow with the node's connections.

python-socketio's `basic_disconnect` finds the rooms a session is in by copying the
namespace's whole room table and looking for the session in every room; every
session has a room of its own, so one disconnect costs time in proportion to the
sessions the node holds, and a storm of disconnects (a network blip, a node's
clients all reconnecting) costs the square of it, during which the node accepts
nothing. `IndexedManager` keeps the rooms each session entered besides the two every
session is in (the namespace's, `None`, and its own, named by its sid), and leaves
exactly those.
"""

from __future__ import annotations

from typing import Any

import socketio


class IndexedManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's manager, each session's rooms indexed. A base of the Redis
    manager too, ahead of `socketio.AsyncRedisManager` (redis_manager)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (namespace, sid) -> the rooms it entered that are neither None nor sid.
        self._other_rooms: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if room is not None and room != sid:
            self._other_rooms.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        others = self._other_rooms.get((namespace, sid))
        if others is not None:
            others.discard(room)
            if not others:
                del self._other_rooms[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # The library's, with the rooms looked up in the index instead of searched
        # for: the same rooms are left, and the same bookkeeping is dropped.
        if namespace not in self.rooms:
            return
        for room in (*self._other_rooms.get((namespace, sid), ()), sid, None):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]
