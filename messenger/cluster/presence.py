"""Who is online: this node's connections, and with Redis every live node's.

Each node keeps a Redis hash of the users it has connections for, under a key that
expires unless the node's heartbeat renews it. A node that dies stops renewing, so
its users go offline by themselves within `ttl` seconds. After a Redis restart the
next heartbeat writes the hash anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from redis import asyncio as aioredis

log = logging.getLogger(__name__)

NODES_KEY = "{prefix}:nodes"
NODE_KEY = "{prefix}:presence:{node}"
TTL_SECONDS = 30
HEARTBEAT_SECONDS = 10


class Presence(Protocol):
    def start(self) -> None: ...

    def changed(self) -> None:
        """A user of this node connected, or left with their last connection."""
        ...

    async def stop(self) -> None: ...

    async def online(self, user_ids: Sequence[int]) -> set[int]: ...


class LocalPresence:
    """One node: a user is online while this node holds a connection of theirs."""

    def __init__(self, local_users: Callable[[], Iterable[int]]) -> None:
        self._local_users = local_users

    # The connections themselves are the record: nothing to start, write or stop.
    def start(self) -> None:
        pass

    def changed(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def online(self, user_ids: Sequence[int]) -> set[int]:
        return set(user_ids) & set(self._local_users())


class RedisPresence:
    def __init__(
        self,
        url: str,
        local_users: Callable[[], Iterable[int]],
        prefix: str = "messenger",
        ttl: float = TTL_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
        )
        self._local_users = local_users
        self._ttl = ttl
        self._heartbeat = heartbeat
        self.node_id = uuid.uuid4().hex
        self._prefix = prefix
        self._nodes_key = NODES_KEY.format(prefix=prefix)
        self._key = NODE_KEY.format(prefix=prefix, node=self.node_id)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="messenger-presence")

    def changed(self) -> None:
        """A user of this node connected or went away: write soon."""
        self._changed.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._redis.delete(self._key)
            await self._redis.zrem(self._nodes_key, self.node_id)
        await self._redis.aclose()

    async def online(self, user_ids: Sequence[int]) -> set[int]:
        local = set(user_ids) & set(self._local_users())
        try:
            return local | await self._online_elsewhere(user_ids)
        except Exception as exc:  # Redis away: say what this node knows
            log.warning("presence from Redis failed, answering for this node only: %s", exc)
            return local

    async def _online_elsewhere(self, user_ids: Sequence[int]) -> set[int]:
        alive_since = time.time() - self._ttl
        nodes = [
            str(node)
            for node in await self._redis.zrangebyscore(self._nodes_key, alive_since, "+inf")
        ]
        fields = [str(uid) for uid in user_ids]
        async with self._redis.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.hmget(NODE_KEY.format(prefix=self._prefix, node=node), fields)
            answers = await pipe.execute()
        online: set[int] = set()
        for values in answers:
            online.update(uid for uid, value in zip(user_ids, values, strict=True) if value)
        return online

    async def _run(self) -> None:
        while True:
            try:
                await self._write()
            except Exception:
                # One line a tick: with the traceback, which says where it failed.
                log.warning("presence heartbeat failed", exc_info=True)
            self._changed.clear()
            # Not wait_for: on Python 3.11 it can swallow stop()'s cancel (CPython
            # gh-86296), and stop() would wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await self._changed.wait()
            await asyncio.sleep(0.05)  # gather a burst of connects into one write

    async def _write(self) -> None:
        users = {str(uid): 1 for uid in self._local_users()}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key)
            if users:
                pipe.hset(self._key, mapping=users)  # type: ignore[arg-type]
            pipe.expire(self._key, int(self._ttl))
            pipe.zadd(self._nodes_key, {self.node_id: time.time()})
            pipe.zremrangebyscore(self._nodes_key, "-inf", time.time() - 10 * self._ttl)
            await pipe.execute()
