"""The HTTP side of account and session controls (docs/protocol.md 2): changing the
password, listing and ending sessions, removing the account, and its data export,
streamed as it is read."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from messenger import protocol
from messenger.accounts_service import AccountService
from messenger.auth import Authenticated
from messenger.errors import MessengerError, invalid, not_found
from messenger.transport.rest import _json_object

log = logging.getLogger(__name__)

Authenticate = Callable[[web.Request], Awaitable[Authenticated]]


class AccountRoutes:
    def __init__(self, service: AccountService, authenticate: Authenticate) -> None:
        self._service = service
        self._authenticate = authenticate

    def routes(self) -> list[web.RouteDef]:
        # `DELETE /api/v1/sessions/current` (RestApi) is added first, so it is matched
        # before `{id}`.
        return [
            web.put("/api/v1/users/me/password", self.change_password),
            web.delete("/api/v1/users/me", self.remove),
            web.get("/api/v1/users/me/export", self.export),
            web.get("/api/v1/sessions", self.sessions),
            web.delete("/api/v1/sessions/{id}", self.end_session),
        ]

    async def change_password(self, request: web.Request) -> web.Response:
        who = await self._authenticate(request)
        body = await _json_object(request)
        current = _password(body, "current")
        new = _password(body, "new")
        await self._service.change_password(who, current, new)
        return web.Response(status=204)

    async def sessions(self, request: web.Request) -> web.Response:
        who = await self._authenticate(request)
        return web.json_response({"sessions": await self._service.sessions(who)})

    async def end_session(self, request: web.Request) -> web.Response:
        who = await self._authenticate(request)
        token_id = protocol.parse_path_id(request.match_info["id"])
        if token_id is None:
            raise not_found("no such session")
        await self._service.end_session(who, token_id)
        return web.Response(status=204)

    async def remove(self, request: web.Request) -> web.Response:
        who = await self._authenticate(request)
        password = _password(await _json_object(request), "password")
        await self._service.remove(who, password)
        return web.Response(status=204)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """The document is written as it is read; a failure once it has started can
        only cut the connection (the client sees a truncated body, never a valid one)."""
        who = await self._authenticate(request)
        name = who.user.username  # usernames hold no quote or backslash
        async with self._service.export(who) as pieces:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Content-Disposition": f'attachment; filename="messenger-export-{name}.json"',
                    "Cache-Control": "no-store",
                    "X-Content-Type-Options": "nosniff",
                }
            )
            try:
                await response.prepare(request)
                if request.method != "HEAD":
                    async for piece in pieces:
                        await response.write(piece.encode())
                await response.write_eof()
            except ConnectionError:
                log.info("export of user=%s not finished: the client went away", name)
                _cut(request)
            except Exception as exc:
                log.error("export of user=%s failed: %r", name, exc)
                _cut(request)
        return response


def _password(body: dict[str, Any], field: str) -> str:
    try:
        return protocol.check_password(body.get(field))
    except MessengerError as exc:
        raise invalid(f"{field}: {exc.message}") from None


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
