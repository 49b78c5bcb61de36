"""Where a push may go: `https://` only, and for a host that resolves to public
addresses only, unless the operator lists the host in `MESSENGER_PUSH_ALLOW_HTTP`.

A subscription names a URL that the server will POST to: without these rules it is a
way to make the server call its own network (SSRF). The check runs when the
subscription is made, and again at every delivery through `PublicResolver`, which is
what aiohttp connects with: the address checked is the address used, so DNS that
changes between the check and the connection cannot slip a private one in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from messenger.errors import invalid

URL_MAX = 2048


def check_url(url: Any, allowed_hosts: tuple[str, ...]) -> str:
    """A push URL's form: `https://host[:port]/...` (or `http://` for a listed host),
    without credentials or fragment; returns it."""
    if not isinstance(url, str) or not 1 <= len(url) <= URL_MAX:
        raise invalid(f"the URL must be a string of at most {URL_MAX} characters")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.fragment:
        raise invalid("the URL must name a host, without credentials or fragment")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in allowed_hosts):
        raise invalid("the URL must be https://")
    try:
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        raise invalid("the URL's port is not valid") from None
    return url


def is_public(address: str) -> bool:
    """A global unicast address: not loopback, private, link-local, multicast,
    reserved or unspecified (IPv4-mapped IPv6 judged as the IPv4 it maps)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_reachable(url: str, allowed_hosts: tuple[str, ...]) -> None:
    """Refuse a URL whose host resolves to any non-public address (or to none)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in allowed_hosts:
        return
    try:
        addresses = await _addresses(host)
    except OSError:
        raise invalid(f"the host {host!r} does not resolve") from None
    if not addresses or not all(is_public(address) for address in addresses):
        raise invalid(f"the host {host!r} is not a public address")


def address_literal(host: str) -> str | None:
    """The address a host names literally (`203.0.113.5`, `[2001:db8::1]`), if it does."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return None
    return bare


def literal_refused(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Whether the URL names a non-public address literally. aiohttp connects to an
    address literal without asking a resolver, so `PublicResolver` never sees it:
    this is its check at delivery."""
    host = (urlsplit(url).hostname or "").lower()
    literal = address_literal(host)
    return host not in allowed_hosts and literal is not None and not is_public(literal)


async def _addresses(host: str) -> list[str]:
    literal = address_literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class PublicResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses for hosts not allowed
    explicitly; a host with none left fails to connect."""

    def __init__(self, allowed_hosts: tuple[str, ...]) -> None:
        self._allowed = allowed_hosts
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if host.lower() in self._allowed:
            return found
        public = [entry for entry in found if is_public(entry["host"])]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._resolver.close()
