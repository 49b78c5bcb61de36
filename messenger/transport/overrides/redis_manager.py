"""`NamespaceRedisManager`: python-socketio's AsyncRedisManager, with one namespace's
queue messages handed to a public hook instead of emitted to local sessions.

`_handle_emit` is where python-socketio's pub/sub manager turns a queue message into
local emits, for this node's own messages and other nodes' alike; `host_id` is the id
this node's messages carry. messenger/cluster/bus.py rides on this to carry its
wake-ups between nodes, through `on_foreign_emit` only.
"""

from __future__ import annotations

from typing import Any

import socketio

from messenger.transport.overrides.rooms import IndexedManager


class NamespaceRedisManager(IndexedManager, socketio.AsyncRedisManager):  # type: ignore[misc]
    """AsyncRedisManager that hands `namespace`'s messages from other nodes to
    `on_foreign_emit`; its own messages in that namespace are dropped (this node
    delivered them before publishing), and every other namespace is left as it was.
    Its rooms are indexed as a single node's are (rooms)."""

    def __init__(self, url: str, channel: str, namespace: str) -> None:
        super().__init__(url, channel=channel)
        self.hooked_namespace = namespace

    async def on_foreign_emit(self, event: Any, data: Any) -> None:
        """Called with the event and the data of each message another node emitted in
        the hooked namespace. Does nothing unless a subclass overrides it."""

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("namespace") != self.hooked_namespace:
            await super()._handle_emit(message)
            return
        if message.get("host_id") == self.host_id:
            return
        await self.on_foreign_emit(message.get("event"), message.get("data"))
