"""Which address a request came from, for the per-address limits.

The peer of the TCP connection, unless that peer is a proxy the operator trusts
(`MESSENGER_TRUSTED_PROXIES`): then `X-Forwarded-For` names the client. A header from
anyone else is ignored, or any client could pick its own address and escape every
per-address limit. The list is read from the right, past the trusted proxies, so a
client cannot prepend a forged entry either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "unknown"


class ClientAddresses:
    """Finds the client address of aiohttp requests behind the trusted proxies."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in trusted_proxies
        )

    def of_request(self, request: web.Request) -> str:
        return self.resolve(request.remote, request.headers.get("X-Forwarded-For"))

    def of_environ(self, environ: dict[str, Any]) -> str:
        """The same for an Engine.IO handshake (python-engineio's environ)."""
        request = environ.get("aiohttp.request")
        if isinstance(request, web.BaseRequest):
            return self.resolve(request.remote, request.headers.get("X-Forwarded-For"))
        return UNKNOWN

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer_address = _parse(peer)
        if peer_address is None:
            return peer or UNKNOWN
        if not forwarded_for or not self._is_trusted(peer_address):
            return str(peer_address)
        client = peer_address
        for entry in reversed(forwarded_for.split(",")):
            hop = _parse(entry.strip())
            if hop is None:
                break  # a garbled entry: the last trusted hop is as far as we know
            client = hop
            if not self._is_trusted(hop):
                break
        return str(client)

    def is_trusted(self, address: str) -> bool:
        """Whether `address` (as text) is one of the trusted proxies."""
        parsed = _parse(address)
        return parsed is not None and self._is_trusted(parsed)

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self._trusted)


def normalized(host: str) -> str:
    """A peer's address as every limit keys it: IPv4-mapped IPv6 as the IPv4 address
    it is; text that is not an address as it came."""
    address = _parse(host)
    return host if address is None else str(address)


def _parse(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # one client, one key, on dual-stack sockets
    return address
