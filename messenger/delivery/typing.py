"""Who is typing to whom: ephemeral, never stored, never in the stream (docs/protocol.md
3.7).

A typing state lives on the node of the connection that typed, with a timer: it ends
when the client says `false`, when the typer's message to that user is stored, when
the connection goes, or `TYPING_TTL` seconds after the last `true`. Each change is
told to the other user's connections on this node and, through the bus, on every
other node (at most once: a lost one is ended by the clients' own expiry).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from messenger.delivery.live import LiveHub, Pusher
from messenger.protocol import TYPING
from messenger.store.blocks import blocking_pairs
from messenger.store.db import Database
from messenger.wire import TypingNotice, UserRef

# Seconds a `true` lasts without a repeat, and the least time between two `true`s
# told to the other side while the typing goes on.
TYPING_TTL = 6.0
TYPING_REFRESH = 3.0
# Users one connection may be typing to at once; more are ignored.
TARGETS_PER_CONNECTION = 32


class TypingBus(Protocol):
    """The way to the other nodes (`cluster.bus.Cluster`)."""

    def publish_typing(self, sender: str, to_id: int, state: bool) -> None: ...


@dataclass(slots=True)
class _Typing:
    sid: str
    told_at: float
    expiry: asyncio.TimerHandle


class Typing:
    def __init__(
        self, hub: LiveHub, pusher: Pusher, db: Database, bus: TypingBus | None = None
    ) -> None:
        self._hub = hub
        self._pusher = pusher
        self._db = db
        self._bus = bus
        self._states: dict[tuple[UserRef, UserRef], _Typing] = {}
        self._by_sid: dict[str, set[tuple[UserRef, UserRef]]] = {}
        self._expiring: set[asyncio.Task[None]] = set()

    async def update(self, sid: str, user: UserRef, to: UserRef, state: bool) -> None:
        """A client says its user is (or stopped) typing to `to`."""
        key = (user, to)
        current = self._states.get(key)
        if not state:
            if current is not None:
                await self._end(key)
            return
        now = time.monotonic()
        if current is not None:
            current.expiry.cancel()
            current.expiry = self._expiry(key)
            if now - current.told_at < TYPING_REFRESH:
                return
        elif len(self._by_sid.get(sid, ())) >= TARGETS_PER_CONNECTION:
            return
        if await self._db.read(blocking_pairs, [(to.id, user.id)]):
            return  # dropped: the typer is not told (3.7)
        current = self._states.get(key)  # the await may have let another in
        if current is None:
            current = _Typing(sid, now, self._expiry(key))
            self._states[key] = current
            self._by_sid.setdefault(sid, set()).add(key)
        current.told_at = now
        await self._tell(user.username, to.id, True)

    def sent(self, user: UserRef, to: UserRef) -> None:
        """The user's message to `to` is stored: their typing to `to` ends."""
        if (user, to) in self._states:
            self._end_soon((user, to))

    def disconnected(self, sid: str) -> None:
        """The connection is gone: whatever it was typing ends."""
        for key in list(self._by_sid.get(sid, ())):
            self._end_soon(key)

    async def from_other_node(self, sender: str, to_id: int, state: bool) -> None:
        """A typing change another node told (and already told its own connections)."""
        await self._deliver(sender, to_id, state)

    def close(self) -> None:
        for state in self._states.values():
            state.expiry.cancel()
        self._states.clear()
        self._by_sid.clear()

    def _expiry(self, key: tuple[UserRef, UserRef]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(TYPING_TTL, self._end_soon, key)

    def _end_soon(self, key: tuple[UserRef, UserRef]) -> None:
        task = asyncio.get_running_loop().create_task(self._end(key))
        self._expiring.add(task)  # held until done: a task only weakly held may vanish
        task.add_done_callback(self._expiring.discard)

    async def _end(self, key: tuple[UserRef, UserRef]) -> None:
        state = self._states.pop(key, None)
        if state is None:
            return
        state.expiry.cancel()
        keys = self._by_sid.get(state.sid)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_sid[state.sid]
        user, to = key
        await self._tell(user.username, to.id, False)

    async def _tell(self, sender: str, to_id: int, state: bool) -> None:
        await self._deliver(sender, to_id, state)
        if self._bus is not None:
            self._bus.publish_typing(sender, to_id, state)

    async def _deliver(self, sender: str, to_id: int, state: bool) -> None:
        notice: TypingNotice = {"from": sender, "state": state}
        for conn in self._hub.connections_of_user(to_id):
            if not conn.seed:
                await self._pusher.emit(TYPING, notice, conn.sid)
