"""The live side of a node: its connections, and pushing each one its stream in order.

Every connection remembers the last cursor it was sent. An event is pushed only when
it is the next one; anything else (a gap, a connection still replaying its backlog)
makes the connection catch up from SQL, page by page, until it reaches the head. So a
device sees its stream in cursor order without holes, whether an event came through
the writer of this node, through Redis from another node, or not at all (G4, G9).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from messenger.delivery.streams import StreamReader
from messenger.metrics import Metrics
from messenger.protocol import SYNCED
from messenger.wire import StreamItem, UserRef, seed_form, synced_event

log = logging.getLogger(__name__)

PAGE_SIZE = 500
# The share of a connection's byte budget (`connection_buffer`) a backlog replay lets
# pile up before it pauses for the client to read: the rest stays free for the live
# pushes and answers that come meanwhile.
REPLAY_SHARE = 4
# How long a replay waits for a connection that does not drain before dropping it.
DRAIN_TIMEOUT = 30.0
DRAIN_POLL = 0.01
# With several nodes a user's stream is written by more than one node, and a node's
# own event can overtake another node's wake-up on its way through Redis. Events
# after a gap wait this long for the missing one before SQL is read to fill it.
GAP_WAIT = 0.05
HELD_MAX = 2_000


class SlowConsumer(Exception):
    """The connection stopped reading; it has been disconnected."""


class Pusher(Protocol):
    """What the live side needs from the transport: per-connection emits."""

    async def emit(self, event: str, data: Mapping[str, Any], sid: str) -> None: ...

    def pending(self, sid: str) -> int:
        """Bytes queued for the connection and not yet taken by the kernel."""
        ...

    async def disconnect(self, sid: str, abort: bool = False) -> None: ...


@dataclass(eq=False)
class LiveConnection:
    sid: str
    user: UserRef
    token_id: int
    seed: bool
    # The last cursor sent to this connection: the next push must be last_seq + 1.
    last_seq: int
    # Undelivered messages at or before this cursor are replayed first (G6).
    replay_undelivered_to: int
    synced: bool = False
    catching_up: asyncio.Task[None] | None = None
    # Held while pushing, so live pushes and replays never interleave.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Held from an event's arrival until it is queued for the writer. python-socketio
    # runs each event as its own task; this FIFO lock keeps the connection's writes
    # in the order they arrived even when one of them waits for the database.
    admission: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Events that arrived ahead of a missing one, waiting briefly for it (see
    # `LiveHub.deliver`), and the timer after which SQL fills the gap instead.
    held: dict[int, StreamItem] = field(default_factory=dict)
    gap_timer: asyncio.TimerHandle | None = None
    # The client's address (for the limits and logs kept per address).
    address: str = ""
    # Events of this connection being handled now (each is its own task).
    in_flight: int = 0
    # Kinds of misbehaviour already logged for this connection: each is logged once.
    logged: set[str] = field(default_factory=set)


class LiveHub:
    """This node's connections, and their pushes and replays.

    `connection_buffer` is the byte budget of one connection: a connection with more
    than that waiting to be read is a consumer that stopped reading, and is dropped
    (what it missed stays in SQL and replays when it comes back). Replays pause at a
    `REPLAY_SHARE`th of it."""

    def __init__(
        self,
        pusher: Pusher,
        reader: StreamReader,
        metrics: Metrics,
        on_users_changed: Callable[[], None] | None = None,
        *,
        connection_buffer: int,
    ) -> None:
        self._pusher = pusher
        self._budget = connection_buffer
        self._high_water = connection_buffer // REPLAY_SHARE
        self._on_users_changed = on_users_changed
        self._reader = reader
        self._metrics = metrics
        self._by_sid: dict[str, LiveConnection] = {}
        self._by_user: dict[int, dict[str, LiveConnection]] = {}
        # Connections by the token they authenticated with: a revocation, and the
        # maintenance sweep of dead tokens, look up tokens, not every connection.
        self._by_token: dict[int, dict[str, LiveConnection]] = {}
        # The highest cursor this node has heard of, per user with local connections.
        self._known_head: dict[int, int] = {}
        # Heads read at the previous resync tick (see `resync`).
        self._previous_heads: dict[int, int] = {}

    # -- connections --------------------------------------------------------------

    def attach(self, conn: LiveConnection, head: int) -> None:
        """Register a connection and start replaying its backlog, then `synced`."""
        self._by_sid[conn.sid] = conn
        if conn.user.id not in self._by_user and self._on_users_changed is not None:
            self._on_users_changed()
        self._by_user.setdefault(conn.user.id, {})[conn.sid] = conn
        self._by_token.setdefault(conn.token_id, {})[conn.sid] = conn
        self._known_head[conn.user.id] = max(head, self._known_head.get(conn.user.id, 0))
        self._metrics.connections.inc()
        self._start_catch_up(conn)

    def detach(self, sid: str) -> LiveConnection | None:
        conn = self._by_sid.pop(sid, None)
        if conn is None:
            return None
        self._metrics.connections.dec()
        same_token = self._by_token.get(conn.token_id, {})
        same_token.pop(sid, None)
        if not same_token:
            self._by_token.pop(conn.token_id, None)
        peers = self._by_user.get(conn.user.id, {})
        peers.pop(sid, None)
        if not peers:
            self._by_user.pop(conn.user.id, None)
            self._known_head.pop(conn.user.id, None)
            self._previous_heads.pop(conn.user.id, None)
            if self._on_users_changed is not None:
                self._on_users_changed()
        if conn.catching_up is not None:
            conn.catching_up.cancel()
        self._cancel_gap_timer(conn)
        return conn

    def count_of_user(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def connections_of_user(self, user_id: int) -> list[LiveConnection]:
        return list(self._by_user.get(user_id, {}).values())

    def get(self, sid: str) -> LiveConnection | None:
        return self._by_sid.get(sid)

    def local_user_ids(self) -> list[int]:
        """Users with at least one connection on this node."""
        return list(self._by_user)

    def connections_of_token(self, token_id: int) -> list[LiveConnection]:
        return list(self._by_token.get(token_id, {}).values())

    def token_ids(self) -> list[int]:
        """The tokens this node's connections authenticated with."""
        return list(self._by_token)

    async def close(self) -> None:
        for conn in list(self._by_sid.values()):
            if conn.catching_up is not None:
                conn.catching_up.cancel()

    # -- pushing ------------------------------------------------------------------

    async def deliver(self, items: list[StreamItem]) -> None:
        """Push committed events to this node's connections of their users."""
        by_user: dict[int, list[StreamItem]] = {}
        for item in items:
            if item.user_id in self._by_user:
                by_user.setdefault(item.user_id, []).append(item)
        for user_id, user_items in by_user.items():
            user_items.sort(key=lambda item: item.seq)
            self._known_head[user_id] = max(self._known_head.get(user_id, 0), user_items[-1].seq)
            for conn in list(self._by_user.get(user_id, {}).values()):
                if conn.catching_up is not None:
                    continue  # the replay reads up to the head, this included
                if conn.held:
                    conn.held.update((item.seq, item) for item in user_items)
                    pending = [conn.held[seq] for seq in sorted(conn.held)]
                else:
                    pending = user_items
                self._hold(conn, await self._push(conn, pending))

    def _hold(self, conn: LiveConnection, left: list[StreamItem]) -> None:
        """Keep the events behind a gap for GAP_WAIT; past that, or past HELD_MAX
        events, fill the gap from SQL."""
        conn.held = {item.seq: item for item in left}
        if not conn.held:
            self._cancel_gap_timer(conn)
        elif len(conn.held) > HELD_MAX:
            self._start_catch_up(conn)
        elif conn.gap_timer is None:
            loop = asyncio.get_running_loop()
            conn.gap_timer = loop.call_later(GAP_WAIT, self._gap_expired, conn)

    def _gap_expired(self, conn: LiveConnection) -> None:
        conn.gap_timer = None
        if conn.held:
            self._metrics.gap_repairs.inc()
            self._start_catch_up(conn)

    @staticmethod
    def _cancel_gap_timer(conn: LiveConnection) -> None:
        if conn.gap_timer is not None:
            conn.gap_timer.cancel()
            conn.gap_timer = None

    async def _push(
        self, conn: LiveConnection, items: list[StreamItem], replaying: bool = False
    ) -> list[StreamItem]:
        """Emit the items that continue the connection's stream, in order; returns
        those behind a gap (none when the stream is whole). A replay waits for the
        client to read whenever a `REPLAY_SHARE`th of its budget is waiting; a live
        push cannot wait (the writer is behind it), so a connection it takes past the
        budget is dropped."""
        left: list[StreamItem] = []
        async with conn.lock:
            for index, item in enumerate(items):
                if item.seq <= conn.last_seq:
                    continue  # already sent (a replay overtook the live push)
                if item.seq != conn.last_seq + 1:
                    left = items[index:]
                    break
                await self._emit(conn, item)
                conn.last_seq = item.seq
                if replaying:
                    await self._wait_for_drain(conn)
        if self._pusher.pending(conn.sid) > self._budget:
            log.warning("dropping connection %s: it stopped reading", conn.sid)
            await self._pusher.disconnect(conn.sid, abort=True)
        return left

    async def _emit(self, conn: LiveConnection, item: StreamItem) -> None:
        if not conn.seed:
            await self._pusher.emit(item.event, item.data, conn.sid)
            return
        seed = seed_form(item)
        if seed is not None:  # else the seed protocol has no such event: skipped
            await self._pusher.emit(seed[0], seed[1], conn.sid)

    # -- replay from SQL ----------------------------------------------------------

    def _start_catch_up(self, conn: LiveConnection) -> None:
        conn.held.clear()  # the replay reads them from SQL, in order
        self._cancel_gap_timer(conn)
        if conn.catching_up is None and conn.sid in self._by_sid:
            conn.catching_up = asyncio.create_task(self._catch_up(conn))

    async def _catch_up(self, conn: LiveConnection) -> None:
        try:
            if conn.replay_undelivered_to:
                await self._replay_undelivered(conn)
            while True:
                page = await self._reader.page(conn.user.id, conn.last_seq, PAGE_SIZE)
                if page:
                    self._metrics.backlog_events.inc(len(page))
                    if await self._push(conn, page, replaying=True):
                        log.error(
                            "stream of user %d has a hole after %d", conn.user.id, conn.last_seq
                        )
                        break
                    continue
                # Caught up with SQL. Anything delivered while we read was skipped for
                # us: look again if the node heard of a newer head. No await between
                # this check and leaving, so nothing can slip past.
                if self._known_head.get(conn.user.id, 0) > conn.last_seq:
                    continue
                if not conn.synced:
                    conn.synced = True
                    await self._pusher.emit(SYNCED, synced_event(conn.last_seq), conn.sid)
                    if self._known_head.get(conn.user.id, 0) > conn.last_seq:
                        continue
                break
        except SlowConsumer:
            pass  # already disconnected
        except Exception:
            # The database is away: the next resync tick tries again.
            log.exception("catch-up of %s failed", conn.sid)
        finally:
            conn.catching_up = None

    async def _replay_undelivered(self, conn: LiveConnection) -> None:
        """Messages still waiting for delivery, up to the connect-time cursor (G4, G6)."""
        after, up_to = 0, conn.replay_undelivered_to
        conn.replay_undelivered_to = 0
        while True:
            page = await self._reader.undelivered(conn.user.id, after, up_to, PAGE_SIZE)
            if not page:
                return
            async with conn.lock:
                for item in page:
                    await self._emit(conn, item)
                    await self._wait_for_drain(conn)
            self._metrics.redeliveries.inc(len(page))
            after = page[-1].seq

    async def _wait_for_drain(self, conn: LiveConnection) -> None:
        """Bound memory: wait while more than the replay's share of the connection's
        budget is unread. Checked after every replayed event: a page of the largest
        messages is far more than a connection's budget."""
        waited = 0.0
        while self._pusher.pending(conn.sid) > self._high_water:
            if waited >= DRAIN_TIMEOUT:
                log.warning("dropping connection %s: backlog not read in %.0fs", conn.sid, waited)
                await self._pusher.disconnect(conn.sid, abort=True)
                raise SlowConsumer(conn.sid)
            await asyncio.sleep(DRAIN_POLL)
            waited += DRAIN_POLL

    # -- repair (G9) --------------------------------------------------------------

    async def resync(self) -> None:
        """Catch up every connection that is behind a head seen one tick ago.

        A head read now may belong to a commit whose push is still on its way; a head
        from the previous tick has had a whole interval to arrive. So live pushes are
        never doubled by this check, and a lost one is repaired within two ticks.
        """
        user_ids = list(self._by_user)
        heads: dict[int, int] = {}
        for start in range(0, len(user_ids), 500):
            heads.update(await self._reader.heads(user_ids[start : start + 500]))
        for user_id, previous in self._previous_heads.items():
            for conn in list(self._by_user.get(user_id, {}).values()):
                if conn.catching_up is None and conn.last_seq < previous:
                    self._metrics.resyncs.inc()
                    log.info("connection %s missed events; catching up from SQL", conn.sid)
                    self._known_head[user_id] = max(self._known_head.get(user_id, 0), previous)
                    self._start_catch_up(conn)
        self._previous_heads = heads
