"""The one Origin rule for HTTP and the Socket.IO handshake: the page's own origin,
plus the origins the operator listed. There is no switch that turns it off."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def origin_allowed(origin: str | None, scheme: str, host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a browser page from `origin` may talk to this server. No Origin header
    means no browser page (or a same-origin GET): there is nothing to allow, and
    python-engineio asks only to decide on CORS headers, which then stay off."""
    if not origin:
        return False
    origin = origin.rstrip("/")
    return origin == f"{scheme}://{host}" or origin in allowed


def engineio_origin_check(allowed: tuple[str, ...]) -> Callable[[str, Mapping[str, Any]], bool]:
    """python-engineio's `cors_allowed_origins` as a callable (it gets the WSGI-style
    environ). A callable, because a list would drop engineio's same-origin default."""

    def check(origin: str | None, environ: Mapping[str, Any]) -> bool:
        return origin_allowed(
            origin,
            str(environ.get("wsgi.url_scheme", "http")),
            str(environ.get("HTTP_HOST", "")),
            allowed,
        )

    return check
