"""The HTTP API: accounts, sessions, conversations, history, health and metrics.

One middleware turns every failure into `{"error": {"code", "message"}}` with the
status its code means; handlers raise `MessengerError` and never build error bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from messenger import protocol
from messenger.auth import Accounts, Authenticated
from messenger.delivery.service import Delivery
from messenger.errors import ErrorCode, MessengerError, forbidden, invalid, not_found
from messenger.metrics import Metrics
from messenger.push.subscriptions import PushSubscriptions
from messenger.ratelimit import RateLimiter, Throttled
from messenger.store.db import Database, classify_failure
from messenger.store.message_reads import undelivered_summary
from messenger.transport.client_address import ClientAddresses
from messenger.transport.origins import origin_allowed
from messenger.wire import format_time, utc_now

log = logging.getLogger(__name__)

STATUS_OF: dict[ErrorCode, int] = {
    ErrorCode.INVALID: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.BAD_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.USERNAME_TAKEN: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}
CODE_OF_STATUS = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID,
    413: ErrorCode.TOO_LARGE,
}
MAX_REQUEST_BYTES = 64 * 1024
CONVERSATIONS_LIMIT_DEFAULT, CONVERSATIONS_LIMIT_MAX = 100, 500
# Logins: per username and per client address, a burst then one every few seconds.
LOGIN_RATE = 0.2
# Registrations: per client address a burst (`register_burst`) then one a minute; on
# the whole node a few a second, with bursts of this many times the address burst.
# Each one costs an argon2 hash and a row, so they stay a small share of the pool.
REGISTER_RATE = 1 / 60
REGISTER_GLOBAL_RATE = 3.0
REGISTER_GLOBAL_BURST_FACTOR = 10
SOCKET_IO_PATH = "/socket.io/"
BACKLOG_GAUGE_SECONDS = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: MessengerError) -> web.Response:
    response = web.json_response({"error": error.as_dict()}, status=STATUS_OF[error.code])
    if isinstance(error, Throttled):
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MessengerError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = CODE_OF_STATUS.get(exc.status, ErrorCode.INVALID)
        response = web.json_response(
            {"error": {"code": code.value, "message": exc.reason}}, status=exc.status
        )
        if "Allow" in exc.headers:  # a 405 says which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        error = classify_failure(exc)
        log.error("%s %s failed: %s (%r)", request.method, request.path, error.code, exc)
        return error_response(error)


def cors_middleware(allowed: tuple[str, ...]) -> Any:
    """Same origin always; other origins only when listed. The check is never off."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or request.path.startswith(SOCKET_IO_PATH):
            # No Origin: not a browser's cross-site request. Socket.IO's handshake
            # is checked by python-engineio with the same list.
            return await handler(request)
        if not origin_allowed(origin, request.scheme, request.host, allowed) and not (
            origin_allowed(origin, *_forwarded(request), allowed)
        ):
            raise forbidden(f"origin {origin!r} is not allowed")
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    return middleware


def _forwarded(request: web.Request) -> tuple[str, str]:
    """The scheme and host a reverse proxy says the client used (as python-engineio
    honours them at the Socket.IO handshake, so both edges agree)."""
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return proto, host


