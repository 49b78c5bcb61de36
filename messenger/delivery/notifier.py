"""After a commit: who hears of it, and how a token's sockets are dropped everywhere.

The writer hands each committed batch's stream events to an `AfterCommit` (the
`Notifier` of the node): this node's connections get them first, then the other
nodes through the cluster bus, if there is one. Events from another node come back
in through `from_other_node`. Revoking a token drops its sockets here and asks the
other nodes to drop theirs. Redis only wakes: a lost wake-up is repaired from SQL by
the maintenance tick (G9).

The bus and the sockets are protocols (`Bus`, `live.Pusher`), so delivery imports
neither socketio nor aiohttp.
"""

from __future__ import annotations

from typing import Protocol

from messenger.delivery.live import LiveHub, Pusher
from messenger.wire import StreamItem


class AfterCommit(Protocol):
    """What the writer calls with the stream events of each batch it committed."""

    async def committed(self, items: list[StreamItem]) -> None: ...


class Bus(Protocol):
    """The way to the other nodes (`cluster.bus.Cluster`): fire and forget, in order."""

    def publish_stream(self, items: list[StreamItem]) -> None: ...

    def publish_revoke(self, token_id: int) -> None: ...


class Notifier:
    """`AfterCommit` for a node: its own connections, then the other nodes."""

    def __init__(self, hub: LiveHub, pusher: Pusher, bus: Bus | None = None) -> None:
        self._hub = hub
        self._pusher = pusher
        self._bus = bus

    async def committed(self, items: list[StreamItem]) -> None:
        """This node's connections now, the other nodes' through the bus."""
        await self._hub.deliver(items)
        if self._bus is not None:
            self._bus.publish_stream(items)

    async def from_other_node(self, items: list[StreamItem]) -> None:
        """Events another node committed (and already pushed to its own connections)."""
        await self._hub.deliver(items)

    async def drop_token_here(self, token_id: int) -> None:
        """Disconnect this node's sockets of a token (revoked on another node)."""
        for conn in self._hub.connections_of_token(token_id):
            await self._pusher.disconnect(conn.sid)

    async def revoke(self, token_id: int) -> None:
        """Disconnect a revoked token's sockets on this node and on every other."""
        await self.drop_token_here(token_id)
        if self._bus is not None:
            self._bus.publish_revoke(token_id)
