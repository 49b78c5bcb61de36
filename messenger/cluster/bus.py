"""Several nodes: wake-ups between them over python-socketio's AsyncRedisManager.

Redis pub/sub is at-most-once, so it only carries wake-ups (G9): each committed batch
of stream events is published for the other nodes' connections, but SQL stays the
truth. A publish that is lost, or a node that is deaf while Redis restarts, leaves a
connection behind its stream head; `LiveHub.resync` finds it and replays from SQL.

The bus rides on the manager's own channel, in a namespace no client can join, so no
second broker and no second subscription are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from messenger.transport.overrides.redis_manager import NamespaceRedisManager
from messenger.wire import StreamEvent, StreamItem

log = logging.getLogger(__name__)

BUS_NAMESPACE = "/_messenger_bus"
STREAM, REVOKE, TYPING = "stream", "revoke", "typing"
# Batches waiting to be published; past this a batch is dropped (and repaired from SQL).
OUTBOX_SIZE = 10_000

OnStream = Callable[[list[StreamItem]], Awaitable[None]]
OnRevoke = Callable[[int], Awaitable[None]]
OnTyping = Callable[[str, int, bool], Awaitable[None]]


class ClusterManager(NamespaceRedisManager):
    """The Redis manager, with the bus namespace's messages from other nodes handed
    to `on_stream` and `on_revoke` (transport/overrides/redis_manager.py reaches into
    python-socketio for that)."""

    def __init__(self, url: str, channel: str = "messenger") -> None:
        super().__init__(url, channel=channel, namespace=BUS_NAMESPACE)
        self.on_stream: OnStream | None = None
        self.on_revoke: OnRevoke | None = None
        self.on_typing: OnTyping | None = None

    async def on_foreign_emit(self, event: Any, data: Any) -> None:
        payload = data[0] if isinstance(data, list) and data else None
        try:
            if event == STREAM and self.on_stream is not None:
                await self.on_stream(decode_items(payload))
            elif event == REVOKE and self.on_revoke is not None:
                await self.on_revoke(int(payload))  # type: ignore[arg-type]
            elif event == TYPING and self.on_typing is not None:
                sender, to_id, state = payload  # type: ignore[misc]
                await self.on_typing(str(sender), int(to_id), bool(state))
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("ignoring a malformed bus message: %s", exc)


def encode_items(items: list[StreamItem]) -> list[list[Any]]:
    return [[item.user_id, item.seq, item.event, item.data] for item in items]


def decode_items(payload: Any) -> list[StreamItem]:
    return [
        StreamItem(int(user_id), int(seq), str(event), cast(StreamEvent, dict(data)))
        for user_id, seq, event, data in payload
    ]


class Cluster:
    """Publishes this node's committed events and revocations to the other nodes.

    One task publishes in commit order, so other nodes usually see contiguous
    cursors; the writer never waits for Redis.
    """

    def __init__(self, manager: ClusterManager) -> None:
        self._manager = manager
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(OUTBOX_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="messenger-cluster-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def publish_stream(self, items: list[StreamItem]) -> None:
        self._offer(STREAM, encode_items(items))

    def publish_revoke(self, token_id: int) -> None:
        self._offer(REVOKE, token_id)

    def publish_typing(self, sender: str, to_id: int, state: bool) -> None:
        """Ephemeral: carried at most once, like every bus message."""
        self._offer(TYPING, [sender, to_id, state])

    def _offer(self, event: str, payload: Any) -> None:
        try:
            self._outbox.put_nowait((event, payload))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("cluster outbox full; a wake-up is dropped (SQL repairs it)")

    async def _run(self) -> None:
        while True:
            event, payload = await self._outbox.get()
            try:
                await self._manager.emit(event, payload, namespace=BUS_NAMESPACE)
            except Exception as exc:
                log.warning("publishing to Redis failed: %s", exc)