class RestApi:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        delivery: Delivery,
        push: PushSubscriptions,
        metrics: Metrics,
        disconnect_token: Callable[[int], Awaitable[None]],
        login_burst: int = 10,
        register_burst: int = 0,
        addresses: ClientAddresses | None = None,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self._delivery = delivery
        self._push = push
        self._metrics = metrics
        # Drops the sockets opened with a token, on every node.
        self._disconnect_token = disconnect_token
        self._backlog_read_at = -BACKLOG_GAUGE_SECONDS
        self._addresses = addresses if addresses is not None else ClientAddresses()
        rate = LOGIN_RATE if login_burst else 0  # a rate of 0 is off
        self._login_by_name = RateLimiter(rate, login_burst)
        self._login_by_address = RateLimiter(5 * rate, 5 * login_burst)
        on = register_burst > 0
        self._register_by_address = RateLimiter(REGISTER_RATE if on else 0, register_burst)
        self._register_everywhere = RateLimiter(
            REGISTER_GLOBAL_RATE if on else 0, REGISTER_GLOBAL_BURST_FACTOR * register_burst
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/users", self.register),
            web.post("/api/v1/sessions", self.login),
            web.delete("/api/v1/sessions/current", self.logout),
            web.get("/api/v1/conversations", self.conversations),
            web.get("/api/v1/conversations/{username}/messages", self.messages),
            web.get("/api/v1/search", self.search),
            web.get("/api/v1/push/vapid", self.vapid),
            web.post("/api/v1/push/subscriptions", self.subscribe),
            web.get("/api/v1/push/subscriptions", self.subscriptions),
            web.delete("/api/v1/push/subscriptions/{id}", self.unsubscribe),
            web.get("/api/v1/users/me/settings", self.settings),
            web.put("/api/v1/users/me/settings", self.change_settings),
            web.get("/healthz", self.health),
            web.get("/metrics", self.metrics),
        ]

    async def register(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        username = protocol.normalize_username(body.get("username"))
        password = protocol.check_password(body.get("password"))
        address = self._addresses.of_request(request)
        # The address first: one past its own limit must not use up the node's.
        for limiter, key in (
            (self._register_by_address, address),
            (self._register_everywhere, None),
        ):
            if not limiter.allow(key):
                self._metrics.rate_limited.inc()
                log.info("registration rate limited address=%s", address)
                raise Throttled(
                    ErrorCode.RATE_LIMITED,
                    "too many registrations; wait a while",
                    limiter.wait(key),
                )
        user = await self._accounts.register(username, password)
        log.info("registered user=%s", user.username)
        return web.json_response({"user": {"username": user.username}}, status=201)

    async def login(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        username = protocol.normalize_username(body.get("username"))
        password = protocol.check_password(body.get("password"))
        address = self._addresses.of_request(request)
        # The address first, and a username is charged only for addresses within their
        # limit: one address far over its own cannot lock other people's accounts.
        for limiter, key in ((self._login_by_address, address), (self._login_by_name, username)):
            if not limiter.allow(key):
                self._metrics.rate_limited.inc()
                log.info("login rate limited user=%s address=%s", username, address)
                raise Throttled(
                    ErrorCode.RATE_LIMITED,
                    "too many login attempts; wait a while",
                    limiter.wait(key),
                )
        try:
            session = await self._accounts.login(
                username, password, request.headers.get("User-Agent"), address
            )
        except MessengerError as exc:
            if exc.code is ErrorCode.BAD_CREDENTIALS:  # not a busy pool or database
                self._metrics.auth_failures.inc()
                log.info("login refused user=%s address=%s", username, address)
            raise
        return web.json_response(
            {
                "token": session.token,
                "expires_at": format_time(session.expires_at),
                "user": {"username": session.user.username},
            },
            status=201,
        )

    async def logout(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        await self._accounts.revoke(who.token_id)
        await self._disconnect_token(who.token_id)
        log.info("logout user=%s", who.user.username)
        return web.Response(status=204)

    async def conversations(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        limit = _int_param(request, "limit")
        if limit is None:
            limit = CONVERSATIONS_LIMIT_DEFAULT
        elif not 1 <= limit <= CONVERSATIONS_LIMIT_MAX:
            raise invalid(f"limit must be 1 to {CONVERSATIONS_LIMIT_MAX}")
        items = await self._delivery.conversations(who.user, limit)
        return web.json_response({"conversations": items})

    async def messages(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        query = protocol.parse_history(
            {
                "with": request.match_info["username"],
                "before": _int_param(request, "before"),
                "after": _int_param(request, "after"),
                "limit": _int_param(request, "limit"),
            }
        )
        return web.json_response(await self._delivery.history(who.user, query))

    async def search(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        query = protocol.parse_search(
            {
                "query": request.query.get("q"),
                "with": request.query.get("with"),
                "before": _int_param(request, "before"),
                "limit": _int_param(request, "limit"),
            }
        )
        return web.json_response(await self._delivery.search(who.user, query))

    async def vapid(self, _request: web.Request) -> web.Response:
        return web.json_response({"public_key": self._push.public_key})

    async def subscribe(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        body = await _json_object(request)
        made, created = await self._push.subscribe(who.user, who.token_id, body)
        return web.json_response(made, status=201 if created else 200)

    async def subscriptions(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        found = await self._push.list(who.user, who.token_id)
        return web.json_response({"subscriptions": found})

    async def unsubscribe(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        sub_id = protocol.parse_path_id(request.match_info["id"])
        if sub_id is None:
            raise not_found("no such subscription")
        await self._push.remove(who.user, sub_id)
        return web.Response(status=204)

    async def settings(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        return web.json_response(await self._delivery.settings(who.user))

    async def change_settings(self, request: web.Request) -> web.Response:
        who = await self._authenticated(request)
        change = protocol.parse_settings(await _json_object(request))
        return web.json_response(await self._delivery.change_settings(who.user, change))

    async def health(self, _request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(self._db.ping(), timeout=2.0)
        except Exception as exc:
            log.warning("health check: database does not answer: %s", type(exc).__name__)
            raise MessengerError(ErrorCode.UNAVAILABLE, "the database does not answer") from None
        return web.json_response({"status": "ok"})

    async def metrics(self, _request: web.Request) -> web.Response:
        await self._refresh_backlog_gauges()
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _refresh_backlog_gauges(self) -> None:
        """The backlog gauges need a scan of the messages table: done at most once per
        BACKLOG_GAUGE_SECONDS, whatever the scrape rate, and skipped if the database
        is slow or away (the last values stay)."""
        now = time.monotonic()
        if now - self._backlog_read_at < BACKLOG_GAUGE_SECONDS:
            return
        self._backlog_read_at = now
        try:
            async with asyncio.timeout(2.0):
                count, oldest = await self._db.read(undelivered_summary)
        except Exception as exc:
            log.warning("backlog gauges not refreshed: %s", type(exc).__name__)
            return
        self._metrics.backlog_messages.set(count)
        age = (utc_now() - oldest).total_seconds() if oldest is not None else 0.0
        self._metrics.backlog_oldest_seconds.set(max(0.0, age))

    async def authenticated(self, request: web.Request) -> Authenticated:
        """The session of a request's bearer token (for other route groups)."""
        return await self._authenticated(request)

    async def _authenticated(self, request: web.Request) -> Authenticated:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise MessengerError(ErrorCode.UNAUTHORIZED, "send Authorization: Bearer <token>")
        return await self._accounts.authenticate(token.strip())


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=_strict_loads)
    except web.HTTPRequestEntityTooLarge:
        raise MessengerError(ErrorCode.TOO_LARGE, "the request body is too large") from None
    except (ValueError, LookupError):  # bad JSON, bad bytes, an unknown charset
        raise invalid("the body must be a JSON object in UTF-8") from None
    except RecursionError:  # nested deeper than the decoder goes; no request nests
        raise invalid("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


def _strict_loads(text: str) -> Any:
    # NaN and Infinity are not JSON.
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise invalid(f"{name} must be a positive integer")
    return int(raw)
