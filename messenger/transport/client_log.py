"""Log lines caused by what a client sends, a few per client address at most.

A client decides how often a refused handshake, a bad frame or a dropped session
happens. Each is worth a line to an operator, but logged every time they would let
anyone flood the log (and the disk behind it) from one machine: past a short burst,
lines for an address are left out until its bucket refills, and the node as a whole
has a ceiling too, for clients with many addresses.
"""

from __future__ import annotations

import logging
from typing import Any

from messenger.ratelimit import RateLimiter

# Lines per client address: a burst, then one a minute.
PER_ADDRESS_BURST = 5
PER_ADDRESS_RATE = 1 / 60
# Lines for all addresses together: a burst, then two a second.
NODE_BURST = 50
NODE_RATE = 2.0
_NODE = "*node*"  # the node-wide bucket's key (never an address)


class ClientLog:
    """A logger's lines about clients, rate limited per client address and per node."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._per_address = RateLimiter(PER_ADDRESS_RATE, PER_ADDRESS_BURST)
        self._node = RateLimiter(NODE_RATE, NODE_BURST)

    def info(self, address: str, message: str, *args: Any) -> None:
        """Log `message` at INFO (with `args`, as logging does) unless `address`, or
        the node, is past its share of lines."""
        if self._logger.isEnabledFor(logging.INFO) and self._allow(address):
            self._logger.info(message, *args)

    def error(self, address: str, message: str, *args: Any) -> None:
        """The same at ERROR, with the exception being handled: for failures of the
        server's own that a client's input happened to reach."""
        if self._allow(address):
            self._logger.error(message, *args, exc_info=True)

    def _allow(self, address: str) -> bool:
        return self._per_address.allow(address) and self._node.allow(_NODE)
