"""Engine.IO sessions that are not connected to the namespace, counted per client
address and on the node, so that handshakes past either cap can be refused.

A session costs the node memory (its socket, its queue, the handshake's request)
from its first request, before any token is shown: without a cap one client could
open tens of thousands a second. A session counts from its handshake until it
connects to the namespace, and again from the end of that connection (a logout)
until it closes; connected sessions are bounded per user instead. Counts are per
node, like every per-address limit.
"""

from __future__ import annotations

from collections import Counter

# The caps a refused handshake (or TCP connection, in the listener) passed.
PER_ADDRESS, ON_NODE = "per_address", "node"


class PendingSessions:
    """Sessions without a connection, by client address; a cap of 0 is no cap.

    Sessions are named by a key: the Engine.IO sid, or before the session exists a
    key of the handshake's own (`rename` moves its count to the sid), so that
    handshakes in progress count too.
    """

    def __init__(self, per_address: int, on_node: int) -> None:
        self.per_address = per_address
        self.on_node = on_node
        self._address: dict[str, str] = {}  # every open session's client address
        self._pending: set[str] = set()
        self._counts: Counter[str] = Counter()

    def refusal(self, address: str) -> str | None:
        """Which cap a new session from `address` would pass (PER_ADDRESS, ON_NODE),
        or None if it may open."""
        if self.per_address and self._counts[address] >= self.per_address:
            return PER_ADDRESS
        if self.on_node and len(self._pending) >= self.on_node:
            return ON_NODE
        return None

    def opened(self, key: str, address: str) -> None:
        self._address[key] = address
        self.detached(key)

    def rename(self, key: str, new_key: str) -> None:
        address = self._address.pop(key, None)
        if address is None:
            return
        self._address[new_key] = address
        if key in self._pending:
            self._pending.discard(key)
            self._pending.add(new_key)

    def attached(self, key: str) -> None:
        """The session connected to the namespace: it no longer counts."""
        if key in self._pending:
            self._pending.discard(key)
            self._uncount(self._address[key])

    def detached(self, key: str) -> None:
        """The session is without a connection (it just opened, or its connection
        ended): it counts until it connects or closes."""
        address = self._address.get(key)
        if address is not None and key not in self._pending:
            self._pending.add(key)
            self._counts[address] += 1

    def closed(self, key: str) -> None:
        self.attached(key)
        self._address.pop(key, None)

    def address(self, key: str) -> str | None:
        return self._address.get(key)

    def count(self, address: str | None = None) -> int:
        """Sessions without a connection from `address`, or on the node."""
        return len(self._pending) if address is None else self._counts[address]

    def _uncount(self, address: str) -> None:
        self._counts[address] -= 1
        if self._counts[address] <= 0:
            del self._counts[address]  # memory follows the addresses with sessions
